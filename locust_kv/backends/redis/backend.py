"""The redis backend's engine: one store in a Redis (or Valkey) server, shared by every host that reaches it.

Layout. Every key of a store starts with ``lkv:{<namespace>}:``; the braces
are a hash tag, so on Redis Cluster the whole store is in one slot and every
script may touch all of its keys.

* ``data``: hash, key -> value (the user's entries).
* ``index``: sorted set of the same keys, every score 0, so that members are
  in byte order: ``ZRANGEBYLEX`` pages a scan, ``ZLEXCOUNT`` and ``ZRANGE`` by
  rank draw a uniform random key in O(log n), ``ZCARD`` is the size.
* ``staging:data``, ``staging:index``: a restore being loaded.
* ``restore``, ``backup``: leases (a random token with an expiry, ``PX``).
* ``backup:cursor``, ``backup:old``, ``backup:oldindex``, ``backup:new``:
  what a running backup has read, and what writers preserved for it.
* ``expires``: sorted set of the keys that have an expiry, scored by it
  (Unix ms of the server's clock); ``backup:oldexpires``: hash of the
  expiries a running backup preserved; ``staging:expires``: a restore's.
* ``markers``: hash of the markers, outside the key space.
* ``layout``: the namespace's layout (:data:`LAYOUT`), set by the first
  open; an open that finds another refuses the store.
* ``claims``, ``claims:keys``, ``claims:ends``, ``claims:lapsed``: the
  leases (by key, by prefix, by end, and the expired ones swept aside),
  outside the key space; ``claimtoken``: the fencing counter. See
  ``scripts.py``.

Every operation is one round trip: a plain command where one suffices
(``HMGET`` for ``get``, a ``MULTI`` of reads once keys expire, the markers), else one Lua script
(``scripts.py``) that updates the hash and the index together. A script runs
with no other command interleaved, so each operation is atomic for every
client of the server.

Restore loads the staging keys in scripts of 1,000 entries, then one script
unlinks the old data (the server frees it in the background) and renames the
staging keys into place: readers see the old data until that moment, writers
fail with RestoreInProgressError meanwhile, and a failure at any point leaves
the live data untouched.

A backup is point in time in both modes, and writers are never refused:
while the backup lease is held, a writer about to change a key the backup
has not read yet first copies what the key held when the backup began into
``backup:old`` (or records in ``backup:new`` that it was absent). Each page
reads the next live keys and the next preserved ones, and the client merges
them. Only ``clear`` waits for a backup (BackupInProgressError): preserving a
whole store would copy it.

Expiring keys. Redis 7.0 has no per-field expiry of a hash (HEXPIRE), so
the backend keeps its own: ``expires`` holds each expiring key with its
expiry, compared by every script with the server's ``TIME`` (one clock for
every host). An entry whose expiry has passed stays in ``data``, ``index``
and ``expires`` until something purges it, and is absent for every operation
meanwhile: ``get`` and ``exists`` check its expiry, writes remove it and
treat the key as absent, counts subtract the expired keys not yet purged,
pages, draws, claims and backups leave them out. Purging (``HDEL``, ``ZREM``
from the index and the expiries, the lease, the byte counter, together) is
bounded: every write removes up to 16 (``ZRANGEBYSCORE ... LIMIT 0 16``) on
its way, ``purge_expired(limit)`` up to ``limit``, a write refused by a quota
up to 1,000 before it checks again. A read that must walk the expired keys
not yet purged (a count of a range, a page, an exact draw, ``stats``) walks
at most 1,000 of them; past that its script answers ``LKV_SETTLE`` before it
changes anything, and the client purges in steps of 1,000 with a pause
between, then runs it again, so no script holds the server long.

``data`` also holds the field ``\\xffexpiring`` (not UTF-8, so never a key)
while ``expires`` is not empty. A handle that has never seen it answers
``get`` with one ``HMGET`` of the key and the flag, as fast as a plain
``HGET``; once it sees the flag, every ``get`` of that handle is one
``MULTI``, ``HMGET`` (the key, its expiry kept as the field ``<key>\\xff``,
the flag), ``TIME``, ``EXEC`` in one round trip (atomic, as a script is, and
cheaper than running one), compared on the client; a flag of ``1`` (an
older release's) reads the expiry with ``ZSCORE`` instead.

Backup and restore leases expire unless the work renews them (every page or batch does), so a
process killed while it holds one blocks nobody for longer than
``lease_timeout``.

Connections. One redis-py connection pool per backend object; redis-py
checks the process id on every checkout and starts a fresh pool in a forked
child. Under gevent's monkey patching (Locust applies it) the sockets are
cooperative, so a call waiting on the server lets other greenlets run.
Commands are never retried by redis-py: a script whose reply was lost may
already have run, and running an increment twice would be wrong.

Claims (leases on keys) expire by the server's clock (``TIME`` inside the
script), so clients whose clocks disagree still agree on every lease. They
are never backed up; a restore and ``clear`` drop them all, and every script
that removes a key drops its lease.

Errors. Every redis-py exception is mapped by ``errors.REDIS_ERRORS`` with
the cause chained.

This module is over 500 lines: one method per backend operation, each a
script call and its decoding; the scripts are in :mod:`.scripts`, the error
table in :mod:`.errors`.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import weakref
from time import monotonic
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import msgpack

import gevent
import redis
from gevent import GreenletExit
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from ..._cooperative import pause
from ...errors import (
    KVError,
    StoreOpenError,
    StoreReadError,
    StoreWriteError,
    UnexpectedStoreOutputError,
)
from ..base import Backend, BackupReader, Batch, ClaimRecord, prefix_end
from .errors import map_redis_error
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from . import RedisSpec

__all__ = ["RedisBackend"]

_RESTORE_ROWS: Final = 1_000
"""Entries loaded by one restore script: about a millisecond of server time."""

_BACKUP_PAGE: Final = 1_000
"""Entries read by one backup script, for the same reason."""

_DELETE_STEP: Final = 1_000
"""Keys removed by one step of delete_prefix, for the same reason."""

_DELTA_CAP: Final = 2**1024
"""Deltas beyond this are sent as this: the result could be in range only if
the stored counter had over 300 digits, and Python refuses to print ints of
more than 4,300 digits."""


class _Unsettled(Exception):
    """A script found more expired keys not yet purged than it walks in one short step."""


_SETTLE_STEP: Final = 1_000
"""Expired entries purged by one step before a script that must walk them runs again (about 2 ms at 1M keys)."""


LAYOUT: Final = b"1"
"""The namespace's layout, kept in ``lkv:{<namespace>}:layout``: set by the
first open of a namespace (one made by a release before the marker gets it
then), and an open refuses any other value with StoreOpenError. A release
that changes the layout in a way this one would misread writes a new value,
so this release refuses the namespace instead of reading or writing it
wrongly."""


class RedisBackend(Backend):
    """A store in a Redis server. See the module docstring."""

    kind = "redis"
    scope = "network"

    def __init__(self, spec: RedisSpec) -> None:
        self.location = spec.location
        self._secret = spec.password
        self._lease_ms = max(1, int(spec.lease_timeout * 1000))
        # Key names encoded once: redis-py would encode them on every call.
        prefix = f"lkv:{{{spec.namespace}}}:".encode()
        self._data = prefix + b"data"
        self._index = prefix + b"index"
        self._staging_data = prefix + b"staging:data"
        self._staging_index = prefix + b"staging:index"
        self._restore = prefix + b"restore"
        self._backup = prefix + b"backup"
        self._markers = prefix + b"markers"
        self._layout = prefix + b"layout"
        self._claims = prefix + b"claims"
        self._claim_keys = prefix + b"claims:keys"
        self._claim_ends = prefix + b"claims:ends"
        self._claim_lapsed = prefix + b"claims:lapsed"
        self._copies = [prefix + b"backup:cursor", prefix + b"backup:old", prefix + b"backup:oldindex", prefix + b"backup:new"]
        self._gated = [self._data, self._index, self._restore, self._backup, *self._copies]
        self._leases = [self._claims, self._claim_keys, self._claim_ends, self._claim_lapsed]
        # Expiring keys: key -> expiry (Unix ms of the server's clock), and what a backup preserved of them.
        self._expires = prefix + b"expires"
        self._old_expires = prefix + b"backup:oldexpires"
        self._staging_expires = prefix + b"staging:expires"
        # The data's key+value bytes, kept by every writing script; it is their last key.
        self._bytes = prefix + b"bytes"
        self._staging_bytes = prefix + b"staging:bytes"
        # Every writing script may remove expired entries (and their leases), so all take every key.
        self._leased = [
            *self._gated, *self._leases, prefix + b"claimtoken", self._expires, self._old_expires, self._bytes,
        ]
        self._writing = self._leased
        # Whether this handle has seen the store's flag of expiring keys: until then a get is one HMGET.
        self._timed = False
        # The fixed parts of get's MULTI ... EXEC once the store has expiring keys (see get).
        self._get_head = b"*1\r\n$5\r\nMULTI\r\n*5\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n" % (len(self._data), self._data)
        self._old_get_head = b"*1\r\n$5\r\nMULTI\r\n*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n" % (len(self._data), self._data)
        self._zscore_head = b"*3\r\n$6\r\nZSCORE\r\n$%d\r\n%s\r\n" % (len(self._expires), self._expires)
        # This handle's quota, passed to every script that adds data as its last two arguments (0: none).
        self.max_keys = spec.max_keys
        self.max_bytes = spec.max_bytes
        self._limits = [spec.max_keys or 0, spec.max_bytes or 0]
        # The URL was validated by configure(). A blocking pool: a thousand
        # greenlets share at most max_connections sockets, waiting their turn
        # (cooperatively under gevent) instead of opening one each.
        self._pool = redis.BlockingConnectionPool.from_url(
            spec.url,
            max_connections=spec.max_connections,
            timeout=spec.connect_timeout,  # the wait for a free connection of the pool
            socket_timeout=spec.socket_timeout,
            socket_connect_timeout=spec.connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = redis.Redis(connection_pool=self._pool)
        self._scripts = {name: (hashlib.sha1(source.encode()).hexdigest(), source) for name, source in SCRIPTS.items()}
        self._heads: dict[tuple[str, tuple[bytes, ...]], bytes] = {}
        self._execute = self._round_trip
        self._execute_packed = self._round_trip_packed
        try:
            self._connect()
        except BaseException:
            self._pool.disconnect()
            raise

    def _connect(self) -> None:
        """Reach the server once, and load the scripts, so that open_kv reports a bad URL or password."""
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.info("server")
            for _, source in self._scripts.values():
                pipe.script_load(source)
            pipe.set(self._layout, LAYOUT, nx=True)
            pipe.get(self._layout)
            replies = pipe.execute(raise_on_error=False)
            info, marking, layout = replies[0], replies[-2], replies[-1]
            if isinstance(marking, redis.ReadOnlyError) and layout is None:
                # A read-only replica of a namespace no release has marked: it
                # reads as this layout; its first write is refused anyway.
                layout = LAYOUT
            for reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, redis.ReadOnlyError):
                    raise reply
        except redis.RedisError as exc:
            error = map_redis_error(exc, True, self._secret)
            if isinstance(error, (StoreReadError, StoreWriteError)):
                # Refused while opening (a database the server lacks, scripting
                # disabled): retrying will not fix it.
                error = StoreOpenError(f"cannot open the store: {error.message}")
            raise error from exc
        version = info.get("redis_version", "")
        if not _new_enough(str(version)):
            raise StoreOpenError(
                f"cannot open the store: the server is Redis {version or '(version unknown)'};"
                " the redis backend needs Redis 6.2 or newer (or Valkey)"
            )
        if layout != LAYOUT:
            raise StoreOpenError(
                f"cannot open the store: its namespace has layout {layout!r} (written by another locust_kv release);"
                f" this release reads layout {LAYOUT!r}: run the same release on every process of a namespace"
            )

    # -- the boundary ----------------------------------------------------------------------

    def _round_trip(self, *command: Any) -> Any:
        """Send one command and read its reply (see :meth:`_round_trip_packed`)."""
        return self._round_trip_packed(_pack(command))

    def _round_trip_packed(self, packed: list[bytes], replies: int = 1) -> Any:
        """Send one command, already in the protocol's form, and read its reply; a greenlet kill waits for the reply.

        ``replies``: how many replies the packed commands get (a MULTI ... EXEC
        sends several in one round trip); all are read, the last one returned.

        Once a command is sent, the server runs it whole, whatever happens to
        the client. If the calling greenlet is killed while it waits for the
        reply (Locust kills its users at the end of a test, and a kill asked
        for while a user sleeps can land in its next task), the reply is still
        read and returned, and the kill is delivered again at the greenlet's
        next switch: an operation is never applied without its caller seeing
        the result. ``disconnect_on_error=False`` lets redis-py read an
        interrupted reply again from its start. A kill that keeps landing in
        replies (a greenlet that only calls the store) is raised before the
        next command is sent once it is ``_KILL_GRACE`` seconds old, so that
        greenlet still dies.
        """
        pending = _pending_kills.get(gevent.getcurrent())
        if pending is not None and monotonic() >= pending[1]:
            del _pending_kills[gevent.getcurrent()]
            raise pending[0]
        pool = self._pool
        connection = pool.get_connection()
        interrupted: BaseException | None = None
        try:
            connection.send_packed_command(packed)
            while replies:
                try:
                    reply = connection.read_response(disconnect_on_error=False)
                    replies -= 1
                except Exception:
                    connection.disconnect()  # a timeout or a broken socket: the reply is lost
                    raise
                except GreenletExit as kill:
                    interrupted = kill
        except ResponseError:
            raise  # an error reply: the connection is in step, reusable
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
            if interrupted is not None:
                _deliver_later(interrupted)
        return reply


    def _run(self, name: str, keys: list[bytes], args: list[Any], writing: bool) -> Any:
        """Run script ``name`` by its digest (EVALSHA); one round trip unless the server forgot it."""
        cached = (name, tuple(keys))
        head = self._heads.get(cached)
        if head is None:
            # The script's digest and key names are the same on every call:
            # packed once, they cost nothing per call (redis-py would encode
            # every one of them each time, about as long as the script runs).
            head = self._heads[cached] = b"".join(_pack(("EVALSHA", self._scripts[name][0], len(keys), *keys), b""))
        packed = _pack(args, b"*%d\r\n" % (3 + len(keys) + len(args)) + head)
        try:
            try:
                return self._execute_packed(packed)
            except NoScriptError:
                # The server restarted or its script cache was flushed; the
                # script did not run, so loading it and running it again is safe.
                self._execute("SCRIPT", "LOAD", self._scripts[name][1])
                return self._execute_packed(packed)
        except ResponseError as exc:
            if str(exc).startswith("LKV_SETTLE"):
                raise _Unsettled from exc
            raise map_redis_error(exc, writing, self._secret) from exc
        except redis.RedisError as exc:
            raise map_redis_error(exc, writing, self._secret) from exc

    def _settled(self, name: str, keys: list[bytes], args: list[Any], writing: bool) -> Any:
        """Run a script that walks the expired keys not yet purged: when they are too many for one short
        script (it answers LKV_SETTLE, having changed nothing of what the caller sees), purge them in steps
        of 1,000 with a pause between, then run it again."""
        while True:
            try:
                return self._run(name, keys, args, writing)
            except _Unsettled:
                self._run("purge_settling", self._writing, [_SETTLE_STEP], True)
                pause()

    def _read(self, command: str, *args: Any) -> Any:
        try:
            return self._execute(command, *args)
        except redis.RedisError as exc:
            raise map_redis_error(exc, False, self._secret) from exc

    # -- single-key operations -----------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """One HMGET of the value and of the flag of expiring keys while the store has never had one, else one MULTI.

        The flag (a field of ``data`` that no key can be) is set while any
        key has an expiry; once this handle sees it, every get runs one
        MULTI of an HMGET (the value, its expiry's companion field and the
        flag) and TIME. A flag of ``1`` (set by a release before the
        companion fields, see ``scripts``) says they may be missing: the get
        then reads the expiry from ``expires`` instead (:meth:`_get_by_expires`).
        """
        if not self._timed:
            value, flag = self._read("HMGET", self._data, key, _FLAG)
            if flag is None:
                return value  # type: ignore[no-any-return]
            self._timed = True
        # MULTI, HMGET, TIME, EXEC in one round trip: atomic as a script is, and cheaper than one. Measured
        # against a bare HMGET (raw, 40 alternated rounds): 1.12 to 1.17x; with ZSCORE for the expiry 1.21
        # to 1.22x, a read-only script 1.33 to 1.47x.
        named = b"$%d\r\n%s\r\n$%d\r\n%s\xff\r\n" % (len(key), key, len(key) + 1, key)
        fields, now = self._transaction(self._get_head + named + _FLAG_TIME_EXEC, 4)
        value, ends, flag = fields
        if value is None or flag is None:
            return value  # type: ignore[no-any-return]  # absent, or no key of the store expires
        if flag != b"2":
            return self._get_by_expires(key)
        return _unexpired(value, ends, now)

    def _get_by_expires(self, key: bytes) -> bytes | None:
        """A get that reads the expiry from ``expires`` (MULTI, HGET, ZSCORE, TIME, EXEC): for a flag of ``1``."""
        named = b"$%d\r\n%s\r\n" % (len(key), key)
        value, ends, now = self._transaction(self._old_get_head + named + self._zscore_head + named + _GET_TAIL, 5)
        return _unexpired(value, ends, now)

    def _transaction(self, packed: bytes, replies: int) -> list[Any]:
        """EXEC's replies to a prepacked MULTI ... EXEC of ``replies`` replies in all; an error reply raised as ours."""
        try:
            results: list[Any] = self._execute_packed([packed], replies)
        except redis.RedisError as exc:
            raise map_redis_error(exc, False, self._secret) from exc
        for reply in results:
            if isinstance(reply, redis.RedisError):  # an error reply to one of the queued commands
                raise map_redis_error(reply, False, self._secret)
        return results

    def exists(self, key: bytes) -> bool:
        return bool(self._run("exists", [self._data, self._expires], [key], False))

    def set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> None:
        self._run("set", self._writing, [key, value, _ttl(ttl_ms), *self._limits], True)

    def delete(self, key: bytes) -> bool:
        return bool(self._run("delete", self._leased, [key], True))

    def increment_by(self, key: bytes, delta: int, ttl_ms: int | None = None) -> int:
        if not -_DELTA_CAP <= delta <= _DELTA_CAP:
            delta = _DELTA_CAP if delta > 0 else -_DELTA_CAP
        return int(self._run("increment_by", self._writing, [key, b"%d" % delta, _ttl(ttl_ms), *self._limits], True))

    def get_or_set(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> tuple[bytes, bool]:
        reply = self._run("get_or_set", self._writing, [key, value, _ttl(ttl_ms), *self._limits], True)
        return (reply[1], True) if reply[0] else (value, False)

    def swap(self, key: bytes, value: bytes, ttl_ms: int | None = None) -> bytes | None:
        reply = self._run("swap", self._writing, [key, value, _ttl(ttl_ms), *self._limits], True)
        return reply[1] if reply[0] else None

    def compare_and_swap(self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None) -> bool:
        return bool(self._run("compare_and_swap", self._writing, self._cas_args(key, old, new, ttl_ms), True))

    def _cas_args(self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None) -> list[Any]:
        guard = [b"0", b""] if old is None else [b"1", old]
        return [key, new, *guard, _ttl(ttl_ms), *self._limits]

    def compare_and_delete(self, key: bytes, old: bytes) -> bool:
        return bool(self._run("compare_and_delete", self._leased, [key, old], True))

    # -- whole-store operations ----------------------------------------------------------

    def clear(self) -> None:
        staging = [self._staging_data, self._staging_index, self._staging_bytes, self._staging_expires]
        self._run("clear", [*self._leased[:-1], *staging, self._bytes], [], True)

    def size(self) -> int:
        """One script: ZCARD of the index less a ZCOUNT of the expired keys not yet purged, O(log n)."""
        return int(self._settled("count", [self._index, self._expires], [b"-", b"+"], False))

    def scan(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """One script: ZRANGEBYLEX with LIMIT and HMGET, O(log n + k); with an offset by rank, still O(log n + k)."""
        count = min(limit, 1 << 62) + 1 if limit > 0 else 0  # the script's LIMIT is a signed 64-bit count
        keys, values = _unpack(
            self._settled("scan", [self._data, self._index, self._expires], [*_lex_range(low, high), count, offset], False), 2
        )
        rows = list(zip(keys, values))
        if 0 < limit < len(rows):
            rows.pop()
            return rows, True
        return rows, False

    def random_key(self, prefix: bytes) -> bytes | None:
        end = prefix_end(prefix)
        high = b"+" if end is None else b"(" + end
        key: bytes | None = self._settled(
            "random_key", [self._index, self._expires], [prefix, high, repr(random.random()), _seed()], False
        )
        return key

    # -- claims (leases) -------------------------------------------------------------------

    server_clock = True

    def claim_keys(self, keys: list[bytes], ttl_ms: int, owner: bytes) -> list[ClaimRecord | None]:
        """One script: per key one HGET of the value and of the lease, and for a grant an INCR, an HSET and two ZADDs."""
        tokens, values, (ends,) = _unpack(self._run("claim_keys", self._leased, [ttl_ms, owner, _packb(keys)], True), 3)
        return [
            ClaimRecord(key, value, token, ends) if token else None for key, token, value in zip(keys, tokens, values)
        ]

    def claim_random(self, prefix: bytes, count: int, ttl_ms: int, owner: bytes) -> list[ClaimRecord]:
        """One script. Each pick draws a uniform rank of the prefix (ZRANGE, O(log n)) until it finds a free key.

        When ``3 x count + 16`` draws do not fill the count (most of the
        prefix held) it switches to an exact draw: expired leases are swept
        aside, and uniform positions among the free keys are mapped to ranks
        by a binary search over the prefix's live leases, O(count x log(leases)
        x log n) (see ``scripts.py``). Never short while a free key remains.
        """
        keys, values, (first, ends) = _unpack(
            self._settled("claim_random", self._leased, [*_bounds(prefix), count, ttl_ms, owner, _seed()], True), 3
        )
        return [ClaimRecord(key, value, first + i, ends) for i, (key, value) in enumerate(zip(keys, values))]

    def _end_claims(self, action: bytes, ttl_ms: int, refs: list[tuple[bytes, int]]) -> list[int]:
        flat = [part for ref in refs for part in ref]
        (results,) = _unpack(self._run("end_claims", self._leased, [action, ttl_ms, _packb(flat)], True), 1)
        return results

    def release_claims(self, refs: list[tuple[bytes, int]]) -> list[bool]:
        return [bool(done) for done in self._end_claims(b"release", 0, refs)]

    def complete_claims(self, refs: list[tuple[bytes, int]], delete: bool) -> list[bool]:
        return [bool(done) for done in self._end_claims(b"delete" if delete else b"complete", 0, refs)]

    def renew_claims(self, refs: list[tuple[bytes, int]], ttl_ms: int) -> list[int | None]:
        return [ends or None for ends in self._end_claims(b"renew", ttl_ms, refs)]

    def read_lease(self, key: bytes) -> tuple[int, int, bytes] | None:
        """One script: an HGET of the lease, compared with the server's clock."""
        reply = self._run("read_lease", [self._claims, self._expires], [key], False)
        if reply is None:
            return None
        token, ends, owner = reply
        return int(token), int(ends), owner

    def allocation_stats(self, prefix: bytes) -> tuple[int, int, int, int]:
        """One script: O(log n) for the whole store (counts of ``claims:ends``); a prefix walks its leases (ZMSCORE)."""
        total, claimed, expired = self._settled(
            "allocation_stats", [self._index, *self._leases[1:], self._claims, self._expires], _bounds(prefix), False
        )
        return int(total), int(total) - int(claimed), int(claimed), int(expired)

    # -- more single-call operations ----------------------------------------------------

    def compare_and_swap_detailed(
        self, key: bytes, old: bytes | None, new: bytes, ttl_ms: int | None = None
    ) -> tuple[bool, bytes | None]:
        reply = self._run("compare_and_swap_detailed", self._writing, self._cas_args(key, old, new, ttl_ms), True)
        return bool(reply[0]), reply[1] if len(reply) > 1 else None

    def compare_and_delete_detailed(self, key: bytes, old: bytes) -> tuple[bool, bytes | None]:
        reply = self._run("compare_and_delete_detailed", self._leased, [key, old], True)
        return bool(reply[0]), reply[1] if len(reply) > 1 else None

    def count(self, low: bytes, high: bytes | None) -> int:
        """One script: ZLEXCOUNT on the index, O(log n) (ZCARD for the whole store), less the expired keys
        not yet purged in the range: O(log n) for the whole store, else O(E log n) for E expired keys not yet
        purged in the whole store (the writes' purging keeps E small)."""
        return int(self._settled("count", [self._index, self._expires], _lex_range(low, high), False))

    def random_keys(self, prefix: bytes, count: int, unique: bool) -> list[bytes]:
        """One script: a ZRANGE by rank per draw, O(count x log n); the prefix's keys read once when they are few."""
        args = [*_bounds(prefix), count, b"1" if unique else b"0", _seed()]
        (keys,) = _unpack(self._settled("random_keys", [self._index, self._expires], args, False), 1)
        return keys

    def pop_random(self, prefix: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """One script: picks as :meth:`claim_random` does, then removes the keys and any expired leases on them."""
        keys, values = _unpack(self._settled("pop_random", self._leased, [*_bounds(prefix), count, _seed()], True), 2)
        return list(zip(keys, values))

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        (values,) = _unpack(self._run("get_many", [self._data, self._expires], [_packb(keys)], False), 1)
        return [value if value is not False else None for value in values]

    def set_many(self, items: list[tuple[bytes, bytes]], ttl_ms: int | None = None) -> None:
        packed = _packb([part for item in items for part in item])
        self._run("set_many", self._writing, [packed, _ttl(ttl_ms), *self._limits], True)

    def delete_many(self, keys: list[bytes]) -> int:
        return int(self._run("delete_many", self._leased, [_packb(keys)], True))

    def delete_prefix(self, prefix: bytes, limit: int) -> tuple[int, bool]:
        """Scripts of at most 1,000 keys each (about a millisecond of server time), with a pause between."""
        low, high = b"[" + prefix, _bounds(prefix)[1]
        deleted = 0
        while True:
            step = _DELETE_STEP if limit <= 0 else min(_DELETE_STEP, limit - deleted)
            removed, stepped, rest = self._run("delete_range", self._leased, [low, high, step], True)
            deleted += int(removed)  # live keys; the expired ones the step also removed are not counted
            if not rest:
                return deleted, True
            if 0 < limit <= deleted or not stepped:
                return deleted, False
            pause()

    def scan_keys(self, low: bytes, high: bytes | None, offset: int, limit: int) -> tuple[list[bytes], bool]:
        """As :meth:`scan`, without the HMGET."""
        count = min(limit, 1 << 62) + 1 if limit > 0 else 0
        (keys,) = _unpack(
            self._settled("scan_keys", [self._index, self._expires], [*_lex_range(low, high), count, offset], False), 1
        )
        if 0 < limit < len(keys):
            keys.pop()
            return keys, True
        return keys, False

    def stats(self) -> dict[str, int]:
        """One script. ``bytes`` is the data's key+value bytes, the counter every writing script keeps
        (computed once, O(n), for a namespace that predates it): what ``max_bytes`` limits."""
        keys, size, claims, expired = self._settled(
            "stats",
            [self._data, self._index, self._claim_ends, self._claim_lapsed, self._claims, self._expires, self._bytes],
            [],
            False,
        )
        return {"keys": int(keys), "bytes": int(size), "claims": int(claims), "expired_claims": int(expired)}

    # -- expiring keys ----------------------------------------------------------------------

    def expire(self, key: bytes, ttl_ms: int) -> bool:
        return bool(self._run("expire", self._writing, [key, ttl_ms], True))

    def persist(self, key: bytes) -> bool:
        return bool(self._run("persist", self._writing, [key], True))

    def expiry(self, key: bytes) -> tuple[bool, int | None]:
        """One script: HEXISTS, ZSCORE and the server's TIME."""
        reply = self._run("expiry", [self._data, self._expires], [key], False)
        return bool(reply[0]), int(reply[1]) if len(reply) > 1 else None

    def purge_expired(self, limit: int) -> int:
        """One script: up to ``limit`` of the earliest expiries up to the server's clock, removed with their leases."""
        return int(self._run("purge_expired", self._writing, [max(1, limit)], True))

    def rebuild_key_list(self) -> None:
        """Nothing to do: every script updates the index with the data, so it never falls behind."""

    # -- markers: their own hash, outside the key space ------------------------------------

    def read_marker(self, name: bytes) -> bytes | None:
        value: bytes | None = self._read("HGET", self._markers, name)
        return value

    def write_marker(self, name: bytes, value: bytes) -> None:
        try:
            self._execute("HSET", self._markers, name, value)
        except redis.RedisError as exc:
            raise map_redis_error(exc, True, self._secret) from exc

    # -- snapshots -----------------------------------------------------------------------

    def begin_backup(self, allow_concurrent_writes: bool) -> BackupReader:
        """Take the backup lease; the reader is point in time in both modes and writers go on.

        Raises BackupInProgressError while another backup holds the lease,
        RestoreInProgressError during a restore.
        """
        lease = secrets.token_hex(16)
        self._run(
            "backup_begin", [self._restore, self._backup, *self._copies, self._old_expires], [lease, self._lease_ms], False
        )
        return _RedisBackupReader(self, lease)

    def _backup_page(
        self, lease: str, after: bytes, count: int
    ) -> tuple[list[tuple[bytes, bytes, int]], bytes | None]:
        """The entries of the backup's moment after ``after`` with their expiries (0: none), and the last key
        they cover (None: the end). Entries expired by the server's clock when the page is read are left out."""
        keys, values, created, ends, old_keys, old_values, old_ends, (now,) = _unpack(
            self._run(
                "backup_page",
                [self._data, self._index, self._backup, *self._copies, self._expires, self._old_expires],
                [lease, after, count, self._lease_ms],
                False,
            ),
            8,
        )
        # Both lists hold keys after ``after``; a full one may stop short of
        # keys the other has, so the page covers keys up to the smaller of
        # their last keys. Preserved values win; keys created since are not
        # the backup's.
        bounds = [page[-1] for page in (keys, old_keys) if len(page) == count]
        last = min(bounds) if bounds else None
        if not ends:
            ends = [0] * len(keys)
        preserved = {
            k: (v, e) for k, v, e in zip(old_keys, old_values, old_ends or [0] * len(old_keys)) if last is None or k <= last
        }
        rows = [
            (k, *preserved.pop(k, (v, e)))
            for k, v, new, e in zip(keys, values, created, ends)
            if (last is None or k <= last) and (k in preserved or not new)
        ]
        if preserved:
            rows.extend((k, v, e) for k, (v, e) in preserved.items())
            rows.sort()
        return [row for row in rows if not 0 < row[2] <= now], last

    def _end_backup(self, lease: str) -> None:
        self._run("backup_end", [self._backup, *self._copies, self._old_expires], [lease], True)

    def replace_all(self, batches: Iterator[Batch]) -> int:
        """Load the staging keys under the restore lease, then rename them into place in one script.

        Raises BackupInProgressError during a backup, RestoreInProgressError
        during another restore. If ``batches`` raises or the server fails,
        the staging keys are dropped (or left for the next restore or clear
        to drop, when the server cannot be reached) and the live data was
        never touched.
        """
        token = secrets.token_hex(16)
        lease_ms = self._lease_ms
        staging = [self._restore, self._staging_data, self._staging_index, self._staging_bytes, self._staging_expires]
        self._run("restore_begin", [self._restore, self._backup, *staging[1:]], [token, lease_ms], True)
        try:
            for entries, ends in batches:
                pause()  # reading and verifying the batch was work too
                for start in range(0, len(entries), _RESTORE_ROWS):
                    rows = [part for row in entries[start : start + _RESTORE_ROWS] for part in row]
                    part = ends[start : start + _RESTORE_ROWS] if ends is not None else None
                    # The server's cmsgpack reads the original format, where bytes are "raw". Entries whose
                    # expiry is at or before the server's clock when their rows arrive are left out there.
                    timed = _packb(part) if part is not None and any(part) else b""
                    self._run("restore_load", staging, [token, lease_ms, _packb(rows), timed], True)
                    pause()
            return int(
                self._run(
                    "restore_finish",
                    [
                        self._restore, self._data, self._index, self._staging_data, self._staging_index, *self._leases,
                        self._staging_bytes, self._bytes, self._expires, self._staging_expires,
                    ],
                    [token, *self._limits],
                    True,
                )
            )
        except BaseException:
            try:
                self._run("restore_abort", staging, [token], True)
            except KVError:
                pass  # the lease expires by itself; the next restore or clear drops the staging keys
            raise

    def close(self) -> None:
        self._pool.disconnect()


def _unexpired(value: bytes | None, ends: bytes | None, now: list[bytes]) -> bytes | None:
    """``value`` unless its expiry ``ends`` (Unix ms, as text) is at or before the server's ``TIME`` ``now``,
    in milliseconds, as the scripts compare."""
    if value is None or ends is None:
        return value
    return value if float(ends) > int(now[0]) * 1000 + int(now[1]) // 1000 else None


_FLAG: Final = b"\xffexpiring"
"""The field of ``data`` present while any key has an expiry (no key is: keys are UTF-8)."""
_GET_TAIL: Final = b"*1\r\n$4\r\nTIME\r\n*1\r\n$4\r\nEXEC\r\n"
_FLAG_TIME_EXEC: Final = b"$%d\r\n%s\r\n" % (len(_FLAG), _FLAG) + _GET_TAIL
"""The end of get's MULTI: the flag as HMGET's last field, then TIME and EXEC."""


def _ttl(ttl_ms: int | None) -> bytes:
    """A script's ttl argument: the milliseconds, or empty for no expiry."""
    return b"" if ttl_ms is None else b"%d" % ttl_ms


def _batch(rows: list[tuple[bytes, bytes, int]]) -> Batch:
    """Rows with their expiries as a backup's batch: the expiries None when none expires."""
    ends = [end for _, _, end in rows]
    return [(key, value) for key, value, _ in rows], ends if any(ends) else None


def _lex_range(low: bytes, high: bytes | None) -> list[bytes]:
    """ZRANGEBYLEX's min and max for the keys in ``[low, high)``."""
    return [b"[" + low if low else b"-", b"+" if high is None else b"(" + high]


def _bounds(prefix: bytes) -> list[bytes]:
    """A script's prefix arguments: the prefix, and the ZRANGEBYLEX max of the keys that start with it."""
    end = prefix_end(prefix)
    return [prefix, b"+" if end is None else b"(" + end]


def _seed() -> int:
    """A seed for a script's generator (Redis' math.randomseed takes a 32-bit int)."""
    return random.getrandbits(31)


def _packb(parts: list[Any]) -> bytes:
    """A batch as one MessagePack array, in the format the server's cmsgpack reads (bytes as "raw")."""
    packed: bytes = msgpack.packb(parts, use_bin_type=False)  # (msgpack is untyped)
    return packed


def _unpack(reply: bytes, parts: int) -> list[list[Any]]:
    """The lists a script packed with ``cmsgpack.pack(list1, list2, ...)`` (several objects, concatenated).

    Lua cannot tell an empty array from an empty map, so an empty list may
    arrive as a map; it is an empty list all the same.
    """
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(reply)
    lists = [list(part) if part else [] for part in unpacker]
    if len(lists) != parts:
        raise UnexpectedStoreOutputError("a redis script returned a page of the wrong shape")
    return lists


class _RedisBackupReader(BackupReader):
    """Reads the store as it was when the backup began, in pages under the lease; each page renews it."""

    point_in_time = True

    def __init__(self, backend: RedisBackend, lease: str) -> None:
        self._backend = backend
        self._lease = lease
        self._closed = False

    def batches(self, batch_size: int) -> Iterator[Batch]:
        page_size = max(1, min(batch_size, _BACKUP_PAGE))
        after: bytes | None = b""
        batch: list[tuple[bytes, bytes, int]] = []
        while after is not None:
            rows, after = self._backend._backup_page(self._lease, after, page_size)
            batch.extend(rows)
            while len(batch) >= batch_size:
                yield _batch(batch[:batch_size])
                batch = batch[batch_size:]
            pause()  # a hub without monkey patching runs its other greenlets too
        if batch:
            yield _batch(batch)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._backend._end_backup(self._lease)
        except KVError:
            pass  # the lease expires by itself within lease_timeout


_KILL_GRACE: Final = 1.0
"""Seconds a kill may be put off by store calls that keep receiving it while they wait for replies."""

_pending_kills: weakref.WeakKeyDictionary[Any, tuple[BaseException, float]] = weakref.WeakKeyDictionary()
"""Kills put off until a reply was read, by greenlet, with the time they must be raised by."""


def _new_enough(version: str) -> bool:
    """Whether a server's ``redis_version`` (Valkey reports the Redis version it matches) is 6.2 or newer."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= _OLDEST


_OLDEST: Final = (6, 2)
"""The oldest server the backend is documented for: redis-py's RESP3 handshake (HELLO) needs 6.0, and
the tests run against Debian's Redis 7; an older server fails later in ways that name nothing useful."""

_LARGE: Final = 16_384
"""Arguments longer than this are sent as chunks of their own rather than copied into the command."""


def _pack(parts: Any, head: bytes | None = None) -> list[bytes]:
    """``parts`` as the chunks of a RESP array of bulk strings (bytes, str and int arguments), after ``head``.

    Without ``head`` the array's length comes first; with it, ``head`` must
    already hold the length and the leading parts (``b""``: only the parts).
    """
    chunks: list[bytes] = []
    out = [b"*%d\r\n" % len(parts) if head is None else head]
    for part in parts:
        if isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        elif isinstance(part, int):
            data = b"%d" % part
        else:
            raise TypeError(f"cannot send {type(part).__name__} to the server")
        if len(data) > _LARGE:
            out.append(b"$%d\r\n" % len(data))
            chunks.append(b"".join(out))
            chunks.append(data)
            out = [b"\r\n"]
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    chunks.append(b"".join(out))
    return chunks


def _deliver_later(interruption: BaseException) -> None:
    """Raise ``interruption`` in the current greenlet at its next switch (or see ``_round_trip``)."""
    current = gevent.getcurrent()
    earlier = _pending_kills.get(current)
    _pending_kills[current] = (interruption, earlier[1] if earlier else monotonic() + _KILL_GRACE)

    def deliver() -> None:
        # The entry stays until the greenlet dies or a command raises it: a throw that lands in
        # another reply is put off again with the same deadline, never a later one.
        if _pending_kills.get(current) is not None and not current.dead:
            current.throw(interruption)

    gevent.get_hub().loop.run_callback(deliver)
