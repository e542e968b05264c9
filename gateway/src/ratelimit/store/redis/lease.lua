-- Gatehouse local leases: the shared side of a fetch (`take` in gateway/src/ratelimit/lease.rs,
-- ported decision for decision). Runs after the algorithms of ratelimit.lua, which precede this
-- text in the script the store loads.
--
-- KEYS: one per check, the policy's state key (the same key ratelimit.lua keeps its state under).
-- ARGV: now (ticks), TTL margin (ms), then six per check: algorithm, limit, period (ticks), burst,
--       cost, want.
-- Returns five integers per check: granted (1/0), units granted, remaining, retry-after (ticks;
-- -1: never), reset (ticks). Each check is its own lease: one refused does not refuse another.

-- The algorithms read the decision's time from `now` (ratelimit.lua sets it per request).
now = tonumber(ARGV[1])
local count = (#ARGV - 2) / 6
local out = {}
for i = 1, count do
  local b = 2 + (i - 1) * 6
  local c = {
    alg = ARGV[b + 1], L = tonumber(ARGV[b + 2]), P = tonumber(ARGV[b + 3]),
    B = tonumber(ARGV[b + 4]), cost = math.max(tonumber(ARGV[b + 5]), 1),
    want = tonumber(ARGV[b + 6]), key = KEYS[i],
  }
  local alg = A[c.alg]
  if not alg then
    return redis.error_reply('gatehouse: no lease for algorithm ' .. tostring(c.alg))
  end
  local st = fields(c.key, alg.names, {})
  local _, peek_rem = alg.decide(c.L, c.P, c.B, copy(st), now, 0)
  local units = 0
  local allowed, rem, retry, reset
  if peek_rem < c.cost then
    allowed, rem, retry, reset = alg.decide(c.L, c.P, c.B, st, now, c.cost)
  else
    -- remaining >= units means units are admitted (remaining_predicts_admission).
    units = math.max(math.min(c.want, peek_rem), c.cost)
    allowed, rem, retry, reset = alg.decide(c.L, c.P, c.B, st, now, units)
  end
  store(c.key, st, alg.names, reset)
  local granted = 0
  if units > 0 then granted = 1 end
  out[#out + 1] = granted
  out[#out + 1] = units
  out[#out + 1] = rem
  out[#out + 1] = retry
  out[#out + 1] = reset
end
return out
