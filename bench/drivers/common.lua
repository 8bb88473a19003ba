-- Shared by the bench/drivers/*.lua wrk scripts (loaded with dofile).
-- Configuration comes from the environment (set by bench/run.py):
--   BENCH_AUTH         full Authorization header value ("Basic ...", "Bearer ...")
--   BENCH_TOKEN        token to introspect
--   BENCH_TOKENS_FILE  refresh tokens, one per line (refresh.lua)
--   BENCH_THREADS      wrk -t value (refresh.lua splits the file between threads)
-- done() prints one machine-readable line: "BENCH_JSON {...}" (latencies in microseconds).

function env(name)
  local v = os.getenv(name)
  if v == nil or v == "" then error("missing env " .. name) end
  return v
end

function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function form_post(body, auth)
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"rps":%.2f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"errors_status":%d,"errors_socket":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
