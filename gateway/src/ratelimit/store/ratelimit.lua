-- Gatehouse rate limits in Redis: the five algorithms of gateway/src/ratelimit/, ported line by
-- line so that a decision here equals the Rust one on the same state, time and cost (the property
-- test `redis_and_memory_stores_decide_identically` holds it). One call decides every policy of a
-- request, all-or-nothing: when one refuses, none is charged.
--
-- KEYS: two per check: the state key, and the sliding log's sorted set (unused by the others).
-- ARGV, one request: now (ticks: microseconds since the Unix epoch), TTL margin (ms), then five
--       per check: algorithm, limit, period (ticks), burst, cost; then, optionally, `dry`:
--       decide as if some other check of the request had refused (charge nothing, answer what a
--       refusal among several answers). On a Redis Cluster, a request whose checks span slots is
--       one dry call per slot and then, if every slot admitted, one charging call per slot
--       (redis.rs).
-- ARGV, a batch of requests (batch.rs): `batch`, TTL margin (ms), then per request: its now, its
--       number of checks, five per check as above; KEYS hold every request's keys in the same
--       order. Each request is decided all-or-nothing on its own, in the order given, each
--       seeing what the ones before it charged: the outcome of sequential calls, in one.
-- Returns four integers per check (of every request, in order): allowed (1/0), remaining,
-- retry-after (ticks; -1: never), reset (ticks).
--
-- Lua numbers are doubles: the gateway only sends policies whose products stay below 2^50
-- (config/ratelimit.rs), so every value here is an exact integer. Numbers go to Redis through
-- `fmt` (never tostring, which would write 1.7e+15).

-- The request being decided sets `now`; every function below reads it.
local now = 0
local margin = tonumber(ARGV[2])
local NEVER = -1

local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function cdiv(a, b)
  local q = idiv(a, b)
  if q * b < a then q = q + 1 end
  return q
end
local function ssub(a, b) if a > b then return a - b end return 0 end
local function fmt(x) return string.format('%.0f', x) end
local function allow(rem, reset) return {1, rem, 0, reset} end
local function deny(rem, retry, reset)
  if retry == 0 then retry = 1 end
  return {0, rem, retry, reset}
end
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
-- An idle key expires once its quota is fully restored, plus a margin for clock skew between
-- gateways: until then its state still matters.
local function expire(key, reset) redis.call('PEXPIRE', key, fmt(cdiv(reset, 1000) + margin)) end
local function fields(key, names)
  local v = redis.call('HMGET', key, unpack(names))
  local st = {}
  for i, name in ipairs(names) do st[name] = tonumber(v[i]) or 0 end
  return st
