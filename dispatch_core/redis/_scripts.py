"""The queue's atomic steps, each one Lua script run inside Redis.

Every step that reads a state and changes it depends on nobody else changing it between
the two: taking a job must see a free slot and lease it in one move, or two processes
would fill one slot. Redis runs a script alone, so each step is one script and one round
trip. Keys, all under one prefix (`dispatch:` by default):

    seq                  INCR: the order of arrival over every queue
    q:{queue}            LIST of job ids waiting, oldest first; a queue per route, and
                         `server:{name}` for jobs that name their server
    job:{id}             HASH: spec, seq, queue, servers, models, state, owner, server,
                         prompt_id, result, error, record (what the panels show),
                         request (its journal key), started (its record once taken)
    slots:{server}       ZSET of the job ids holding a slot, scored by lease expiry (ms)
    down:{server}        set, with an expiry, while the server's breaker is open
    held:{server}        SET of the model files the server was last seen holding
    speed                HASH server -> seconds of its last warm job
    running:{process}    SET of the job ids a process has taken
    proc:{process}       its heartbeat (what it is), expiring unless renewed
    procs                SET of the processes seen
    recent               ZSET of job ids by arrival, for the panels' job lists
    journal:{request}    `server prompt_id time` of a request sent before, written when
                         the job is taken (or by STARTED, for a prompt sent under another
                         id) and looked up by ENQUEUE: a repeat attaches to it

Events go out as JSON on three kinds of channel, so that a process hears only what it
acts on. `{prefix}events` carries everything, for the panels: `{"t": "job", "id",
"record"}` for every change of a job (at its end by FINISH, with its `state`, `result` and
`error` too; as it is queued into an empty queue, with `"wake": true` last), `{"t":
"wake"}` when a slot turns up, and `{"t": "cancel", "id"}` for the process running a job
to stop it. `{prefix}control` carries the wakes and cancels alone, for every process.
`{prefix}ends:{process}` carries the end of each job that `process` submitted and another
ran (as `events` has it): a caller waiting there needs nothing more from Redis, and a
process that ran its own job hands it over in-process. A process reads `events` only
while something in it listens to every job's records (the service's job list and panel).
"""

from __future__ import annotations

__all__ = [
    "CANCEL",
    "ENDED",
    "ENQUEUE",
    "FINISH",
    "HEARTBEAT",
    "REAP",
    "REQUEUE",
    "STARTED",
    "TAKE",
]

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

_JOB_EVENT = """
local function job_event(p, id, record)
  redis.call('PUBLISH', p .. 'events', '{"t":"job","id":"' .. id .. '","record":' .. record .. '}')
end
local function control(p, message)
  redis.call('PUBLISH', p .. 'events', message)
  redis.call('PUBLISH', p .. 'control', message)
end
local function end_event(p, id, record, state, result, error, me)
  if result == '' then result = 'null' end
  if error == '' then error = 'null' end
  local message = '{"t":"job","id":"' .. id .. '","record":' .. record .. ',"state":"' .. state
    .. '","result":' .. result .. ',"error":' .. error .. '}'
  redis.call('PUBLISH', p .. 'events', message)
  local origin = redis.call('HGET', p .. 'job:' .. id, 'origin')
  if origin and origin ~= '' and origin ~= me then
    redis.call('PUBLISH', p .. 'ends:' .. origin, message)
  end
end
"""

ENQUEUE = (
    _JOB_EVENT
    + """
-- ARGV: prefix, id, queue, spec, servers, models, record, queued_at, keep, request key,
-- look ('1': a request sent before answers {'journal', 'server prompt_id time'} instead),
-- started (its record once taken, "{{server}}" and "{{prompt_id}}" to be filled in),
-- origin (the process submitting it, told its end on `ends:{origin}`)
local p, id = ARGV[1], ARGV[2]
if ARGV[11] == '1' then
  local sent = redis.call('GET', p .. 'journal:' .. ARGV[10])
  if sent then return {'journal', sent} end
end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', p .. 'job:' .. id, 'spec', ARGV[4], 'seq', seq, 'queue', ARGV[3],
  'servers', ARGV[5], 'models', ARGV[6], 'state', 'queued', 'owner', '', 'record', ARGV[7],
  'request', ARGV[10], 'started', ARGV[12], 'origin', ARGV[13] or '')
local waiting = redis.call('RPUSH', p .. 'q:' .. ARGV[3], id)
redis.call('ZADD', p .. 'recent', ARGV[8], id)
redis.call('ZREMRANGEBYRANK', p .. 'recent', 0, -tonumber(ARGV[9]) - 1)
-- Its record, with a wake for every process when its queue was empty: behind another job
-- it cannot be taken first, and whoever could take that one was woken by it.
local wake = ''
if waiting == 1 then wake = ',"wake":true' end
redis.call('PUBLISH', p .. 'events', '{"t":"job","id":"' .. id .. '","record":' .. ARGV[7]
  .. wake .. '}')
if waiting == 1 then redis.call('PUBLISH', p .. 'control', '{"t":"wake"}') end
return seq
"""
)

