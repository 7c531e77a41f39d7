"""The Lua scripts of the redis backend, one per operation that reads and writes.

A script runs on the server with no other command interleaved, so each is one
atomic operation for every client of the server. Every script names the keys
it touches in KEYS (all under the store's hash tag, so one Cluster slot).

Keys of the writing scripts, in this order:

1. ``data``: hash, user key -> value.
2. ``index``: sorted set of the user keys, every score 0 (byte order).
3. ``restore``: the restore lease (a token, with an expiry).
4. ``backup``: the backup lease.
5. ``backup:cursor``: the last key the running backup has read ('' before its first page).
6. ``backup:old``: hash, key -> its value when the backup began, for keys
   changed since and not yet read by the backup.
7. ``backup:oldindex``: sorted set of the keys of ``backup:old``.
8. ``backup:new``: set of the keys absent when the backup began, created since.

While a backup runs, a writer about to change a key the backup has not read
yet first preserves what the key held when the backup began (copy on
write), so the backup reads one point in time while writers go on.

Failures the caller must name are error replies whose first word is a code
(``LKV_RESTORE``, ``LKV_BACKUP``, ``LKV_PARSE``, ``LKV_RANGE``, ``LKV_LEASE``);
the rest is the message. ``errors.py`` maps them.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# Writers refuse to run during a restore; while a backup runs they preserve.
# Top-level code, so the gate's ``return`` ends the script. Lua compares
# strings with strcoll (the server's locale), so byte order is computed.
_GATE = """
local leases = redis.call('EXISTS', KEYS[3], KEYS[4])
if leases > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
local function after(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local function preserve(key, current)
  if leases == 0 or redis.call('EXISTS', KEYS[4]) == 0 then return end
  local cursor = redis.call('GET', KEYS[5])
  if cursor and cursor ~= '' and not after(key, cursor) then return end
  if redis.call('HEXISTS', KEYS[6], key) == 1 or redis.call('SISMEMBER', KEYS[8], key) == 1 then return end
  if current == nil then current = redis.call('HGET', KEYS[1], key) end
  if current then
    redis.call('HSET', KEYS[6], key, current)
    redis.call('ZADD', KEYS[7], 0, key)
  else
    redis.call('SADD', KEYS[8], key)
  end
end
"""

SET = _GATE + """
preserve(ARGV[1], nil)
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
return 1
"""

DELETE = _GATE + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
preserve(ARGV[1], current)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

GET_OR_SET = _GATE + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  return {1, current}
end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return {0}
"""

SWAP = _GATE + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not current then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return {0}
end
return {1, current}
"""

# ARGV: key, new value, '1' when an old value is given (else: only if absent), old value.
COMPARE_AND_SWAP = _GATE + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == '0' then
  if current then return 0 end
  preserve(ARGV[1], current)
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 1
end
if current ~= ARGV[4] then return 0 end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

COMPARE_AND_DELETE = _GATE + """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current ~= ARGV[2] then return 0 end
preserve(ARGV[1], current)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS 9 and 10 are the staging hash and index of a restore. The gate proves
# no restore runs, so staging keys left there belong to a restorer that died.
# Preserving a whole store would copy it, so clear waits for a backup to end.
CLEAR = _GATE + """
if redis.call('EXISTS', KEYS[4]) == 1 then
  return redis.error_reply('LKV_BACKUP a backup is in progress; clear when it completes')
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
return 1
"""

INCREMENT_BY = _GATE + """
local function strip(m)
  m = string.gsub(m, '^0+', '')
  if m == '' then return '0' end
  return m
end
local function compare(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end
local function add_magnitudes(a, b)
  local out, i, j, carry = {}, #a, #b, 0
  while i > 0 or j > 0 or carry > 0 do
    local s = carry
    if i > 0 then s = s + string.byte(a, i) - 48 end
    if j > 0 then s = s + string.byte(b, j) - 48 end
    if s >= 10 then s = s - 10; carry = 1 else carry = 0 end
    out[#out + 1] = string.char(48 + s)
    i = i - 1
    j = j - 1
  end
  return strip(string.reverse(table.concat(out)))
end
local function subtract_magnitudes(a, b)
  local out, i, j, borrow = {}, #a, #b, 0
  while i > 0 do
    local s = string.byte(a, i) - 48 - borrow
    if j > 0 then s = s - (string.byte(b, j) - 48) end
    if s < 0 then s = s + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + s)
    i = i - 1
    j = j - 1
  end
  return strip(string.reverse(table.concat(out)))
end

local current = redis.call('HGET', KEYS[1], ARGV[1])
local sign, magnitude = '', '0'
if current then
  local text = current
  if #text >= 2 and string.byte(text, 1) == 34 and string.byte(text, #text) == 34 then
    text = string.sub(text, 2, #text - 1)
  end
  local s, m = string.match(text, '^(%-?)([0-9]+)$')
  if not s then
    return redis.error_reply('LKV_PARSE stored value is not an integer counter')
  end
  sign, magnitude = s, strip(m)
end
local delta_sign, delta_magnitude = string.match(ARGV[2], '^(%-?)([0-9]+)$')
local result_sign, result
if #magnitude <= 14 and #delta_magnitude <= 14 then
  -- Both below 10^14: their sum is below 2^53, exact in a Lua number.
  local n = tonumber(sign .. magnitude) + tonumber(delta_sign .. delta_magnitude)
  if n < 0 then result_sign, result = '-', string.format('%.0f', -n)
  else result_sign, result = '', string.format('%.0f', n) end
elseif sign == delta_sign then
  result_sign, result = sign, add_magnitudes(magnitude, delta_magnitude)
else
  local order = compare(magnitude, delta_magnitude)
  if order >= 0 then
    result_sign, result = sign, subtract_magnitudes(magnitude, delta_magnitude)
  else
    result_sign, result = delta_sign, subtract_magnitudes(delta_magnitude, magnitude)
  end
end
if result == '0' then result_sign = '' end
local limit = result_sign == '-' and '9223372036854775808' or '9223372036854775807'
if compare(result, limit) > 0 then
  return redis.error_reply('LKV_RANGE increment result is outside signed 64-bit range; nothing was written')
end
result = result_sign .. result
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], result)
if not current then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
return result
"""

# Reads. HMGET takes the values in slices: Lua's unpack has a stack limit.
# Pages come back as one MessagePack string (cmsgpack is built into the
# server's Lua): parsing a reply of thousands of elements costs redis-py's
# parser about 10 us an element, and msgpack a fraction of that.
_VALUES_OF = """
local function values_of(hash, keys)
  local values = {}
  for i = 1, #keys, 1000 do
    local part = redis.call('HMGET', hash, unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do values[#values + 1] = part[j] end
  end
  return values
end
"""

# KEYS: data, index. ARGV: ZRANGEBYLEX min and max, count (0: all).
SCAN = _VALUES_OF + """
local keys
if ARGV[3] == '0' then
  keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2])
else
  keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
end
if #keys == 0 then return cmsgpack.pack({}, {}) end
return cmsgpack.pack(keys, values_of(KEYS[1], keys))
"""

# KEYS: index. ARGV: prefix ('' for all), ZRANGEBYLEX max of the prefix, a
# uniform draw in [0, 1) made by the client (a script's own math.random is
# seeded the same way on every call).
RANDOM_KEY = """
local first, count = 0, 0
if ARGV[1] == '' then
  count = redis.call('ZCARD', KEYS[1])
else
  first = redis.call('ZLEXCOUNT', KEYS[1], '-', '(' .. ARGV[1])
  count = redis.call('ZLEXCOUNT', KEYS[1], '[' .. ARGV[1], ARGV[2])
end
if count == 0 then return false end
local rank = math.floor(tonumber(ARGV[3]) * count)
if rank >= count then rank = count - 1 end
return redis.call('ZRANGE', KEYS[1], first + rank, first + rank)[1]
"""

# -- backup. KEYS: restore, backup, backup:cursor, backup:old,
# backup:oldindex, backup:new. ARGV: lease token, lease milliseconds. What
# a backup that died left goes first.
BACKUP_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.error_reply('LKV_BACKUP another backup is in progress')
end
redis.call('UNLINK', KEYS[4], KEYS[5], KEYS[6])
redis.call('SET', KEYS[3], '')
return 1
"""

# KEYS: data, index, backup, backup:cursor, backup:old, backup:oldindex,
# backup:new. ARGV: lease token, the last key the reader has consumed (''
# before the first page), count, lease milliseconds. Renews the lease: the
# heartbeat of a running backup. Returns the next live keys and values with,
# for each, whether it was created after the backup began, and the next
# preserved keys and values; the client merges them (see backend.py).
BACKUP_PAGE = _VALUES_OF + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the backup lease expired before the backup finished (raise lease_timeout)')
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[2])
local low = '-'
if ARGV[2] ~= '' then low = '(' .. ARGV[2] end
local keys = redis.call('ZRANGEBYLEX', KEYS[2], low, '+', 'LIMIT', 0, ARGV[3])
local values, created = {}, {}
if #keys > 0 then
  values = values_of(KEYS[1], keys)
  for i = 1, #keys, 1000 do
    local part = redis.call('SMISMEMBER', KEYS[7], unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do created[#created + 1] = part[j] end
  end
end
local old_keys = redis.call('ZRANGEBYLEX', KEYS[6], low, '+', 'LIMIT', 0, ARGV[3])
local old_values = {}
if #old_keys > 0 then old_values = values_of(KEYS[5], old_keys) end
return cmsgpack.pack(keys, values, created, old_keys, old_values)
"""

# KEYS: backup, backup:cursor, backup:old, backup:oldindex, backup:new.
# ARGV: lease token. Ends a backup, if the lease is still ours.
BACKUP_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  return 1
end
return 0
"""

# -- restore. KEYS: restore, backup, staging data, staging index.
# ARGV: lease token, lease milliseconds. Staging keys left by a restorer
# that died go first.
RESTORE_BEGIN = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('LKV_BACKUP a backup is in progress; retry when it completes')
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
redis.call('UNLINK', KEYS[3], KEYS[4])
return 1
"""

# KEYS: restore, staging data, staging index. ARGV: token, lease
# milliseconds, then the rows (at most 1000) as one MessagePack array
# key, value, key, value... (one argument: redis-py encodes each argument in
# Python, a few microseconds apiece). Renews the lease.
RESTORE_LOAD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the restore lease expired before the restore finished (raise lease_timeout); nothing was restored')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local fields = cmsgpack.unpack(ARGV[3])
if #fields < 2 then return 0 end
local members = {}
for i = 1, #fields, 2 do
  members[#members + 1] = 0
  members[#members + 1] = fields[i]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[3], unpack(members))
return 1
"""

# KEYS: restore, data, index, staging data, staging index. ARGV: token.
# The flip: the old data is unlinked (freed by the server in the background)
# and the staging keys renamed into place, in one script.
RESTORE_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the restore lease expired before the restore finished (raise lease_timeout); nothing was restored')
end
redis.call('UNLINK', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
  redis.call('RENAME', KEYS[5], KEYS[3])
end
redis.call('DEL', KEYS[1])
return redis.call('ZCARD', KEYS[3])
"""

# KEYS: restore, staging data, staging index. ARGV: token.
RESTORE_ABORT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('UNLINK', KEYS[2], KEYS[3])
  redis.call('DEL', KEYS[1])
end
return 1
"""

SCRIPTS: dict[str, str] = {
    "set": SET,
    "delete": DELETE,
    "get_or_set": GET_OR_SET,
    "swap": SWAP,
    "compare_and_swap": COMPARE_AND_SWAP,
    "compare_and_delete": COMPARE_AND_DELETE,
    "clear": CLEAR,
    "increment_by": INCREMENT_BY,
    "scan": SCAN,
    "random_key": RANDOM_KEY,
    "backup_begin": BACKUP_BEGIN,
    "backup_page": BACKUP_PAGE,
    "backup_end": BACKUP_END,
    "restore_begin": RESTORE_BEGIN,
    "restore_load": RESTORE_LOAD,
    "restore_finish": RESTORE_FINISH,
    "restore_abort": RESTORE_ABORT,
}
"""Every script, by name."""
