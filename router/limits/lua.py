"""The one Lua script behind the Redis-held limits, and its operations.

Every call runs a batch of operations (all that the router queued during one
turn of its event loop) in one EVALSHA, atomically, and answers one string:
each operation's integer answer, in order, separated by spaces. The clock is Redis's own
(`TIME`), so router hosts with skewed clocks agree on lease deadlines and
token refills.

Keys, all under one hash tag `{NS}` (one cluster slot; NS is the
`redis_prefix` setting); names are container and API key NAMES, never keys
or request content:

- `{NS}:slots:C`  ZSET lease id -> deadline (ms): container C's slots in use.
- `{NS}:queue:C`  LIST of tickets, oldest first: requests waiting for C.
- `{NS}:grants:P` LIST of "ticket container": slots handed to router
  process P's waiters, popped by P with BLPOP.
- `{NS}:alive:P`  set while process P renews it; a waiter of a process
  that died is skipped when its turn comes.
- `{NS}:conc:K`   ZSET lease id -> deadline: API key K's requests in flight.
- `{NS}:rate:K`   HASH t (tokens), at (ms): API key K's token bucket.

Lease ids and tickets are "P:n" (the process's random id, a counter).
A lease lives `lease_ms` past its last renewal; its holder renews it (`L`)
while the request runs, so a process that dies frees its slots that long
after its last renewal.

Operations, with their arguments (after the batch's header ns, process id,
lease_ms) and what each answers:

- A C limit lease            take a slot of C now: 1, or 0 (full, or others wait)
- Q C limit max_queue ticket ttl_ms
                             a slot now (1), else queue the ticket (0), or -1 (queue full)
- R C limit lease            give the slot back; the oldest live waiter gets it
- X C limit ticket           a waiter leaves: its ticket (queued, or granted meanwhile) goes
- S C limit                  hand free slots (expired leases, a raised limit) to waiters
- K K max lease              count a request of key K in flight: 1, or 0 at its max
- k K lease                  that request ended
- T K per_second burst       take a token: 0, or the microseconds until one is there
- H                          this process is alive (for `lease_ms`)
- L zset lease               renew (or re-assert after a Redis restart) a lease held
"""

from __future__ import annotations

ACQUIRE = "A"
ENQUEUE = "Q"
RELEASE = "R"
CANCEL = "X"
SWEEP = "S"
KEY_ACQUIRE = "K"
KEY_RELEASE = "k"
TOKEN = "T"
HEARTBEAT = "H"
RENEW = "L"

GRANTED, QUEUED, QUEUE_FULL = 1, 0, -1

SCRIPT = """
local ns, proc, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function owner(ticket)
  return string.match(ticket, '^([^:]*):')
end

local function alive(ticket)
  local p = owner(ticket)
  return p ~= nil and redis.call('EXISTS', ns .. 'alive:' .. p) == 1
end

local function hold(zset, lease)
  redis.call('ZADD', zset, now + lease_ms, lease)
  redis.call('PEXPIRE', zset, lease_ms * 2)
end

-- Free slots of container `name` go to its oldest live waiters; answers the slots still free.
local function dispatch(name, limit)
  local slots, queue = ns .. 'slots:' .. name, ns .. 'queue:' .. name
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local free = limit - redis.call('ZCARD', slots)
  while free > 0 do
    local ticket = redis.call('LPOP', queue)
    if not ticket then break end
    if alive(ticket) then
      hold(slots, ticket)
      local grants = ns .. 'grants:' .. owner(ticket)
      redis.call('RPUSH', grants, ticket .. ' ' .. name)
      redis.call('PEXPIRE', grants, lease_ms * 2)
      free = free - 1
    end
  end
  return free
end

local function enqueue(name, limit, max_queue, ticket, ttl)
  if dispatch(name, limit) > 0 then
    hold(ns .. 'slots:' .. name, ticket)
    return 1
  end
  local queue = ns .. 'queue:' .. name
  if redis.call('LLEN', queue) >= max_queue then
    for _, queued in ipairs(redis.call('LRANGE', queue, 0, -1)) do
      if not alive(queued) then redis.call('LREM', queue, 0, queued) end
    end
    if redis.call('LLEN', queue) >= max_queue then return -1 end
  end
  redis.call('RPUSH', queue, ticket)
  if redis.call('PTTL', queue) < ttl then redis.call('PEXPIRE', queue, ttl) end
  return 0
end

local function take_token(name, per_second, burst)
  local bucket = ns .. 'rate:' .. name
  local state = redis.call('HMGET', bucket, 't', 'at')
  local tokens, at = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or at == nil then tokens, at = burst, now end
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * per_second / 1000)
    at = now
  end
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.ceil((1 - tokens) / per_second * 1000000)
  end
  redis.call('HSET', bucket, 't', tokens, 'at', at)
  redis.call('PEXPIRE', bucket, math.ceil(burst / per_second * 1000) + 1000)
  return wait
end

local results = {}
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  local result = 0
  if op == 'A' then
    if dispatch(ARGV[i + 1], tonumber(ARGV[i + 2])) > 0 then
      hold(ns .. 'slots:' .. ARGV[i + 1], ARGV[i + 3])
      result = 1
    end
    i = i + 4
  elseif op == 'Q' then
    result = enqueue(ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4], tonumber(ARGV[i + 5]))
    i = i + 6
  elseif op == 'R' then
    redis.call('ZREM', ns .. 'slots:' .. ARGV[i + 1], ARGV[i + 3])
    dispatch(ARGV[i + 1], tonumber(ARGV[i + 2]))
    i = i + 4
  elseif op == 'X' then
    redis.call('LREM', ns .. 'queue:' .. ARGV[i + 1], 0, ARGV[i + 3])
    redis.call('ZREM', ns .. 'slots:' .. ARGV[i + 1], ARGV[i + 3])
    dispatch(ARGV[i + 1], tonumber(ARGV[i + 2]))
    i = i + 4
  elseif op == 'S' then
    dispatch(ARGV[i + 1], tonumber(ARGV[i + 2]))
    i = i + 3
  elseif op == 'K' then
    local zset = ns .. 'conc:' .. ARGV[i + 1]
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', now)
    if redis.call('ZCARD', zset) < tonumber(ARGV[i + 2]) then
      hold(zset, ARGV[i + 3])
      result = 1
    end
    i = i + 4
  elseif op == 'k' then
    redis.call('ZREM', ns .. 'conc:' .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'T' then
    result = take_token(ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]))
    i = i + 4
  elseif op == 'H' then
    redis.call('SET', ns .. 'alive:' .. proc, '1', 'PX', lease_ms)
    i = i + 1
  elseif op == 'L' then
    hold(ns .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('unknown limits operation ' .. tostring(op))
  end
  results[#results + 1] = string.format('%d', result)
end
-- one string, not an array: the router reads one reply line per batch, not one per operation
return table.concat(results, ' ')
"""