_TAKE_NEXT = (
    _NOW
    + _JOB_EVENT
    + """
-- take_next(p, me, take): the oldest head of `take.queues` that has a free, allowed
-- server among `take.servers` ([[name, max]...], in this process's order of preference):
-- one holding the job's models if any is free, else the first. Its slot leased for
-- `take.lease` ms, the job taken, it answers {id, server, spec, prompt_id}; else false.
-- The prompt is to be sent under `take.prompt_id`, recorded here with the journal (kept
-- `take.keep` s) and the job's running record: no second round trip to say where it went.
-- (A job queued by an older process has no record to fill: its prompt_id answers '', and
-- its taker records the prompt as it sends it, with STARTED.)
local function holds(p, name, models)
  for _, m in ipairs(models) do
    if redis.call('SISMEMBER', p .. 'held:' .. name, m) == 0 then return false end
  end
  return #models > 0
end
local function free_servers(p, servers)
  local free = {}
  for _, s in ipairs(servers) do
    local slots = p .. 'slots:' .. s[1]
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('EXISTS', p .. 'down:' .. s[1]) == 0 and redis.call('ZCARD', slots) < s[2] then
      free[s[1]] = true
    end
  end
  return free
end
local function server_for(p, job, servers, free)
  local allowed = {}
  for _, n in ipairs(cjson.decode(redis.call('HGET', job, 'servers'))) do allowed[n] = true end
  local models = cjson.decode(redis.call('HGET', job, 'models'))
  local first = nil
  for _, s in ipairs(servers) do
    if free[s[1]] and allowed[s[1]] then
      if holds(p, s[1], models) then return s[1] end
      first = first or s[1]
    end
  end
  return first
end
local function queued_head(p, queue)
  local head = redis.call('LINDEX', queue, 0)
  while head and redis.call('HGET', p .. 'job:' .. head, 'state') ~= 'queued' do
    redis.call('LPOP', queue)  -- cancelled, or forgotten: not a job to wait for
    head = redis.call('LINDEX', queue, 0)
  end
  return head
end
local function started(p, id, server, take)
  local job = p .. 'job:' .. id
  local fields = redis.call('HMGET', job, 'request', 'started')
  if not fields[1] or not fields[2] then return '' end
  local record = fields[2]:gsub('"{{server}}"', function() return cjson.encode(server) end)
  record = record:gsub('"{{prompt_id}}"', function() return cjson.encode(take.prompt_id) end)
  redis.call('HSET', job, 'state', 'running', 'prompt_id', take.prompt_id, 'record', record)
  local sent = server .. '\\n' .. take.prompt_id .. '\\n' .. string.format('%.3f', now / 1000)
  redis.call('SET', p .. 'journal:' .. fields[1], sent, 'EX', take.keep)
  job_event(p, id, record)
  return take.prompt_id
end
local function take_next(p, me, take)
  local servers = take.servers
  if #servers == 0 then return false end
  local free = free_servers(p, servers)
  local best, best_seq, best_server, best_queue = nil, nil, nil, nil
  for _, q in ipairs(take.queues) do
    local queue = p .. 'q:' .. q
    local head = queued_head(p, queue)
    if head then
      local seq = tonumber(redis.call('HGET', p .. 'job:' .. head, 'seq'))
      if best == nil or seq < best_seq then
        local server = server_for(p, p .. 'job:' .. head, servers, free)
        if server then best, best_seq, best_server, best_queue = head, seq, server, queue end
      end
    end
  end
  if not best then return false end
  redis.call('LPOP', best_queue)
  redis.call('ZADD', p .. 'slots:' .. best_server, now + tonumber(take.lease), best)
  redis.call('SADD', p .. 'running:' .. me, best)
  local job = p .. 'job:' .. best
  redis.call('HSET', job, 'state', 'taken', 'owner', me, 'server', best_server)
  local prompt_id = started(p, best, best_server, take)
  return {best, best_server, redis.call('HGET', job, 'spec'), prompt_id}
end
"""
)

