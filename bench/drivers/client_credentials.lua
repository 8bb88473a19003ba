-- POST token endpoint: grant_type=client_credentials (client_secret_basic in BENCH_AUTH).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
form_post("grant_type=client_credentials&scope=" .. urlencode(os.getenv("BENCH_SCOPE") or "api:read"), env("BENCH_AUTH"))
