-- POST introspection endpoint for one active opaque access token (BENCH_TOKEN),
-- authenticated as a resource server client (client_secret_basic in BENCH_AUTH).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
form_post("token=" .. urlencode(env("BENCH_TOKEN")) .. "&token_type_hint=access_token", env("BENCH_AUTH"))