TAKE = (
    _TAKE_NEXT
    + """
-- ARGV: prefix, process, take (JSON {lease, queues, servers, prompt_id, keep}: see take_next).
return take_next(ARGV[1], ARGV[2], cjson.decode(ARGV[3]))
"""
)

STARTED = (
    _JOB_EVENT
    + """
-- ARGV: prefix, id, process, prompt_id, record, request key, journal entry, keep seconds.
-- Beside the prompt's POST, where it goes, for a process taking over and for a repeat;
-- only when it goes under another id than its take recorded (a job taken over and run
-- again, or queued by an older process). (It may come after the job's end, whose FINISH
-- went by another connection: then only the journal is written.)
local p, id = ARGV[1], ARGV[2]
local job = p .. 'job:' .. id
redis.call('SET', p .. 'journal:' .. ARGV[6], ARGV[7], 'EX', ARGV[8])
if redis.call('HGET', job, 'owner') ~= ARGV[3] then return 0 end
redis.call('HSET', job, 'state', 'running', 'prompt_id', ARGV[4], 'record', ARGV[5])
job_event(p, id, ARGV[5])
return 1
"""
)

FINISH = (
    _TAKE_NEXT
    + """
-- ARGV: prefix, id, process, state, result, error, record, held (JSON list or ''),
-- seconds ('' if unknown), keep_seconds; then optionally a take as TAKE has it. Only the
-- job's owner may end it: once. With a take, the slot freed is filled again in the same
-- move: the next job taken is the answer (as TAKE's), so that a server is not left idle
-- for another round trip; else 1 (0: not the owner).
local p, id, me = ARGV[1], ARGV[2], ARGV[3]
local job = p .. 'job:' .. id
if redis.call('HGET', job, 'owner') ~= me then return 0 end
local server = redis.call('HGET', job, 'server')
redis.call('HSET', job, 'state', ARGV[4], 'result', ARGV[5], 'error', ARGV[6],
  'record', ARGV[7], 'owner', '')
redis.call('EXPIRE', job, tonumber(ARGV[10]))
redis.call('SREM', p .. 'running:' .. me, id)
local freed = 0
if server then
  freed = redis.call('ZREM', p .. 'slots:' .. server, id)
  if ARGV[8] ~= '' then
    redis.call('DEL', p .. 'held:' .. server)
    for _, m in ipairs(cjson.decode(ARGV[8])) do redis.call('SADD', p .. 'held:' .. server, m) end
  end
  if ARGV[9] ~= '' then redis.call('HSET', p .. 'speed', server, ARGV[9]) end
end
end_event(p, id, ARGV[7], ARGV[4], ARGV[5], ARGV[6], me)
local taken = false
if ARGV[11] then taken = take_next(p, me, cjson.decode(ARGV[11])) end
if freed == 1 and not (taken and taken[2] == server) then
  control(p, '{"t":"wake"}')  -- a slot free for any process
end
return taken or 1
"""
)

REQUEUE = (
    _JOB_EVENT
    + """
-- ARGV: prefix, id, process, down_ms (0: none). Back to the head of its queue, in its
-- place, its slot given back; with down_ms, its server's breaker opens that long.
local p, id, me = ARGV[1], ARGV[2], ARGV[3]
local job = p .. 'job:' .. id
if redis.call('HGET', job, 'owner') ~= me then return 0 end
local server = redis.call('HGET', job, 'server')
redis.call('SREM', p .. 'running:' .. me, id)
if server then
  redis.call('ZREM', p .. 'slots:' .. server, id)
  if tonumber(ARGV[4]) > 0 then redis.call('SET', p .. 'down:' .. server, '1', 'PX', ARGV[4]) end
end
redis.call('HSET', job, 'state', 'queued', 'owner', '', 'server', '', 'prompt_id', '')
redis.call('LPUSH', p .. 'q:' .. redis.call('HGET', job, 'queue'), id)
control(p, '{"t":"wake"}')
return 1
"""
)

