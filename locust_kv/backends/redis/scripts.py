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
9. ``claims``: hash, key -> its lease, ``<expires_ms>:<token>:<owner>``
   (every lease: live, or expired and not yet taken over or released).
10. ``claims:keys``: sorted set of the keys of the leases not yet swept,
    every score 0 (byte order): those of a prefix are a range.
11. ``claims:ends``: sorted set of the same keys by ``expires_ms``.
12. ``claims:lapsed``: sorted set, score 0, of the keys of swept leases.
13. ``claimtoken``: the fencing counter (INCRBY); never dropped, so a token
    never repeats.
14. ``expires``: sorted set of the keys that have an expiry, scored by it
    (Unix ms of the server's clock). ``data`` holds the field
    ``\\xffexpiring`` (never a key: not UTF-8) while it is not empty, so that
    a get on a store without expiries is one HMGET. Its value ``2`` says that
    ``data`` also holds each expiry as the field ``<key>\\xff`` (never a key
    either), written and removed with the member of ``expires`` by the same
    scripts, so that a get reads the value and its expiry with one HMGET
    (with ``TIME``, in one MULTI). ``1`` (written by releases before the
    companion fields) says they may be missing: gets then read ``expires``.
    The flag is set to ``2`` only when it is absent, that is while no key
    expires, so a ``1`` stays until the store's expiring keys are all gone.
15. ``backup:oldexpires``: hash, key -> its expiry when the backup began, for
    the keys of ``backup:old`` that had one.

Every writing script also takes ``bytes`` as its *last* key (``KEYS[#KEYS]``):
the key+value bytes of ``data``, kept exact by every script that changes
``data`` while it exists. A namespace made before the counter has none:
writers leave it absent, and the first script that needs it (a quota check,
``stats``) computes it once from the data, O(n) in one script (about a second
per million keys), then every writer keeps it. ``clear`` sets it to 0; a
restore counts its staging data in ``staging:bytes`` and renames that into
place at the switch.

Quotas: the scripts that add data take the handle's ``max_keys`` and
``max_bytes`` as their last two arguments ('0': none) and refuse, before they
change anything, a write that would take ``ZCARD index`` past ``max_keys`` or
the counter past ``max_bytes`` (``LKV_QUOTA``). Deletes, pops and claims
never check them.

A sweep moves the leases whose end has passed from ``claims:keys`` and
``claims:ends`` to ``claims:lapsed``, so that right after one, the leases of
a prefix in ``claims:keys`` are exactly its live leases, found by rank in
O(log n). Each lease is swept at most once; the claim scripts sweep a few
each call, an exact draw sweeps them all. Live and expired leases are
counted from these sets in O(log n) (a prefix also filters the unswept
expired leases).

Every writing script takes keys 1-15 and the counter: any of them may remove
expired entries, and drops the lease of every key it removes, in the same
script. A lease survives the scripts that only change values.

Expiring keys: an entry whose expiry is at or before the server's clock is
absent for every script, whether or not it was purged: a write first removes
it (``live``, ``growth``) and treats the key as absent; reads leave it out.
Every write first purges up to PURGE_STEP (16) expired entries (``step``);
``purge_expired`` removes up to its limit; a write the quota refuses removes
up to 1,000 and checks again. A read that must walk the expired keys not yet
purged walks at most SETTLE (1,000) of them, else answers ``LKV_SETTLE``
before changing anything and the client purges (``purge_settling``) first.
Purging never preserves for a backup: a backup leaves out every entry expired
when its page is read, and an entry purged has expired before that. Every lease is
on a key that exists (clear and restore drop them all), so the scripts that
walk leases never meet a key missing from the index.

Leases expire by the server's clock, read with ``TIME`` inside the script
(the script's effects are what the server replicates, so replicas agree).

While a backup runs, a writer about to change a key the backup has not read
yet first preserves what the key held when the backup began (copy on
write), so the backup reads one point in time while writers go on.

Failures the caller must name are error replies whose first word is a code
(``LKV_RESTORE``, ``LKV_BACKUP``, ``LKV_PARSE``, ``LKV_RANGE``, ``LKV_LEASE``,
``LKV_QUOTA``);
the rest is the message. ``errors.py`` maps them.

This module is over 500 lines: it is Lua source, one script per atomic
operation, kept beside the key layout they all share.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# The byte counter (KEYS: data, index, ..., the counter last), computed once for a namespace that predates it.
_BYTES_FUNCTIONS = """
local function stored_bytes()
  local n = redis.call('GET', KEYS[#KEYS])
  if n then return tonumber(n) end
  local total, rank = 0, 0
  while true do
    local keys = redis.call('ZRANGE', KEYS[2], rank, rank + 999)
    if #keys == 0 then break end
    for i = 1, #keys do total = total + #keys[i] + redis.call('HSTRLEN', KEYS[1], keys[i]) end
    rank = rank + #keys
  end
  redis.call('SET', KEYS[#KEYS], total)
  return total
end
"""

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
    local ends = redis.call('ZSCORE', KEYS[14], key)
    if ends then redis.call('HSET', KEYS[15], key, ends) end
  else
    redis.call('SADD', KEYS[8], key)
  end
end

local BYTES = KEYS[#KEYS]
""" + _BYTES_FUNCTIONS + """
-- Add delta to the byte counter, if the store has one yet (else the first stored_bytes() counts the data).
local function account(delta)
  if delta ~= 0 and redis.call('EXISTS', BYTES) == 1 then redis.call('INCRBY', BYTES, delta) end
end

-- What a script that removes keys also needs: dropping their leases (KEYS
-- 9-12). One HDEL when the key has no lease (the usual case).
local function unlease(key)
  if redis.call('HDEL', KEYS[9], key) == 1 then
    redis.call('ZREM', KEYS[10], key)
    redis.call('ZREM', KEYS[11], key)
    redis.call('ZREM', KEYS[12], key)
  end
end
local function unlease_all(keys)
  for i = 1, #keys, 1000 do
    local part = {unpack(keys, i, math.min(i + 999, #keys))}
    if redis.call('HDEL', KEYS[9], unpack(part)) > 0 then
      redis.call('ZREM', KEYS[10], unpack(part))
      redis.call('ZREM', KEYS[11], unpack(part))
      redis.call('ZREM', KEYS[12], unpack(part))
    end
  end
end

-- Expiring keys: KEYS[14] (expires) holds each key that has an expiry, scored by it (Unix ms of the
-- server's clock); FLAG, a field of data that no key can be (not UTF-8), is there while it is not empty.
local EXPIRES = KEYS[14]
local FLAG = '\\255expiring'
-- The field of data that holds key's expiry beside it, for gets (see the flag's value 2 above).
local function companion(key) return key .. '\\255' end
local function companions(keys, first, last)
  local names = {}
  for i = first, last do names[#names + 1] = companion(keys[i]) end
  return names
end
local PURGE_STEP, QUOTA_PURGE = 16, 1000
local clock
local function now()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end
local function ms(n) return string.format('%d', n) end
local function expired(key)
  local ends = redis.call('ZSCORE', EXPIRES, key)
  return ends ~= false and ends ~= nil and tonumber(ends) <= now()
end
local function unflag()
  if redis.call('EXISTS', EXPIRES) == 0 then redis.call('HDEL', KEYS[1], FLAG) end
end
-- Remove entries (distinct keys) with their index member, expiry, lease and bytes.
local function remove_keys(keys)
  for i = 1, #keys, 1000 do
    local part = {unpack(keys, i, math.min(i + 999, #keys))}
    if redis.call('EXISTS', BYTES) == 1 then
      local freed = 0
      for j = 1, #part do
        local size = redis.call('HSTRLEN', KEYS[1], part[j])
        if size > 0 or redis.call('HEXISTS', KEYS[1], part[j]) == 1 then freed = freed + #part[j] + size end
      end
      account(-freed)
    end
    redis.call('HDEL', KEYS[1], unpack(part))
    redis.call('ZREM', KEYS[2], unpack(part))
    if redis.call('ZREM', EXPIRES, unpack(part)) > 0 then
      redis.call('HDEL', KEYS[1], unpack(companions(part, 1, #part)))
    end
  end
  unlease_all(keys)
end
-- Remove up to limit expired entries (a backup never needs them: it leaves out what expired before it reads).
local function purge(limit)
  local gone = redis.call('ZRANGEBYSCORE', EXPIRES, '-inf', ms(now()), 'LIMIT', 0, limit)
  if #gone > 0 then
    remove_keys(gone)
    unflag()
  end
  return #gone
end
-- Every write's step of purging, before its own work.
local function step()
  if redis.call('EXISTS', EXPIRES) == 1 then purge(PURGE_STEP) end
end
local function drop_if_expired(key)
  if expired(key) then
    remove_keys({key})
    unflag()
  end
end
-- The live value at key, or nil (an expired entry there is removed first).
local function live(key)
  drop_if_expired(key)
  return redis.call('HGET', KEYS[1], key)
end
-- The expiry of a key just stored: ttl ms from now, or none ('').
local function set_expiry(key, ttl)
  if ttl == '' then
    if redis.call('ZREM', EXPIRES, key) == 1 then
      redis.call('HDEL', KEYS[1], companion(key))
      unflag()
    end
  else
    local ends = ms(now() + tonumber(ttl))
    redis.call('ZADD', EXPIRES, ends, key)
    redis.call('HSET', KEYS[1], companion(key), ends)
    redis.call('HSETNX', KEYS[1], FLAG, '2')
  end
end
-- The error text when adding new_keys keys and grown key+value bytes would pass the quota (the last two
-- arguments, '0': none), else nil. Checked before the script changes anything.
local function quota_refusal(new_keys, grown)
  local max_keys, max_bytes = ARGV[#ARGV - 1], ARGV[#ARGV]
  if new_keys > 0 and max_keys ~= '0' and redis.call('ZCARD', KEYS[2]) + new_keys > tonumber(max_keys) then
    return 'LKV_QUOTA the write would take the store past its quota of max_keys=' .. max_keys .. ' keys; nothing was written'
  end
  if grown > 0 and max_bytes ~= '0' and stored_bytes() + grown > tonumber(max_bytes) then
    return 'LKV_QUOTA the write would take the store past its quota of max_bytes=' .. max_bytes .. ' bytes; nothing was written'
  end
  return nil
end
-- A write the quota refuses first removes expired entries (a bounded step) and is checked again.
local function over_quota(new_keys, grown)
  local refused = quota_refusal(new_keys, grown)
  if refused and redis.call('EXISTS', EXPIRES) == 1 and purge(QUOTA_PURGE) > 0 then
    refused = quota_refusal(new_keys, grown)
  end
  return refused
end
-- The bytes a value stored at key adds: its own if the key exists, else the key's and its own.
-- An expired entry there is removed first (the key is absent).
local function growth(key, value)
  drop_if_expired(key)
  local old = redis.call('HSTRLEN', KEYS[1], key)
  if old > 0 or redis.call('HEXISTS', KEYS[1], key) == 1 then return 0, #value - old end
  return 1, #key + #value
end
"""

# ARGV: key, value, ttl ms ('': no expiry), max_keys, max_bytes (as every script that adds data: the quota last).
SET = _GATE + """
step()
local new_keys, grown = growth(ARGV[1], ARGV[2])
local refused = over_quota(new_keys, grown)
if refused then return redis.error_reply(refused) end
preserve(ARGV[1], nil)
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
set_expiry(ARGV[1], ARGV[3])
account(grown)
return 1
"""

DELETE = _GATE + """
step()
local current = live(ARGV[1])
if not current then return 0 end
preserve(ARGV[1], current)
remove_keys({ARGV[1]})
unflag()
return 1
"""

# ARGV: key, value, ttl ms ('': none; applied only when it stores), max_keys, max_bytes.
GET_OR_SET = _GATE + """
step()
local current = live(ARGV[1])
if current then
  return {1, current}
end
local refused = over_quota(1, #ARGV[1] + #ARGV[2])
if refused then return redis.error_reply(refused) end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] ~= '' then set_expiry(ARGV[1], ARGV[3]) end
account(#ARGV[1] + #ARGV[2])
return {0}
"""

# ARGV: key, value, ttl ms, max_keys, max_bytes.
SWAP = _GATE + """
step()
local current = live(ARGV[1])
local grown = current and #ARGV[2] - #current or #ARGV[1] + #ARGV[2]
local refused = over_quota(current and 0 or 1, grown)
if refused then return redis.error_reply(refused) end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
set_expiry(ARGV[1], ARGV[3])
account(grown)
if not current then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return {0}
end
return {1, current}
"""

# ARGV: key, new value, '1' when an old value is given (else: only if absent),
# old value, ttl ms (when it stores), max_keys, max_bytes. ANSWER is replaced: the plain form answers 1 or 0, the detailed
# one also the value before the call.
_COMPARE_AND_SWAP = """
step()
local current = live(ARGV[1])
ANSWER
if ARGV[3] == '0' then
  if current then return answer(0) end
  local refused = over_quota(1, #ARGV[1] + #ARGV[2])
  if refused then return redis.error_reply(refused) end
  preserve(ARGV[1], current)
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  set_expiry(ARGV[1], ARGV[5])
  account(#ARGV[1] + #ARGV[2])
  return answer(1)
end
if current ~= ARGV[4] then return answer(0) end
local refused = over_quota(0, #ARGV[2] - #current)
if refused then return redis.error_reply(refused) end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
set_expiry(ARGV[1], ARGV[5])
account(#ARGV[2] - #current)
return answer(1)
"""

# ARGV: key, old value.
_COMPARE_AND_DELETE = """
step()
local current = live(ARGV[1])
ANSWER
if current ~= ARGV[2] then return answer(0) end
preserve(ARGV[1], current)
remove_keys({ARGV[1]})
unflag()
return answer(1)
"""

_PLAIN = "local function answer(done) return done end"
_DETAILED = "local function answer(done) if current then return {done, current} end return {done} end"

COMPARE_AND_SWAP = _GATE + _COMPARE_AND_SWAP.replace("ANSWER", _PLAIN)
COMPARE_AND_SWAP_DETAILED = _GATE + _COMPARE_AND_SWAP.replace("ANSWER", _DETAILED)
COMPARE_AND_DELETE = _GATE + _COMPARE_AND_DELETE.replace("ANSWER", _PLAIN)
COMPARE_AND_DELETE_DETAILED = _GATE + _COMPARE_AND_DELETE.replace("ANSWER", _DETAILED)

# KEYS 1-15 as every writer (9-12 the leases: dropped, clear ends every
# lease; 13 the token counter stays, so tokens never repeat; 14 the
# expiries, 15 a backup's preserved expiries), 16 to 19 the staging hash,
# index, byte counter and expiries of a restore, 20 the byte counter (set to
# 0). The gate proves no restore runs, so staging keys left there belong to
# a restorer that died. Preserving a whole store would copy it, so clear
# waits for a backup to end.
CLEAR = _GATE + """
if redis.call('EXISTS', KEYS[4]) == 1 then
  return redis.error_reply('LKV_BACKUP a backup is in progress; clear when it completes')
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12],
  KEYS[14], KEYS[15], KEYS[16], KEYS[17], KEYS[18], KEYS[19])
redis.call('SET', BYTES, 0)
return 1
"""

# ARGV: key, delta, ttl ms (applied only when the call creates the key), max_keys, max_bytes.
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

step()
local current = live(ARGV[1])
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
local grown = current and #result - #current or #ARGV[1] + #result
local refused = over_quota(current and 0 or 1, grown)
if refused then return redis.error_reply(refused) end
preserve(ARGV[1], current)
redis.call('HSET', KEYS[1], ARGV[1], result)
account(grown)
if not current then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  if ARGV[3] ~= '' then set_expiry(ARGV[1], ARGV[3]) end
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

# The keys of a page of a range: ZRANGEBYLEX min and max, count (0: all),
# offset. ZRANGEBYLEX's own LIMIT walks the members it skips, O(offset), so
# an offset goes by rank instead: ZLEXCOUNT finds the range's first rank and
# size, ZRANGE reads the page by rank, O(log n + count) whatever the offset.
_RANGE_PAGE = """
local function range_page(index, min, max, count, offset)
  if offset == '0' then
    if count == '0' then return redis.call('ZRANGEBYLEX', index, min, max) end
    return redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, count)
  end
  local inside = redis.call('ZLEXCOUNT', index, min, max)
  local skip = tonumber(offset)
  if skip >= inside then return {} end
  local stop, wanted = inside, tonumber(count)
  if wanted > 0 and skip + wanted < inside then stop = skip + wanted end
  local first = 0
  if min ~= '-' then first = redis.call('ZLEXCOUNT', index, '-', '(' .. string.sub(min, 2)) end
  return redis.call('ZRANGE', index, first + skip, first + stop - 1)
end
"""

# -- backup. KEYS: restore, backup, backup:cursor, backup:old,
# backup:oldindex, backup:new, backup:oldexpires. ARGV: lease token, lease milliseconds. What
# a backup that died left goes first.
BACKUP_BEGIN = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.error_reply('LKV_BACKUP another backup is in progress')
end
redis.call('UNLINK', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[3], '')
return 1
"""

# KEYS: data, index, backup, backup:cursor, backup:old, backup:oldindex,
# backup:new, expires, backup:oldexpires. ARGV: lease token, the last key the reader has consumed (''
# before the first page), count, lease milliseconds. Renews the lease: the
# heartbeat of a running backup. Returns the next live keys and values with,
# for each, whether it was created after the backup began and its expiry (0:
# none), the next preserved keys, values and expiries, and the server's clock;
# the client merges them and leaves out what expired by then (see backend.py).
BACKUP_PAGE = _VALUES_OF + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the backup lease expired before the backup finished (raise lease_timeout)')
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local timed = redis.call('EXISTS', KEYS[8]) == 1
local low = '-'
if ARGV[2] ~= '' then low = '(' .. ARGV[2] end
local keys = redis.call('ZRANGEBYLEX', KEYS[2], low, '+', 'LIMIT', 0, ARGV[3])
local values, created, ends = {}, {}, {}
if #keys > 0 then
  values = values_of(KEYS[1], keys)
  for i = 1, #keys, 1000 do
    local part = redis.call('SMISMEMBER', KEYS[7], unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do created[#created + 1] = part[j] end
    if timed then
      part = redis.call('ZMSCORE', KEYS[8], unpack(keys, i, math.min(i + 999, #keys)))
      for j = 1, #part do ends[#ends + 1] = tonumber(part[j] or 0) end
    end
  end
end
local old_keys = redis.call('ZRANGEBYLEX', KEYS[6], low, '+', 'LIMIT', 0, ARGV[3])
local old_values, old_ends = {}, {}
if #old_keys > 0 then
  old_values = values_of(KEYS[5], old_keys)
  local found = values_of(KEYS[9], old_keys)
  for i = 1, #found do old_ends[i] = tonumber(found[i] or 0) end
end
return cmsgpack.pack(keys, values, created, ends, old_keys, old_values, old_ends, {now})
"""

# KEYS: backup, backup:cursor, backup:old, backup:oldindex, backup:new, backup:oldexpires.
# ARGV: lease token. Ends a backup, if the lease is still ours.
BACKUP_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  return 1
end
return 0
"""

# -- restore. KEYS: restore, backup, staging data, staging index, staging bytes, staging expires.
# ARGV: lease token, lease milliseconds. Staging keys left by a restorer
# that died go first.
RESTORE_BEGIN = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('LKV_BACKUP a backup is in progress; retry when it completes')
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
"""

# KEYS: restore, staging data, staging index, staging bytes (the rows'
# key+value bytes: a snapshot's keys are distinct, its reader checks they
# strictly ascend), staging expires. ARGV: token, lease milliseconds, then the rows (at most 1000) as one MessagePack array
# key, value, key, value... (one argument: redis-py encodes each argument in
# Python, a few microseconds apiece), and their expiries as one MessagePack
# array of Unix ms (0: none), or '' when none expires. A row whose expiry is
# at or before the server's clock is left out. Renews the lease.
RESTORE_LOAD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the restore lease expired before the restore finished (raise lease_timeout); nothing was restored')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local fields = cmsgpack.unpack(ARGV[3])
if ARGV[4] ~= '' then
  local ends = cmsgpack.unpack(ARGV[4])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- timed: the expiries (score, key); named: their companion fields in the staging data (see the
  -- flag's value 2 in _GATE).
  local kept, timed, named = {}, {}, {}
  for i = 1, #ends do
    local e = ends[i]
    if e == 0 or e > now then
      local key = fields[2 * i - 1]
      kept[#kept + 1] = key
      kept[#kept + 1] = fields[2 * i]
      if e ~= 0 then
        local at = string.format('%d', e)
        timed[#timed + 1] = at
        timed[#timed + 1] = key
        named[#named + 1] = key .. '\\255'
        named[#named + 1] = at
      end
    end
  end
  fields = kept
  if #timed > 0 then
    redis.call('ZADD', KEYS[5], unpack(timed))
    redis.call('HSET', KEYS[2], unpack(named))
    redis.call('HSET', KEYS[2], '\\255expiring', '2')
  end
end
if #fields < 2 then return 0 end
local members = {}
for i = 1, #fields, 2 do
  members[#members + 1] = 0
  members[#members + 1] = fields[i]
end
local size = 0
for i = 1, #fields do size = size + #fields[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[3], unpack(members))
redis.call('INCRBY', KEYS[4], size)
return #fields / 2
"""

# KEYS: restore, data, index, staging data, staging index, claims,
# claims:keys, claims:ends, claims:lapsed, staging bytes, bytes, expires,
# staging expires. ARGV:
# token, max_keys, max_bytes. The flip: the old data, its expiries and every lease are
# unlinked (freed by the server in the background) and the staging keys
# renamed into place, in one script; refused first (LKV_QUOTA, the live
# data untouched) when the loaded data passes the restorer's quota.
RESTORE_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('LKV_LEASE the restore lease expired before the restore finished (raise lease_timeout); nothing was restored')
end
if ARGV[2] ~= '0' and redis.call('ZCARD', KEYS[5]) > tonumber(ARGV[2]) then
  return redis.error_reply('LKV_QUOTA the snapshot holds more entries than the store quota max_keys=' .. ARGV[2] .. '; nothing was restored')
end
if ARGV[3] ~= '0' and tonumber(redis.call('GET', KEYS[10]) or '0') > tonumber(ARGV[3]) then
  return redis.error_reply('LKV_QUOTA the snapshot holds more key+value bytes than the store quota max_bytes=' .. ARGV[3] .. '; nothing was restored')
end
redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[12])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[2])
  redis.call('RENAME', KEYS[5], KEYS[3])
  redis.call('RENAME', KEYS[10], KEYS[11])
  if redis.call('EXISTS', KEYS[13]) == 1 then redis.call('RENAME', KEYS[13], KEYS[12]) end
else
  redis.call('UNLINK', KEYS[10], KEYS[13])
  redis.call('SET', KEYS[11], 0)
end
redis.call('DEL', KEYS[1])
return redis.call('ZCARD', KEYS[3])
"""

# KEYS: restore, staging data, staging index, staging bytes, staging expires. ARGV: token.
RESTORE_ABORT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('UNLINK', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('DEL', KEYS[1])
end
return 1
"""

# The most expired keys not yet purged that a script walks: past it, a read
# (or the exact draw of a claim or pop) answers UNSETTLED before it changes
# anything, the client purges in steps of 1,000 (PURGE_SETTLING, which a
# restore does not refuse: purging is never visible) and runs it again. So
# no script walks more than SETTLE of them: about a millisecond of server time.
_SETTLE = """
local SETTLE, UNSETTLED = 1000, 'LKV_SETTLE too many expired keys not yet purged'
"""

# -- leases, batches, prefixes ----------------------------------------------------
#
# Batches arrive as one MessagePack array in ARGV[1] (one argument: redis-py
# would encode each argument in Python) and leave as one MessagePack string.
# Lua's unpack has a stack limit, so commands take at most 1,000 keys each.

# The server's clock, and the leases. A lease is live while expires_ms > now.
_LEASES = """
local now_ms = now -- the gate's: one reading of the server's clock per script
local function lease_of(key)
  local lease = redis.call('HGET', KEYS[9], key)
  if not lease then return nil end
  local ends, token = string.match(lease, '^(%d+):(%d+):')
  return tonumber(ends), tonumber(token), lease
end
local function lease(key, ends, token, owner)
  redis.call('HSET', KEYS[9], key, string.format('%d:%d:', ends, token) .. owner)
  redis.call('ZADD', KEYS[10], 0, key)
  redis.call('ZADD', KEYS[11], ends, key)
  redis.call('ZREM', KEYS[12], key)
end
-- Move the leases that ended by now (at most limit of them; 0: all) to claims:lapsed.
local function sweep(now, limit)
  local gone
  if limit > 0 then
    gone = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', string.format('%d', now), 'LIMIT', 0, limit)
  else
    gone = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', string.format('%d', now))
  end
  for i = 1, #gone, 1000 do
    local part = {unpack(gone, i, math.min(i + 999, #gone))}
    local members = {}
    for j = 1, #part do
      members[2 * j - 1] = 0
      members[2 * j] = part[j]
    end
    redis.call('ZREM', KEYS[10], unpack(part))
    redis.call('ZREM', KEYS[11], unpack(part))
    redis.call('ZADD', KEYS[12], unpack(members))
  end
end
"""

# Uniform draws. The script's generator is seeded from the client's draw
# (its own seed is fixed, and Redis' math.random gives 31 bits): below(n) is
# a uniform integer in [0, n), exact to 2^-31 under 65,536 and to 2^-48 above.
_DRAWS = """
math.randomseed(tonumber(ARGV[#ARGV]))
local function below(n)
  if n <= 65536 then return math.random(0, n - 1) end
  local v = math.random(0, 65535) * 4294967296 + math.random(0, 65535) * 65536 + math.random(0, 65535)
  return v % n
end
local function shuffle(list)
  for i = #list, 2, -1 do
    local j = below(i) + 1
    list[i], list[j] = list[j], list[i]
  end
  return list
end
-- count distinct integers of [0, n), every subset equally likely (Floyd's algorithm).
local function subset(n, count)
  local seen, picks = {}, {}
  for j = n - count, n - 1 do
    local t = below(j + 1)
    if seen[t] then t = j end
    seen[t] = true
    picks[#picks + 1] = t
  end
  return picks
end
-- The rank of the first key with the prefix in the index, and how many have it.
local function range_of(prefix, high)
  if prefix == '' then return 0, redis.call('ZCARD', KEYS[2]) end
  return redis.call('ZLEXCOUNT', KEYS[2], '-', '(' .. prefix),
         redis.call('ZLEXCOUNT', KEYS[2], '[' .. prefix, high)
end
local function key_at(rank)
  return redis.call('ZRANGE', KEYS[2], rank, rank)[1]
end
"""

# Up to count distinct keys of the prefix with no live lease, every subset
# of the free keys equally likely, in random order.
#
# First by rejection: a uniform rank of the prefix, kept when its key is free
# and not picked yet (a ZRANGE and an HGET, O(log n) a draw). When 3 x count
# + 16 draws do not fill the count (most of the prefix is held), or when the
# count is more than half the prefix (a coupon collector's walk), exactly:
# every expired lease is swept, so the prefix's range of claims:keys holds
# its live leases, in byte order, so in the index's rank order; a uniform
# subset of positions among the free keys is drawn, and each is mapped to
# its rank by a binary search over that range (ZRANGE then ZRANK per probe),
# O(count x log(leases) x log n) plus O(log n) per lease newly swept. The
# exact draw starts over rather than keep the rejection phase's picks: that
# phase's result, given that it succeeded, is a uniform subset too (the
# free keys are interchangeable in it), so the result is uniform either
# way. It comes up short only when fewer keys are free.
_PICK = _SETTLE + _LEASES + _DRAWS + """
local function pick(prefix, high, count, now)
  local first, total = range_of(prefix, high)
  local picked, chosen = {}, {}
  if total == 0 then return picked end
  local tries = 0
  if 2 * count <= total then tries = 3 * count + 16 end -- else most of the prefix is asked for: exact at once
  while #picked < count and tries > 0 do
    tries = tries - 1
    local key = key_at(first + below(total))
    if not chosen[key] and not expired(key) then
      local ends = lease_of(key)
      if not ends or ends <= now then
        chosen[key] = true
        picked[#picked + 1] = key
      end
    end
  end
  if #picked == count then return picked end
  -- Exact: the prefix's expired keys go first (O(expired keys not yet purged)), then its expired leases.
  if redis.call('EXISTS', EXPIRES) == 1 then
    if redis.call('ZCOUNT', EXPIRES, '-inf', ms(now)) > SETTLE then error(redis.error_reply(UNSETTLED)) end
    local gone = redis.call('ZRANGEBYSCORE', EXPIRES, '-inf', ms(now))
    local mine = {}
    for i = 1, #gone do
      if string.sub(gone[i], 1, #prefix) == prefix then mine[#mine + 1] = gone[i] end
    end
    if #mine > 0 then
      remove_keys(mine)
      unflag()
      first, total = range_of(prefix, high)
      if total == 0 then return {} end
    end
  end
  sweep(now, 0)
  local base, held = 0, 0
  if prefix == '' then
    held = redis.call('ZCARD', KEYS[10])
  else
    base = redis.call('ZLEXCOUNT', KEYS[10], '-', '(' .. prefix)
    held = redis.call('ZLEXCOUNT', KEYS[10], '[' .. prefix, high)
  end
  local ranks = {}
  -- How many free keys of the prefix rank before its j-th live lease.
  local function free_before(j)
    local rank = ranks[j]
    if not rank then
      local key = redis.call('ZRANGE', KEYS[10], base + j - 1, base + j - 1)[1]
      rank = redis.call('ZRANK', KEYS[2], key) - first
      ranks[j] = rank
    end
    return rank - (j - 1)
  end
  local free = total - held
  picked = subset(free, math.min(count, free))
  for i = 1, #picked do
    local position, lo, hi = picked[i], 0, held
    while lo < hi do -- the last live lease with at most position free keys before it (0: none)
      local mid = math.floor((lo + hi + 1) / 2)
      if free_before(mid) <= position then lo = mid else hi = mid - 1 end
    end
    picked[i] = key_at(first + position + lo)
  end
  return shuffle(picked)
end
"""

# KEYS: 1-13. ARGV: ttl ms, owner, MessagePack array of keys. Returns the
# tokens (0: not granted), the values, and the leases' end.
CLAIM_KEYS = _GATE + _LEASES + """
step()
local now = now_ms()
sweep(now, 64)
local ends = now + tonumber(ARGV[1])
local keys = cmsgpack.unpack(ARGV[3])
local tokens, values = {}, {}
for i = 1, #keys do
  local key = keys[i]
  local value = live(key)
  local held = value and lease_of(key)
  if value and not (held and held > now) then
    local token = redis.call('INCR', KEYS[13])
    lease(key, ends, token, ARGV[2])
    tokens[i], values[i] = token, value
  else
    tokens[i], values[i] = 0, ''
  end
end
return cmsgpack.pack(tokens, values, {ends})
"""

# KEYS: 1-13. ARGV: prefix, ZRANGEBYLEX max of the prefix, count, ttl ms,
# owner, seed. Returns the keys, their values, the first token (the keys
# hold it and the following ones, in order), and the leases' end.
CLAIM_RANDOM = _GATE + _PICK + _VALUES_OF + """
step()
local now = now_ms()
sweep(now, 64)
local keys = pick(ARGV[1], ARGV[2], tonumber(ARGV[3]), now)
if #keys == 0 then return cmsgpack.pack({}, {}, {0, 0}) end
local ends = now + tonumber(ARGV[4])
local last = redis.call('INCRBY', KEYS[13], #keys)
for i = 1, #keys do lease(keys[i], ends, last - #keys + i, ARGV[5]) end
return cmsgpack.pack(keys, values_of(KEYS[1], keys), {last - #keys + 1, ends})
"""

# KEYS: 1-13. ARGV: prefix, ZRANGEBYLEX max of the prefix, count, seed.
# Removes the keys picked; returns them and their values.
POP_RANDOM = _GATE + _PICK + _VALUES_OF + """
step()
local now = now_ms()
sweep(now, 64)
local keys = pick(ARGV[1], ARGV[2], tonumber(ARGV[3]), now)
if #keys == 0 then return cmsgpack.pack({}, {}) end
local values = values_of(KEYS[1], keys)
for i = 1, #keys do preserve(keys[i], values[i]) end
remove_keys(keys)
unflag()
return cmsgpack.pack(keys, values)
"""

# KEYS: 1-13. ARGV: what to do ('release', 'complete', 'delete': complete
# and remove the key, 'renew'), ttl ms (renew), MessagePack array key,
# token, key, token... Returns one number per ref: 0 when the lease was not
# live, else 1 (the new end for renew).
END_CLAIMS = _GATE + _LEASES + """
step()
local now = now_ms()
local action = ARGV[1]
local refs = cmsgpack.unpack(ARGV[3])
local results = {}
for i = 1, #refs, 2 do
  local key, token = refs[i], refs[i + 1]
  drop_if_expired(key) -- a lease on an expired key is gone with it
  local ends, held, text = lease_of(key)
  local result = 0
  if ends and ends > now and held == token then
    if action == 'renew' then
      result = now + tonumber(ARGV[2])
      redis.call('HSET', KEYS[9], key, string.format('%d', result) .. string.sub(text, #string.match(text, '^%d+') + 1))
      redis.call('ZADD', KEYS[11], result, key)
      if redis.call('ZREM', KEYS[12], key) == 1 then -- swept, then live again: the server's clock went back
        redis.call('ZADD', KEYS[10], 0, key)
      end
    else
      result = 1
      unlease(key)
      if action == 'delete' then
        preserve(key, nil)
        remove_keys({key})
        unflag()
      end
    end
  end
  results[#results + 1] = result
end
return cmsgpack.pack(results)
"""

# -- reads of expiring keys. A read script changes nothing: it leaves out the
# expired keys not yet purged. Those of a range are found by reading every
# expired key not yet purged (ZRANGEBYSCORE up to the server's clock) and its
# rank in the index (ZRANK): O(E log n) for E of them, nothing when none has
# expired; the writes' purging steps keep E small.
_EXPIRED = _SETTLE + """
local function read_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function expired_keys(expires, at)
  if redis.call('EXISTS', expires) == 0 then return {} end
  if redis.call('ZCOUNT', expires, '-inf', string.format('%d', at)) > SETTLE then error(redis.error_reply(UNSETTLED)) end
  return redis.call('ZRANGEBYSCORE', expires, '-inf', string.format('%d', at))
end
-- The ranks of the keys gone among the index's ranks [first, first + total), relative to first, ascending.
local function holes(index, gone, first, total)
  local out = {}
  for i = 1, #gone do
    local r = redis.call('ZRANK', index, gone[i])
    if r and r >= first and r < first + total then out[#out + 1] = r - first end
  end
  table.sort(out)
  return out
end
-- The rank (relative to first) of the p-th live key (from 0), given the holes: the number of holes
-- with at most p live keys before them, found by a binary search, added to p.
local function live_rank(hs, p)
  local lo, hi = 0, #hs
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if hs[mid] - (mid - 1) <= p then lo = mid else hi = mid - 1 end
  end
  return p + lo
end
"""

# A page of live keys: range_page, leaving out the expired keys not yet purged; the offset counts live keys.
_LIVE_PAGE = _RANGE_PAGE + _EXPIRED + """
local function live_page(index, expires, min, max, count, offset)
  local gone = expired_keys(expires, read_now())
  if #gone == 0 then return range_page(index, min, max, count, offset) end
  local first, total = 0, redis.call('ZLEXCOUNT', index, min, max)
  if min ~= '-' then first = redis.call('ZLEXCOUNT', index, '-', '(' .. string.sub(min, 2)) end
  local hs = holes(index, gone, first, total)
  if #hs == 0 then return range_page(index, min, max, count, offset) end
  local live_total, skip = total - #hs, tonumber(offset)
  if skip >= live_total then return {} end
  local stop, wanted = live_total, tonumber(count)
  if wanted > 0 and skip + wanted < live_total then stop = skip + wanted end
  local from, to = live_rank(hs, skip), live_rank(hs, stop - 1)
  local keys = redis.call('ZRANGE', index, first + from, first + to)
  local hole = {}
  for i = 1, #hs do hole[hs[i]] = true end
  local out = {}
  for i = 1, #keys do
    if not hole[from + i - 1] then out[#out + 1] = keys[i] end
  end
  return out
end
"""

# KEYS: data, index, expires. ARGV: ZRANGEBYLEX min and max, count (0: all), offset.
SCAN = _VALUES_OF + _LIVE_PAGE + """
local keys = live_page(KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if #keys == 0 then return cmsgpack.pack({}, {}) end
return cmsgpack.pack(keys, values_of(KEYS[1], keys))
"""

# KEYS: index, expires. ARGV: ZRANGEBYLEX min and max, count (0: all), offset.
SCAN_KEYS = _LIVE_PAGE + """
return cmsgpack.pack(live_page(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]))
"""

# KEYS: index, expires. ARGV: ZRANGEBYLEX min and max ('-' and '+': the
# whole store, ZCARD less a ZCOUNT of the expired, O(log n)).
COUNT = _EXPIRED + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[1] == '-' and ARGV[2] == '+' then return redis.call('ZCARD', KEYS[1]) end
  return redis.call('ZLEXCOUNT', KEYS[1], ARGV[1], ARGV[2])
end
local now = read_now()
if ARGV[1] == '-' and ARGV[2] == '+' then
  return redis.call('ZCARD', KEYS[1]) - redis.call('ZCOUNT', KEYS[2], '-inf', string.format('%d', now))
end
local first, total = 0, redis.call('ZLEXCOUNT', KEYS[1], ARGV[1], ARGV[2])
if total == 0 then return 0 end
if ARGV[1] ~= '-' then first = redis.call('ZLEXCOUNT', KEYS[1], '-', '(' .. string.sub(ARGV[1], 2)) end
return total - #holes(KEYS[1], expired_keys(KEYS[2], now), first, total)
"""


# KEYS: data, expires. ARGV: key. 1 when the key is live.
EXISTS = """
local ends = redis.call('ZSCORE', KEYS[2], ARGV[1])
if ends then
  local t = redis.call('TIME')
  if tonumber(ends) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then return 0 end
end
return redis.call('HEXISTS', KEYS[1], ARGV[1])
"""

# KEYS: data, expires. ARGV: key. {0} absent, {1} live without an expiry, {1, ms left} (>= 1).
EXPIRY = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {0} end
local ends = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not ends then return {1} end
local t = redis.call('TIME')
local left = tonumber(ends) - (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
if left <= 0 then return {0} end
return {1, left}
"""

# KEYS: 1-15, bytes. ARGV: key, ttl ms (>= 1). 1 when the key was live.
EXPIRE = _GATE + """
step()
drop_if_expired(ARGV[1])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
preserve(ARGV[1], nil)
set_expiry(ARGV[1], ARGV[2])
return 1
"""

# KEYS: 1-15, bytes. ARGV: key. 1 when the live key had an expiry (dropped).
PERSIST = _GATE + """
step()
drop_if_expired(ARGV[1])
if not redis.call('ZSCORE', EXPIRES, ARGV[1]) then return 0 end
preserve(ARGV[1], nil)
set_expiry(ARGV[1], '')
return 1
"""

# KEYS: 1-15, bytes. ARGV: limit. Removes up to limit expired entries; how many.
_PURGE = """
if redis.call('EXISTS', EXPIRES) == 0 then return 0 end
return purge(tonumber(ARGV[1]))
"""
PURGE_EXPIRED = _GATE + _PURGE
_REFUSAL = """if leases > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('LKV_RESTORE a restore is in progress; retry when it completes')
end
"""
assert _GATE.count(_REFUSAL) == 1
PURGE_SETTLING = _GATE.replace(_REFUSAL, "") + _PURGE

# KEYS: claims, expires. ARGV: key. Returns the live lease on the key as token, end
# and owner (strings), or nil when it has none or it has ended (or the key expired). Reads only.
READ_LEASE = """
local lease = redis.call('HGET', KEYS[1], ARGV[1])
if not lease then return false end
local ends, token, owner = string.match(lease, '^(%d+):(%d+):(.*)$')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ends) <= now then return false end
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if expiry and tonumber(expiry) <= now then return false end
return {token, ends, owner}
"""

# KEYS: index, claims:keys, claims:ends, claims:lapsed, claims, expires. ARGV: prefix,
# ZRANGEBYLEX max of the prefix. Returns total, claimed, expired, counted
# from the sorted sets in O(log n), and for a prefix, a filter of the
# expired leases not yet swept (few: the claim scripts sweep them); the
# expired keys not yet purged are taken out of each count, with their
# leases (O(those keys)).
ALLOCATION_STATS = _EXPIRED + """
local now = read_now()
local stale = redis.call('ZCOUNT', KEYS[3], '-inf', string.format('%d', now))
local n = #ARGV[1]
local total, claimed, expired
if ARGV[1] == '' then
  local unswept = redis.call('ZCARD', KEYS[2])
  total, claimed, expired = redis.call('ZCARD', KEYS[1]), unswept - stale, stale + redis.call('ZCARD', KEYS[4])
else
  local low = '[' .. ARGV[1]
  local unswept = redis.call('ZLEXCOUNT', KEYS[2], low, ARGV[2])
  local mine = 0
  if stale > 0 then
    for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))) do
      if string.sub(key, 1, n) == ARGV[1] then mine = mine + 1 end
    end
  end
  total, claimed, expired = redis.call('ZLEXCOUNT', KEYS[1], low, ARGV[2]), unswept - mine, mine + redis.call('ZLEXCOUNT', KEYS[4], low, ARGV[2])
end
for _, key in ipairs(expired_keys(KEYS[6], now)) do
  if string.sub(key, 1, n) == ARGV[1] then
    total = total - 1
    local lease = redis.call('HGET', KEYS[5], key)
    if lease then
      if tonumber(string.match(lease, '^(%d+):')) > now then claimed = claimed - 1 else expired = expired - 1 end
    end
  end
end
return {total, claimed, expired}
"""

# KEYS: data, index, claims:ends, claims:lapsed, claims, expires, bytes. Returns keys, the
# data's key+value bytes (the counter, computed once for a namespace that
# predates it; expired entries count until they are purged), live leases,
# expired leases; the expired keys not yet purged and their leases are left out.
STATS = _BYTES_FUNCTIONS + _EXPIRED + """
local now = read_now()
local unswept = redis.call('ZCARD', KEYS[3])
local live = redis.call('ZCOUNT', KEYS[3], string.format('(%d', now), '+inf')
local keys, stale = redis.call('ZCARD', KEYS[2]), unswept - live + redis.call('ZCARD', KEYS[4])
for _, key in ipairs(expired_keys(KEYS[6], now)) do
  keys = keys - 1
  local lease = redis.call('HGET', KEYS[5], key)
  if lease then
    if tonumber(string.match(lease, '^(%d+):')) > now then live = live - 1 else stale = stale - 1 end
  end
end
return {keys, stored_bytes(), live, stale}
"""

# KEYS: index, expires. ARGV: prefix ('' for all), ZRANGEBYLEX max of the
# prefix, a uniform draw in [0, 1) made by the client, a seed (a script's
# own math.random is seeded the same way on every call). An expired key
# drawn is drawn again (up to 32 draws); then an exact draw among the live
# keys, by rank around the expired ones (O(expired keys not yet purged)).
RANDOM_KEY = _DRAWS.replace("KEYS[2]", "KEYS[1]") + _EXPIRED + """
local first, count = range_of(ARGV[1], ARGV[2])
if count == 0 then return false end
local rank = math.floor(tonumber(ARGV[3]) * count)
if rank >= count then rank = count - 1 end
local key = key_at(first + rank)
if redis.call('EXISTS', KEYS[2]) == 0 then return key end
local now = read_now()
for try = 1, 32 do
  local ends = redis.call('ZSCORE', KEYS[2], key)
  if not ends or tonumber(ends) > now then return key end
  key = key_at(first + below(count))
end
local hs = holes(KEYS[1], expired_keys(KEYS[2], now), first, count)
if #hs >= count then return false end
return key_at(first + live_rank(hs, below(count - #hs)))
"""

# KEYS: index, expires. ARGV: prefix, ZRANGEBYLEX max of the prefix, count, '1' for
# distinct keys, seed. When the draws are many for the prefix, its keys are
# read once instead of one ZRANGE a draw. With expired keys not yet purged
# in the prefix, the draws are ranks among the live keys, mapped around them.
RANDOM_KEYS = _DRAWS.replace("KEYS[2]", "KEYS[1]") + _EXPIRED + """
local first, total = range_of(ARGV[1], ARGV[2])
local count = tonumber(ARGV[3])
if total == 0 then return cmsgpack.pack({}) end
local hs = holes(KEYS[1], expired_keys(KEYS[2], read_now()), first, total)
local live_total = total - #hs
if live_total == 0 then return cmsgpack.pack({}) end
local ranks
if ARGV[4] == '1' then
  ranks = shuffle(subset(live_total, math.min(count, live_total)))
else
  ranks = {}
  for i = 1, count do ranks[i] = below(live_total) end
end
if #hs > 0 then
  for i = 1, #ranks do ranks[i] = live_rank(hs, ranks[i]) end
end
local keys = {}
if total <= 4 * #ranks then
  local all = redis.call('ZRANGE', KEYS[1], first, first + total - 1)
  for i = 1, #ranks do keys[i] = all[ranks[i] + 1] end
else
  for i = 1, #ranks do keys[i] = key_at(first + ranks[i]) end
end
return cmsgpack.pack(keys)
"""

# KEYS: data, expires. ARGV: MessagePack array of keys. Absent and expired keys come back false.
GET_MANY = _VALUES_OF + """
local keys = cmsgpack.unpack(ARGV[1])
local values = values_of(KEYS[1], keys)
if redis.call('EXISTS', KEYS[2]) == 1 and #keys > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for i = 1, #keys, 1000 do
    local ends = redis.call('ZMSCORE', KEYS[2], unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #ends do
      if ends[j] and tonumber(ends[j]) <= now then values[i + j - 1] = false end
    end
  end
end
return cmsgpack.pack(values)
"""

# KEYS: 1-15, bytes. ARGV: MessagePack array key, value, key, value..., ttl ms ('': none), max_keys, max_bytes.
# A key given twice counts once, with its last value; every key gets the same expiry.
SET_MANY = _GATE + """
step()
local fields = cmsgpack.unpack(ARGV[1])
local final, distinct = {}, {}
for i = 1, #fields, 2 do
  if final[fields[i]] == nil then distinct[#distinct + 1] = fields[i] end
  final[fields[i]] = fields[i + 1]
end
local new_keys, grown = 0, 0
for i = 1, #distinct do
  local added, more = growth(distinct[i], final[distinct[i]])
  new_keys, grown = new_keys + added, grown + more
end
local refused = over_quota(new_keys, grown)
if refused then return redis.error_reply(refused) end
for i = 1, #fields, 2 do preserve(fields[i], nil) end
for i = 1, #fields, 1000 do
  local last = math.min(i + 999, #fields)
  local members = {}
  for j = i, last, 2 do
    members[#members + 1] = 0
    members[#members + 1] = fields[j]
  end
  redis.call('HSET', KEYS[1], unpack(fields, i, last))
  redis.call('ZADD', KEYS[2], unpack(members))
end
if ARGV[2] == '' then
  if redis.call('EXISTS', EXPIRES) == 1 then
    for i = 1, #distinct, 1000 do
      local last = math.min(i + 999, #distinct)
      if redis.call('ZREM', EXPIRES, unpack(distinct, i, last)) > 0 then
        redis.call('HDEL', KEYS[1], unpack(companions(distinct, i, last)))
      end
    end
    unflag()
  end
elseif #distinct > 0 then
  local ends = ms(now() + tonumber(ARGV[2]))
  for i = 1, #distinct, 500 do
    local members, named = {}, {}
    for j = i, math.min(i + 499, #distinct) do
      members[#members + 1] = ends
      members[#members + 1] = distinct[j]
      named[#named + 1] = companion(distinct[j])
      named[#named + 1] = ends
    end
    redis.call('ZADD', EXPIRES, unpack(members))
    redis.call('HSET', KEYS[1], unpack(named))
  end
  redis.call('HSETNX', KEYS[1], FLAG, '2')
end
account(grown)
return 1
"""

# KEYS: 1-15, bytes. ARGV: MessagePack array of keys. Returns how many were live.
DELETE_MANY = _GATE + """
step()
local keys = cmsgpack.unpack(ARGV[1])
local seen, present = {}, {}
for i = 1, #keys do
  local key = keys[i]
  if not seen[key] then
    seen[key] = true
    drop_if_expired(key)
    if redis.call('HEXISTS', KEYS[1], key) == 1 then present[#present + 1] = key end
  end
end
for i = 1, #present do preserve(present[i], nil) end
remove_keys(present)
unflag()
return #present
"""

# KEYS: 1-15, bytes. ARGV: ZRANGEBYLEX min and max of the prefix, count (at most
# 1,000: one short step of a delete_prefix). Returns how many live keys were
# removed, how many keys (expired ones too), and 1 when keys of the prefix remain.
DELETE_RANGE = _GATE + """
step()
local keys = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local live_count = #keys
if #keys > 0 then
  for i = 1, #keys do
    if expired(keys[i]) then live_count = live_count - 1 end
    preserve(keys[i], nil)
  end
  remove_keys(keys)
  unflag()
end
local rest = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, 1)
return {live_count, #keys, #rest}
"""

SCRIPTS: dict[str, str] = {
    "set": SET,
    "delete": DELETE,
    "get_or_set": GET_OR_SET,
    "swap": SWAP,
    "compare_and_swap": COMPARE_AND_SWAP,
    "compare_and_delete": COMPARE_AND_DELETE,
    "compare_and_swap_detailed": COMPARE_AND_SWAP_DETAILED,
    "compare_and_delete_detailed": COMPARE_AND_DELETE_DETAILED,
    "clear": CLEAR,
    "increment_by": INCREMENT_BY,
    "exists": EXISTS,
    "count": COUNT,
    "expiry": EXPIRY,
    "expire": EXPIRE,
    "persist": PERSIST,
    "purge_expired": PURGE_EXPIRED,
    "purge_settling": PURGE_SETTLING,
    "scan": SCAN,
    "random_key": RANDOM_KEY,
    "claim_keys": CLAIM_KEYS,
    "claim_random": CLAIM_RANDOM,
    "pop_random": POP_RANDOM,
    "end_claims": END_CLAIMS,
    "read_lease": READ_LEASE,
    "allocation_stats": ALLOCATION_STATS,
    "stats": STATS,
    "random_keys": RANDOM_KEYS,
    "get_many": GET_MANY,
    "set_many": SET_MANY,
    "delete_many": DELETE_MANY,
    "delete_range": DELETE_RANGE,
    "scan_keys": SCAN_KEYS,
    "backup_begin": BACKUP_BEGIN,
    "backup_page": BACKUP_PAGE,
    "backup_end": BACKUP_END,
    "restore_begin": RESTORE_BEGIN,
    "restore_load": RESTORE_LOAD,
    "restore_finish": RESTORE_FINISH,
    "restore_abort": RESTORE_ABORT,
}
"""Every script, by name."""
