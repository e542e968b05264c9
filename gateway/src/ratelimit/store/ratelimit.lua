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

-- Written for few allocations: Redis runs a batch's checks one after another while every
-- other client waits, and a table or closure per check was most of a call's time. So the
-- algorithms answer in four values rather than a table, keep no closures, and a lone check
-- decides on its state in place.

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
-- A decision: allowed (1/0), remaining, retry-after, reset.
local function ok(rem, reset) return 1, rem, 0, reset end
local function no(rem, retry, reset)
  if retry == 0 then retry = 1 end
  return 0, rem, retry, reset
end
local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
-- An idle key expires once its quota is fully restored, plus a margin for clock skew between
-- gateways: until then its state still matters.
local function expire(key, reset) redis.call('PEXPIRE', key, fmt(cdiv(reset, 1000) + margin)) end
-- Reads a state's fields into `st` (absent ones are 0).
local function fields(key, names, st)
  if #names == 1 then
    st[names[1]] = tonumber(redis.call('HGET', key, names[1])) or 0
    return st
  end
  local v = redis.call('HMGET', key, unpack(names))
  for i = 1, #names do st[names[i]] = tonumber(v[i]) or 0 end
  return st
end
-- Writes a state's fields (one to three) and its key's expiry.
local function store(key, st, names, reset)
  local a, b, c = names[1], names[2], names[3]
  if c then
    redis.call('HSET', key, a, fmt(st[a]), b, fmt(st[b]), c, fmt(st[c]))
  elseif b then
    redis.call('HSET', key, a, fmt(st[a]), b, fmt(st[b]))
  else
    redis.call('HSET', key, a, fmt(st[a]))
  end
  expire(key, reset)
end

-- Each algorithm: the names of its state's fields, a scratch table for a lone check's state, and
-- `decide(L, P, B, st, t, cost)`, which updates `st` and answers a decision.
local A = {}

-- token_bucket.rs: the deficit `d` (credit missing, in ticks) and the latest time `l`.
A.tb = { names = {'d', 'l'}, scratch = {} }
function A.tb.decide(L, P, B, st, t, cost)
  local T = cdiv(P, L)
  local cap = B * T
  local n = math.max(t, st.l)
  local d = ssub(st.d, n - st.l)
  st.l = n
  st.d = d
  -- tokens left at a deficit x: idiv(ssub(cap, x), T)
  if cost > B then return no(idiv(ssub(cap, d), T), NEVER, d) end
  local after = d + cost * T
  if after <= cap then
    st.d = after
    return ok(idiv(ssub(cap, after), T), after)
  end
  return no(idiv(ssub(cap, d), T), after - cap, d)
end

-- gcra.rs: the theoretical arrival time.
A.gcra = { names = {'tat'}, scratch = {} }
function A.gcra.decide(L, P, B, st, t, cost)
  local T = cdiv(P, L)
  local horizon = B * T
  local tat = math.max(st.tat, t)
  -- remaining at a tat x: idiv(ssub(horizon, x - t), T)
  if cost > B then return no(idiv(ssub(horizon, tat - t), T), NEVER, tat - t) end
  local new_tat = tat + cost * T
  local from = ssub(new_tat, horizon)
  if t >= from then
    st.tat = new_tat
    return ok(idiv(ssub(horizon, new_tat - t), T), new_tat - t)
  end
  return no(idiv(ssub(horizon, tat - t), T), from - t, tat - t)
end

-- fixed_window.rs: the window index `w` and its count `c`.
local function fw_reset(count, until_end) if count == 0 then return 0 end return until_end end
A.fw = { names = {'w', 'c'}, scratch = {} }
function A.fw.decide(L, P, B, st, t, cost)
  local window = idiv(t, P)
  if window > st.w then st.w = window; st.c = 0 end
  local until_end = ssub((st.w + 1) * P, t)
  local left = ssub(L, st.c)
  if cost > L then return no(left, NEVER, fw_reset(st.c, until_end)) end
  if cost <= left then
    st.c = st.c + cost
    return ok(left - cost, fw_reset(st.c, until_end))
  end
  return no(left, until_end, until_end)
end

-- sliding_window_counter.rs: window `w`, previous count `p`, current count `c`.
local function swc_reset(st, start, P, t)
  if st.c > 0 then return ssub(start + 2 * P, t) end
  if st.p > 0 then return ssub(start + P, t) end
  return 0
