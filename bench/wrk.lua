-- bench/run's wrk script: an optional file of bearer tokens to cycle, and one JSON line of
-- results at the end (wrk's own text gives no p99.9 and rounds its figures).
--
--   wrk ... -s bench/wrk.lua URL              plain GET /, wrk's static request
--   wrk ... -s bench/wrk.lua URL -- TOKENS    each request carries the next token of TOKENS
--
-- `request` is defined only when there are tokens, so the rows without them keep wrk's
-- static request (wrk switches to a Lua call per request as soon as `request` exists). The
-- requests are formatted once, in `init`; `request` only picks the next one.

local requests = nil
local next_request = 0

function init(args)
  if args[1] == nil then
    return
  end
  requests = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      requests[#requests + 1] = wrk.format(nil, nil, { ["Host"] = wrk.host, ["Authorization"] = "Bearer " .. line })
    end
  end
  if #requests == 0 then
    error("no tokens in " .. args[1])
  end
  request = function()
    next_request = next_request % #requests + 1
    return requests[next_request]
  end
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH-WRK {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeout_errors": %d, '
      .. '"p50_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
