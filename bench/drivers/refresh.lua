-- POST token endpoint: grant_type=refresh_token with rotating refresh tokens.
-- Each thread takes its share of the pre-minted tokens in BENCH_TOKENS_FILE into a pool
-- (needs >= connections per thread). Every token is used exactly once: a request takes a
-- token out of the pool and a 200 response puts the rotated refresh_token back in.
-- If the pool runs dry the request carries an invalid token and shows up as an error.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local auth = env("BENCH_AUTH")
local pool = {}
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

function init(args)
  local n, i = tonumber(env("BENCH_THREADS")), 0
  for line in io.lines(env("BENCH_TOKENS_FILE")) do
    if line ~= "" then
      if i % n == tid then pool[#pool + 1] = line end
      i = i + 1
    end
  end
end

function request()
  local rt = table.remove(pool) or "pool-exhausted"
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = auth,
  }, "grant_type=refresh_token&refresh_token=" .. urlencode(rt))
end

function response(status, headers, body)
  if status == 200 then
    local rt = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if rt then pool[#pool + 1] = rt end
  end
end