end
local function store(key, st, names, reset)
  local args = {}
  for _, name in ipairs(names) do args[#args + 1] = name; args[#args + 1] = fmt(st[name]) end
  redis.call('HSET', key, unpack(args))
  expire(key, reset)
end

local A = {}

-- token_bucket.rs: the deficit `d` (credit missing, in ticks) and the latest time `l`.
A.tb = { names = {'d', 'l'} }
function A.tb.decide(c, st, t, cost)
  local T = cdiv(c.P, c.L)
  local cap = c.B * T
  local n = math.max(t, st.l)
  local d = ssub(st.d, n - st.l)
  st.l = n
  st.d = d
  local function tokens(x) return idiv(ssub(cap, x), T) end
  if cost > c.B then return deny(tokens(d), NEVER, d) end
  local after = d + cost * T
  if after <= cap then
    st.d = after
    return allow(tokens(after), after)
  end
  return deny(tokens(d), after - cap, d)
end

-- gcra.rs: the theoretical arrival time.
A.gcra = { names = {'tat'} }
function A.gcra.decide(c, st, t, cost)
  local T = cdiv(c.P, c.L)
  local horizon = c.B * T
  local tat = math.max(st.tat, t)
  local function rem(x) return idiv(ssub(horizon, x - t), T) end
  if cost > c.B then return deny(rem(tat), NEVER, tat - t) end
  local new_tat = tat + cost * T
  local from = ssub(new_tat, horizon)
  if t >= from then
    st.tat = new_tat
    return allow(rem(new_tat), new_tat - t)
  end
  return deny(rem(tat), from - t, tat - t)
end

-- fixed_window.rs: the window index `w` and its count `c`.
A.fw = { names = {'w', 'c'} }
function A.fw.decide(c, st, t, cost)
  local window = idiv(t, c.P)
  if window > st.w then st.w = window; st.c = 0 end
  local until_end = ssub((st.w + 1) * c.P, t)
  local left = ssub(c.L, st.c)
  local function reset(count) if count == 0 then return 0 end return until_end end
  if cost > c.L then return deny(left, NEVER, reset(st.c)) end
  if cost <= left then
    st.c = st.c + cost
    return allow(left - cost, reset(st.c))
  end
  return deny(left, until_end, until_end)
end

-- sliding_window_counter.rs: window `w`, previous count `p`, current count `c`.
A.swc = { names = {'w', 'p', 'c'} }
function A.swc.decide(c, st, t, cost)
  local P, L = c.P, c.L
  local window = idiv(t, P)
  if window > st.w then
    if window == st.w + 1 then st.p = st.c else st.p = 0 end
    st.c = 0
    st.w = window
  end
  local start = st.w * P
  local weight = P - math.min(ssub(t, start), P - 1)
  local share = cdiv(st.p * weight, P)
  local function left(cur) return ssub(ssub(L, cur), share) end
  local function reset()
    if st.c > 0 then return ssub(start + 2 * P, t) end
    if st.p > 0 then return ssub(start + P, t) end
    return 0
  end
  if cost == 0 then return allow(left(st.c), reset()) end
  if cost > L then return deny(left(st.c), NEVER, reset()) end
  local room = L - st.c - cost
  if room >= 0 and st.p * weight <= room * P then
    st.c = st.c + cost
    return allow(left(st.c), reset())
  end
  -- The earliest time it fits, later in this window or in the next.
  local at
  if room >= 0 and st.p > 0 then
    local slack = idiv(room * P, st.p)
    if slack > 0 and slack < P then at = start + (P - slack) end
  end
  if not at then
    local e = 0
    if st.c ~= 0 then
      local slack = idiv((L - cost) * P, st.c)
      if slack < P then e = P - slack end
    end
    at = start + P + e
  end
  return deny(left(st.c), ssub(at, t), reset())
end

-- The four above: load the state, decide on copies with cost 0 (peek) and with the cost. A lone
-- check (one policy, not dry) needs no peek: its own decision is the answer and what it leaves.
local function prepare_state(c, alg, lone)
  local st = fields(c.key, alg.names)
  c.names = alg.names
  c.fs = copy(st)
  c.full = alg.decide(c, c.fs, now, c.cost)
  if not lone then
    c.ps = st
    c.peek = alg.decide(c, st, now, 0)
  end
end
local function commit_state(c) store(c.key, c.fs, c.names, c.full[4]) end
-- Alone, a refused request leaves what its own decision left; among several, what the peek left
-- (the Rust stores do the same).
local function settle_state(c, single)
  if single then store(c.key, c.fs, c.names, c.full[4]) else store(c.key, c.ps, c.names, c.peek[4]) end
end

-- sliding_log.rs: `u` (units in the log) and `l` (latest time) in the hash; the log itself in a
-- sorted set, one member `<at>:<cost>` per admission time, scored by its time.
local function entry_cost(m) return tonumber(string.match(m, ':(%d+)$')) end
local function prepare_log(c)
  local P, L = c.P, c.L
  local st = fields(c.key, {'u', 'l'})
  local n = math.max(now, st.l)
  local used = st.u
  if n - P >= 0 then
    local gone = redis.call('ZRANGEBYSCORE', c.log, '-inf', fmt(n - P))
    for _, m in ipairs(gone) do used = ssub(used, entry_cost(m)) end
    if #gone > 0 then redis.call('ZREMRANGEBYSCORE', c.log, '-inf', fmt(n - P)) end
  end
  local newest = redis.call('ZRANGE', c.log, -1, -1, 'WITHSCORES')
  local newest_at = nil
  if #newest > 0 then newest_at = tonumber(newest[2]) end
  local left = ssub(L, used)
  local reset = 0
  if newest_at then reset = ssub(newest_at + P, n) end
  local cost = c.cost
  c.peek = allow(left, reset)
  if cost == 0 then
    c.full = allow(left, reset)
  elseif cost > L then
    c.full = deny(left, NEVER, reset)
  elseif cost <= left then
    c.full = allow(left - cost, P)
  else
    local excess, freed, retry = cost - left, 0, NEVER
    local entries = redis.call('ZRANGE', c.log, 0, -1, 'WITHSCORES')
    for j = 1, #entries, 2 do
      freed = freed + entry_cost(entries[j])
      if freed >= excess then
        retry = ssub(tonumber(entries[j + 1]) + P, n)
        break
      end
    end
    c.full = deny(left, retry, reset)
  end
  local function meta(u, r)
    redis.call('HSET', c.key, 'u', fmt(u), 'l', fmt(n))
    expire(c.key, r)
    expire(c.log, r)
  end
  c.commit = function()
    if cost > 0 then
      local merged = cost
      if newest_at == n then
        merged = merged + entry_cost(newest[1])
        redis.call('ZREM', c.log, newest[1])
      end
      redis.call('ZADD', c.log, fmt(n), fmt(n) .. ':' .. fmt(merged))
    end
    meta(used + cost, c.full[4])
  end
  c.settle = function() meta(used, c.peek[4]) end
end

-- ENTRY: above, the algorithms (lease.lua runs them too); below, the calls' checks.
-- One request: `count` checks, their keys from KEYS[k + 1], their parameters from ARGV[a + 1];
-- appends their four integers each to `out`.
local function decide(out, k, a, count, dry)
  local checks = {}
  local all = not dry
  for i = 1, count do
    local b = a + (i - 1) * 5
    local c = {
      alg = ARGV[b + 1], L = tonumber(ARGV[b + 2]), P = tonumber(ARGV[b + 3]),
      B = tonumber(ARGV[b + 4]), cost = tonumber(ARGV[b + 5]),
      key = KEYS[k + 2 * i - 1], log = KEYS[k + 2 * i],
    }
    if c.alg == 'sl' then
      prepare_log(c)
    else
      prepare_state(c, A[c.alg], count == 1 and not dry)
      c.commit, c.settle = commit_state, settle_state
    end
    if c.full[1] == 0 then all = false end
    checks[i] = c
  end
  for i = 1, count do
    local c = checks[i]
    local d
    if all then
      c.commit(c)
      d = c.full
    else
      c.settle(c, count == 1 and not dry)
      if c.full[1] == 0 then d = c.full else d = c.peek end
    end
    for j = 1, 4 do out[#out + 1] = d[j] end
  end
end

-- Every algorithm is checked before anything is written, so a bad call changes nothing.
local function known(alg) return alg == 'sl' or A[alg] ~= nil end
local function unknown(alg) return redis.error_reply('gatehouse: unknown algorithm ' .. tostring(alg)) end

local out = {}
if ARGV[1] == 'batch' then
  local requests = {}
  local a, k = 3, 0
  while a <= #ARGV do
    local count = tonumber(ARGV[a + 1]) or 0
    for i = 1, count do
      local alg = ARGV[a + 2 + (i - 1) * 5]
      if not known(alg) then return unknown(alg) end
    end
    requests[#requests + 1] = { now = tonumber(ARGV[a]), k = k, a = a + 1, count = count }
    a = a + 2 + count * 5
    k = k + 2 * count
  end
  for _, r in ipairs(requests) do
    now = r.now
    decide(out, r.k, r.a, r.count, false)
  end
else
  local count = math.floor((#ARGV - 2) / 5)
  local dry = ARGV[3 + count * 5] == 'dry'
  for i = 1, count do
    local alg = ARGV[2 + (i - 1) * 5 + 1]
    if not known(alg) then return unknown(alg) end
  end
  now = tonumber(ARGV[1])
  decide(out, 0, 2, count, dry)
end
return out
