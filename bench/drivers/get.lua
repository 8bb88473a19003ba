-- Plain GET of the URL given to wrk (discovery document, JWKS).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