HEARTBEAT = (
    _NOW
    + """
-- ARGV: prefix, process, info, heartbeat_ms, lease_ms, held (JSON [[id, server]...]).
-- Says this process lives, renews the leases of the jobs it runs; answers who lives,
-- who stopped, the jobs Redis holds as this process's, and the servers' speeds.
local p, me = ARGV[1], ARGV[2]
redis.call('SET', p .. 'proc:' .. me, ARGV[3], 'PX', ARGV[4])
redis.call('SADD', p .. 'procs', me)
for _, pair in ipairs(cjson.decode(ARGV[6])) do
  if redis.call('HGET', p .. 'job:' .. pair[1], 'owner') == me then
    redis.call('ZADD', p .. 'slots:' .. pair[2], now + tonumber(ARGV[5]), pair[1])
  end
end
local alive, dead = {}, {}
for _, other in ipairs(redis.call('SMEMBERS', p .. 'procs')) do
  local info = redis.call('GET', p .. 'proc:' .. other)
  if info then table.insert(alive, info) else table.insert(dead, other) end
end
return {alive, dead, redis.call('SMEMBERS', p .. 'running:' .. me),
  redis.call('HGETALL', p .. 'speed')}
"""
)

REAP = (
    _NOW
    + """
-- ARGV: prefix, dead process, me, lease_ms. Its taken jobs become mine, their slots too:
-- [[id, server, prompt_id, spec]...]. Nothing if it came back meanwhile.
local p, dead, me = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', p .. 'proc:' .. dead) == 1 then return {} end
local found = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'running:' .. dead)) do
  local job = p .. 'job:' .. id
  if redis.call('HGET', job, 'owner') == dead then
    local server = redis.call('HGET', job, 'server')
    redis.call('HSET', job, 'owner', me)
    redis.call('SADD', p .. 'running:' .. me, id)
    redis.call('ZADD', p .. 'slots:' .. server, now + tonumber(ARGV[4]), id)
    table.insert(found, {id, server, redis.call('HGET', job, 'prompt_id') or '',
      redis.call('HGET', job, 'spec')})
  end
end
redis.call('DEL', p .. 'running:' .. dead)
redis.call('SREM', p .. 'procs', dead)
return found
"""
)

CANCEL = (
    _JOB_EVENT
    + """
-- ARGV: prefix, id, record (as cancelled). A queued job ends here (its end told to the
-- process that submitted it, this one too); a taken one is signalled to its owner.
-- Answers the state the job was in ('' if unknown).
local p, id = ARGV[1], ARGV[2]
local job = p .. 'job:' .. id
local state = redis.call('HGET', job, 'state')
if state == 'queued' then
  redis.call('LREM', p .. 'q:' .. redis.call('HGET', job, 'queue'), 0, id)
  redis.call('HSET', job, 'state', 'cancelled', 'record', ARGV[3],
    'error', '{"type":"CancelledError","message":"cancelled"}')
  redis.call('EXPIRE', job, 604800)
  end_event(p, id, ARGV[3], 'cancelled', '', '{"type":"CancelledError","message":"cancelled"}',
    '')
elseif state == 'taken' or state == 'running' then
  control(p, '{"t":"cancel","id":"' .. id .. '"}')
end
return state or ''
"""
)

ENDED = """
-- ARGV: prefix, job ids (JSON list) a process waits for. Answers those that ended, or that
-- Redis does not know (forgotten by a restart without persistence), as id, state ('' if
-- unknown), id, state...: the few a wait may have missed, not every job's state.
local p = ARGV[1]
local found = {}
for _, id in ipairs(cjson.decode(ARGV[2])) do
  local state = redis.call('HGET', p .. 'job:' .. id, 'state')
  if not state or state == 'done' or state == 'failed' or state == 'cancelled' then
    table.insert(found, id)
    table.insert(found, state or '')
  end
end
return found
"""
