"""The Lua scripts of the Redis state store: each check-then-write runs whole on the server, alone.

Redis runs one script at a time, so a script that reads a budget's room and writes the
reservation is one atomic step across every gateway sharing the server, as ``BEGIN IMMEDIATE``
is for processes sharing a SQLite file. Every key is built from the prefix passed as the first
argument (``ARGV[1]``), so one server can hold several deployments. The scripts address keys they
read from a reservation (its scopes), so they need one server (or a primary with its replicas),
not Redis Cluster.

Numbers cross the wire as text: Python sends ``repr(float)`` (shortest exact round trip), the
scripts write sums with ``%.17g`` and never let Lua's own ``tostring`` (14 digits) touch an
amount, and replies carry amounts as strings (a Lua number in a reply is cut to an integer).
Times are the caller's epoch seconds; the server's own clock only ages keys out (``PEXPIRE``,
relative, for housekeeping) and never decides whether something counts.

Key layout under ``<prefix>:`` —

=====================  ======  ==========================================================
``b:s:<day>:<scope>``  hash    settled spend: ``cents``, ``tokens``, ``closed`` (``1``)
``b:h:<day>:<scope>``  zset    reservations held on the scope, scored by their expiry
``b:r:<id>``           hash    one reservation: ``day``, ``unit``, ``amount``, ``scopes`` (JSON)
``b:exp``              zset    every reservation by expiry (``purge_reservations``)
``l:s:<scope>``        zset    leases of a scope, scored by their expiry
``l:ids``              hash    lease id -> its scope
``c:<key>``            string  a cached value: 8 bytes of expiry (big-endian double), then the value
``c:index``            zset    cache keys by expiry: the size bound evicts the lowest first
=====================  ======  ==========================================================
"""

from __future__ import annotations

from typing import Final

# The room of one scope: settled spend plus unexpired reservations of the unit, and whether closed.
_USED: Final = """
local function used_of(p, day, scope, unit, now_arg)
  local s = p .. ':b:s:' .. day .. ':' .. scope
  local spend = redis.call('HMGET', s, unit, 'closed')
  local used = tonumber(spend[1] or '0')
  local held = redis.call('ZRANGEBYSCORE', p .. ':b:h:' .. day .. ':' .. scope, '(' .. now_arg, '+inf')
  local reserved = 0
  for _, rid in ipairs(held) do
    local r = redis.call('HMGET', p .. ':b:r:' .. rid, 'unit', 'amount')
    if r[1] == unit then reserved = reserved + tonumber(r[2]) end
  end
  return used, reserved, spend[2] == '1'
end

local function extend(key, keep_ms)
  if redis.call('PTTL', key) < keep_ms then redis.call('PEXPIRE', key, keep_ms) end
end

local function forget(p, rid, day, scopes)
  for _, scope in ipairs(scopes) do redis.call('ZREM', p .. ':b:h:' .. day .. ':' .. scope, rid) end
  redis.call('DEL', p .. ':b:r:' .. rid)
  redis.call('ZREM', p .. ':b:exp', rid)
  return 1
end

local function drop(p, rid)
  local r = redis.call('HMGET', p .. ':b:r:' .. rid, 'day', 'scopes')
  if not r[1] then
    redis.call('ZREM', p .. ':b:exp', rid)
    return 0
  end
  return forget(p, rid, r[1], cjson.decode(r[2]))
end
"""

# ARGV: prefix, day, unit, amount, reservation id, now, expires_at, slack, keep_ms, then scope, limit pairs.
# Reply: {1} granted; {0, index of the first scope without room, its used as text}; {-1} id already held.
RESERVE: Final = (
    _USED
    + """
local p, day, unit, rid = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local amount, slack, keep = tonumber(ARGV[4]), tonumber(ARGV[8]), tonumber(ARGV[9])
local scopes = {}
for i = 10, #ARGV, 2 do
  local used, reserved, closed = used_of(p, day, ARGV[i], unit, ARGV[6])
  if closed or used + reserved + amount > tonumber(ARGV[i + 1]) + slack then
    return {0, (i - 10) / 2, string.format('%.17g', used + reserved)}
  end
  scopes[#scopes + 1] = ARGV[i]
end
local rkey = p .. ':b:r:' .. rid
if redis.call('EXISTS', rkey) == 1 then return {-1} end  -- after the room, as the SQLite store finds it
local encoded = '[]'
if #scopes > 0 then encoded = cjson.encode(scopes) end
redis.call('HSET', rkey, 'day', day, 'unit', unit, 'amount', ARGV[4], 'scopes', encoded)
redis.call('PEXPIRE', rkey, keep)
redis.call('ZADD', p .. ':b:exp', ARGV[7], rid)
for _, scope in ipairs(scopes) do
  local h = p .. ':b:h:' .. day .. ':' .. scope
  redis.call('ZADD', h, ARGV[7], rid)
  extend(h, keep)
end
return {1}
"""
)

