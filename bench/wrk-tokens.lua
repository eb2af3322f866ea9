-- wrk script: GET /api/private-scoped with `Authorization: Bearer <token>`, cycling through
-- the tokens of a file (one per line). Requests are formatted once, in init.
-- usage: wrk ... -s bench/wrk-tokens.lua URL -- TOKENS_FILE
local requests = {}
local n = 0
local i = 0

function init(args)
  local file = args[1] or error("usage: wrk ... -s wrk-tokens.lua URL -- TOKENS_FILE")
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("GET", "/api/private-scoped", { ["Authorization"] = "Bearer " .. line })
    end
  end
  assert(n > 0, "no tokens in " .. file)
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d rps=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