end
A.swc = { names = {'w', 'p', 'c'}, scratch = {} }
function A.swc.decide(L, P, B, st, t, cost)
  local window = idiv(t, P)
  if window > st.w then
    if window == st.w + 1 then st.p = st.c else st.p = 0 end
    st.c = 0
    st.w = window
  end
  local start = st.w * P
  local weight = P - math.min(ssub(t, start), P - 1)
  local share = cdiv(st.p * weight, P)
  -- left at a count x: ssub(ssub(L, x), share)
  if cost == 0 then return ok(ssub(ssub(L, st.c), share), swc_reset(st, start, P, t)) end
  if cost > L then return no(ssub(ssub(L, st.c), share), NEVER, swc_reset(st, start, P, t)) end
  local room = L - st.c - cost
  if room >= 0 and st.p * weight <= room * P then
    st.c = st.c + cost
    return ok(ssub(ssub(L, st.c), share), swc_reset(st, start, P, t))
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
  return no(ssub(ssub(L, st.c), share), ssub(at, t), swc_reset(st, start, P, t))
end

-- The four above, among several checks (or dry): load the state, decide on copies with cost 0
-- (peek) and with the cost. A refused request among several leaves what the peek left (the Rust
-- stores do the same).
local function prepare_state(c, alg)
  local st = fields(c.key, alg.names, {})
  c.names = alg.names
  c.fs = copy(st)
  c.full = {alg.decide(c.L, c.P, c.B, c.fs, now, c.cost)}
  c.ps = st
  c.peek = {alg.decide(c.L, c.P, c.B, st, now, 0)}
end
local function commit_state(c) store(c.key, c.fs, c.names, c.full[4]) end
local function settle_state(c) store(c.key, c.ps, c.names, c.peek[4]) end

-- sliding_log.rs: `u` (units in the log) and `l` (latest time) in the hash; the log itself in a
-- sorted set, one member `<at>:<cost>` per admission time, scored by its time.
local function entry_cost(m) return tonumber(string.match(m, ':(%d+)$')) end
local function prepare_log(c)
  local P, L = c.P, c.L
  local st = fields(c.key, {'u', 'l'}, {})
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
  c.peek = {ok(left, reset)}
  if cost == 0 then
    c.full = {ok(left, reset)}
  elseif cost > L then
    c.full = {no(left, NEVER, reset)}
  elseif cost <= left then
    c.full = {ok(left - cost, P)}
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
    c.full = {no(left, retry, reset)}
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
local out, emitted = {}, 0
local function emit(allowed, rem, retry, reset)
  out[emitted + 1], out[emitted + 2], out[emitted + 3], out[emitted + 4] = allowed, rem, retry, reset
  emitted = emitted + 4
end

-- One request: `count` checks, their keys from KEYS[k + 1], their parameters from ARGV[a + 1];
-- appends their four integers each to `out`.
local function decide(k, a, count, dry)
  -- A lone check (one policy, not dry), a batch's usual request: its own decision is the answer
  -- and what it leaves, so it decides on its state in place (no peek, no copies).
  if count == 1 and not dry and ARGV[a + 1] ~= 'sl' then
    local alg = A[ARGV[a + 1]]
    local st = fields(KEYS[k + 1], alg.names, alg.scratch)
    local allowed, rem, retry, reset = alg.decide(
      tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), st, now,
      tonumber(ARGV[a + 5]))
    store(KEYS[k + 1], st, alg.names, reset)
    emit(allowed, rem, retry, reset)
    return
  end
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
      prepare_state(c, A[c.alg])
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
      c.settle(c)
      if c.full[1] == 0 then d = c.full else d = c.peek end
    end
    emit(d[1], d[2], d[3], d[4])
  end
end

-- Every algorithm is checked before anything is written, so a bad call changes nothing.
local function known(alg) return alg == 'sl' or A[alg] ~= nil end
local function unknown(alg) return redis.error_reply('gatehouse: unknown algorithm ' .. tostring(alg)) end

local argc = #ARGV
if ARGV[1] == 'batch' then
  -- Per request: its now, its count, five per check.
  local a = 3
  while a <= argc do
    local count = tonumber(ARGV[a + 1]) or 0
    for i = 1, count do
      local alg = ARGV[a + 2 + (i - 1) * 5]
      if not known(alg) then return unknown(alg) end
    end
    a = a + 2 + count * 5
  end
  local k = 0
  a = 3
  while a <= argc do
    local count = tonumber(ARGV[a + 1]) or 0
    now = tonumber(ARGV[a])
    decide(k, a + 1, count, false)
    a = a + 2 + count * 5
    k = k + 2 * count
  end
else
  local count = math.floor((argc - 2) / 5)
  local dry = ARGV[3 + count * 5] == 'dry'
  for i = 1, count do
    local alg = ARGV[2 + (i - 1) * 5 + 1]
    if not known(alg) then return unknown(alg) end
  end
  now = tonumber(ARGV[1])
  decide(0, 2, count, dry)
end
return out