# ARGV: prefix, reservation id, actual, slack, keep_ms. Reply: 1 settled, 0 unknown, -1 bad amount, -2 not whole.
SETTLE: Final = (
    _USED
    + """
local p, rid = ARGV[1], ARGV[2]
local r = redis.call('HMGET', p .. ':b:r:' .. rid, 'day', 'unit', 'amount', 'scopes')
if not r[1] then return 0 end
local actual, slack, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if actual == nil or actual ~= actual or actual < 0 or actual == math.huge then return -1 end
if r[2] == 'tokens' and math.floor(actual) ~= actual then return -2 end
-- Booked in full either way; past its reservation, the bound failed: close the scopes for the day.
local over = actual > tonumber(r[3]) + slack
local scopes = cjson.decode(r[4])
for _, scope in ipairs(scopes) do
  local s = p .. ':b:s:' .. r[1] .. ':' .. scope
  local spent = tonumber(redis.call('HGET', s, r[2]) or '0')
  redis.call('HSET', s, r[2], string.format('%.17g', spent + actual))
  if over then redis.call('HSET', s, 'closed', '1') end
  redis.call('PEXPIRE', s, keep)  -- the same keep every time: setting it again only moves it later
end
return forget(p, rid, r[1], scopes)
"""
)

# ARGV: prefix, reservation id. Reply: 1 dropped, 0 unknown.
RELEASE: Final = _USED + "return drop(ARGV[1], ARGV[2])\n"

# ARGV: prefix, scope, day, now, unit. Reply: {settled spend, unexpired reservations}, as text.
USED: Final = (
    _USED
    + """
local used, reserved = used_of(ARGV[1], ARGV[3], ARGV[2], ARGV[5], ARGV[4])
return {string.format('%.17g', used), string.format('%.17g', reserved)}
"""
)

# ARGV: prefix, before. Reply: how many reservations went.
PURGE_RESERVATIONS: Final = (
    _USED
    + """
local rids = redis.call('ZRANGEBYSCORE', ARGV[1] .. ':b:exp', '-inf', '(' .. ARGV[2])
for _, rid in ipairs(rids) do drop(ARGV[1], rid) end
return #rids
"""
)

# ARGV: prefix, scope, limit, lease id, now, expires_at, holder. Reply: 1 taken (or renewed), 0 full.
# ``holder`` is the taker's identity (``_holder.Holder`` as JSON), kept in ``<prefix>:l:who``.
ACQUIRE: Final = """
local p, scope, lid = ARGV[1], ARGV[2], ARGV[4]
local z, ids, who = p .. ':l:s:' .. scope, p .. ':l:ids', p .. ':l:who'
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', ARGV[5])) do
  redis.call('ZREM', z, gone)
  redis.call('HDEL', ids, gone)
  redis.call('HDEL', who, gone)
end
local others = redis.call('ZCARD', z)
if redis.call('ZSCORE', z, lid) then others = others - 1 end
if others >= tonumber(ARGV[3]) then return 0 end
local old = redis.call('HGET', ids, lid)
if old and old ~= scope then redis.call('ZREM', p .. ':l:s:' .. old, lid) end
redis.call('ZADD', z, ARGV[6], lid)
redis.call('HSET', ids, lid, scope)
redis.call('HSET', who, lid, ARGV[7])
return 1
"""

# ARGV: prefix, scope, now. Reply: lease id, holder, lease id, holder... of the scope's unexpired
# leases ('' for a lease taken without a holder).
SCOPE_HOLDERS: Final = """
local p = ARGV[1]
local lids = redis.call('ZRANGEBYSCORE', p .. ':l:s:' .. ARGV[2], '(' .. ARGV[3], '+inf')
local out = {}
for _, lid in ipairs(lids) do
  out[#out + 1] = lid
  out[#out + 1] = redis.call('HGET', p .. ':l:who', lid) or ''
end
return out
"""

# ARGV: prefix, lease id, now, expires_at. Reply: 1 renewed, 0 expired or unknown.
RENEW: Final = """
local scope = redis.call('HGET', ARGV[1] .. ':l:ids', ARGV[2])
if not scope then return 0 end
local z = ARGV[1] .. ':l:s:' .. scope
local current = redis.call('ZSCORE', z, ARGV[2])
if not current or tonumber(current) <= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', z, 'XX', ARGV[4], ARGV[2])
return 1
"""

# ARGV: prefix, lease id. Reply: 1 released, 0 unknown.
RELEASE_LEASE: Final = """
local ids = ARGV[1] .. ':l:ids'
local scope = redis.call('HGET', ids, ARGV[2])
if not scope then return 0 end
redis.call('ZREM', ARGV[1] .. ':l:s:' .. scope, ARGV[2])
redis.call('HDEL', ids, ARGV[2])
redis.call('HDEL', ARGV[1] .. ':l:who', ARGV[2])
return 1
"""

# ARGV: prefix, key, stored bytes, expires_at, max entries. Over the bound, the earliest expiries go first.
CACHE_PUT: Final = """
local p, key = ARGV[1], ARGV[2]
local index = p .. ':c:index'
redis.call('SET', p .. ':c:' .. key, ARGV[3])
redis.call('ZADD', index, ARGV[4], key)
local over = redis.call('ZCARD', index) - tonumber(ARGV[5])
if over > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', index, 0, over - 1)) do
    redis.call('DEL', p .. ':c:' .. victim)
  end
  redis.call('ZREMRANGEBYRANK', index, 0, over - 1)
end
return 0
"""

# ARGV: prefix, now. Reply: how many expired entries went.
CACHE_PURGE: Final = """
local index = ARGV[1] .. ':c:index'
local gone = redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[2])
for _, key in ipairs(gone) do redis.call('DEL', ARGV[1] .. ':c:' .. key) end
redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[2])
return #gone
"""
