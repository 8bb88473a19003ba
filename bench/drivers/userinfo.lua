-- GET userinfo with "Authorization: Bearer <access token>" (BENCH_AUTH).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
wrk.headers["Authorization"] = env("BENCH_AUTH")
