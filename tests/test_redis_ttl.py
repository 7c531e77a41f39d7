"""Expiring keys on the redis backend, against a real redis-server and its own clock.

Real short expiries (about 0.2 s) and real sleeps: the server's clock (TIME
inside every script) cannot be faked. The layout is checked with a raw
client: what an expired entry leaves until it is purged, and that the
sorted index, the expiries, the leases and the byte counter stay in step.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from locust_kv import KV, open_kv
from locust_kv.backends.redis import configure
from locust_kv.backends.redis.backend import RedisBackend
from locust_kv.errors import QuotaExceededError

from .conftest import session_redis_url, store_options
from .disk_helpers import fork_call, wait_all_ok
from .test_redis_claims import backend, kv  # noqa: F401 - the same fixtures: a redis store of the test's own, and its backend

SHORT = 200
"""Milliseconds of the short expiries."""

LONG = 600_000


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(session_redis_url())
    yield client
    client.close()


def names(backend: RedisBackend) -> dict[str, bytes]:
    prefix = backend._data[: -len(b"data")]
    return {part: prefix + part.encode() for part in ("data", "index", "expires", "bytes", "claims", "claims:ends")}


def server_ms(raw: redis.Redis) -> int:
    seconds, micros = raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def wait_past(raw: redis.Redis, backend: RedisBackend, key: bytes) -> None:
    """Sleep until the server's clock passes the key's expiry."""
    ends = raw.zscore(names(backend)["expires"], key)
    assert ends is not None
    while server_ms(raw) < ends + 1:
        time.sleep(0.02)


def counted_bytes(raw: redis.Redis, backend: RedisBackend) -> int:
    """The data's key+value bytes, counted from the entries of the index."""
    n = names(backend)
    keys = raw.zrange(n["index"], 0, -1)
    return sum(len(key) + raw.hstrlen(n["data"], key) for key in keys)


def consistent(raw: redis.Redis, backend: RedisBackend) -> None:
    """The index holds the data's keys, the expiries only keys of the data, the counter the data's bytes;
    with the flag at 2, each expiry is also the companion field ``<key>\\xff`` of data, and no other is there."""
    n = names(backend)
    every = set(raw.hkeys(n["data"])) - {b"\xffexpiring"}
    fields = {f for f in every if not f.endswith(b"\xff")}
    assert set(raw.zrange(n["index"], 0, -1)) == fields
    expiries = dict(raw.zrange(n["expires"], 0, -1, withscores=True))
    assert set(expiries) <= fields
    flag = raw.hget(n["data"], b"\xffexpiring")
    assert (flag is not None) == (len(expiries) > 0)
    companions = {f[:-1]: int(raw.hget(n["data"], f)) for f in every - fields}
    if flag == b"2" or flag is None:
        assert companions == {key: int(score) for key, score in expiries.items()}
    else:  # 1: a store of an earlier release, whose expiries may lack theirs
        assert all(expiries.get(key) == end for key, end in companions.items())
    if raw.exists(n["bytes"]):
        assert int(raw.get(n["bytes"])) == counted_bytes(raw, backend)
    assert set(raw.hkeys(n["claims"])) <= fields


# -- the rules of each write --------------------------------------------------------------


def test_set_swap_and_set_many_give_or_drop_an_expiry(backend: RedisBackend) -> None:
    backend.set(b"a", b"1", LONG)
    exists, left = backend.expiry(b"a")
    assert exists and left is not None and LONG - 2_000 < left <= LONG
    backend.set(b"a", b"2")
    assert backend.expiry(b"a") == (True, None)
    assert backend.swap(b"a", b"3", LONG) == b"2" and backend.expiry(b"a")[1] is not None
    assert backend.swap(b"a", b"4") == b"3" and backend.expiry(b"a") == (True, None)
    backend.set_many([(b"m1", b"1"), (b"m2", b"2"), (b"m1", b"again")], LONG)
    assert all(backend.expiry(k)[1] for k in (b"m1", b"m2")) and backend.get(b"m1") == b"again"
    backend.set_many([(b"m1", b"x")])
    assert backend.expiry(b"m1") == (True, None) and backend.expiry(b"m2")[1] is not None


def test_compare_and_swap_sets_the_expiry_only_when_it_stores(backend: RedisBackend) -> None:
    assert backend.compare_and_swap(b"c", None, b"1", LONG)
    assert backend.expiry(b"c")[1] is not None
    assert not backend.compare_and_swap(b"c", b"wrong", b"2")  # refused: the expiry stays
    assert backend.expiry(b"c")[1] is not None
    assert backend.compare_and_swap_detailed(b"c", b"1", b"2") == (True, b"1")  # stored without ttl: none
    assert backend.expiry(b"c") == (True, None)


def test_get_or_set_applies_its_ttl_only_on_a_miss(backend: RedisBackend) -> None:
    assert backend.get_or_set(b"g", b"1", LONG) == (b"1", False)
    _, left = backend.expiry(b"g")
    assert backend.get_or_set(b"g", b"2", 5) == (b"1", True)  # a hit changes nothing
    _, still = backend.expiry(b"g")
    assert left is not None and still is not None and still > 1_000


def test_increment_by_applies_its_ttl_only_when_it_creates_the_key(backend: RedisBackend, raw: redis.Redis) -> None:
    assert backend.increment_by(b"n", 1, SHORT) == 1
    first = raw.zscore(names(backend)["expires"], b"n")
    time.sleep(0.05)
    assert backend.increment_by(b"n", 1, LONG) == 2  # live: the window keeps its end
    assert raw.zscore(names(backend)["expires"], b"n") == first
    wait_past(raw, backend, b"n")
    assert backend.increment_by(b"n", 5, LONG) == 5  # expired: starts from 0 with the new ttl
    assert backend.expiry(b"n")[1] is not None and backend.expiry(b"n")[1] > SHORT  # type: ignore[operator]
    backend.set(b"plain", b"7")
    assert backend.increment_by(b"plain", 1, LONG) == 8 and backend.expiry(b"plain") == (True, None)


def test_expire_persist_and_the_writes_that_never_change_an_expiry(backend: RedisBackend, raw: redis.Redis) -> None:
    assert not backend.expire(b"none", 100) and not backend.persist(b"none")
    backend.set(b"k", b"v")
    assert not backend.persist(b"k")  # no expiry to drop
    assert backend.expire(b"k", LONG) and backend.persist(b"k") and backend.expiry(b"k") == (True, None)
    backend.set(b"k", b"v", LONG)
    before = raw.zscore(names(backend)["expires"], b"k")
    (record,) = backend.claim_keys([b"k"], 60_000, b"me")
    assert record is not None and backend.release_claims([(b"k", record.token)]) == [True]
    assert not backend.compare_and_delete(b"k", b"other")
    assert raw.zscore(names(backend)["expires"], b"k") == before
    assert backend.delete(b"k") and raw.zscore(names(backend)["expires"], b"k") is None  # gone with the key
    consistent(raw, backend)


# -- an expired entry is absent for every operation, purged or not -------------------------


def test_an_expired_entry_is_absent_for_every_read_before_anything_purges_it(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.set_many([(b"p:%02d" % i, b"v") for i in range(10)])
    backend.set(b"p:05x", b"gone", SHORT)
    (held,) = backend.claim_keys([b"p:05x"], 60_000, b"holder")
    assert held is not None
    wait_past(raw, backend, b"p:05x")
    n = names(backend)
    assert raw.hexists(n["data"], b"p:05x") and raw.zscore(n["index"], b"p:05x") is not None  # not purged yet
    assert backend.get(b"p:05x") is None and not backend.exists(b"p:05x")
    assert backend.get_many([b"p:05x", b"p:05"]) == [None, b"v"]
    assert backend.expiry(b"p:05x") == (False, None)
    assert backend.size() == 10 and backend.count(b"p:", b"p;") == 10 and backend.count(b"p:05", b"p:06") == 1
    assert backend.stats()["keys"] == 10 and backend.stats()["claims"] == 0
    assert backend.allocation_stats(b"p:") == (10, 10, 0, 0)
    rows, more = backend.scan(b"p:", b"p;", 0, 0)
    assert b"p:05x" not in dict(rows) and len(rows) == 10 and not more
    assert backend.scan_keys(b"p:05", None, 0, 2) == ([b"p:05", b"p:06"], True)
    assert backend.scan_keys(b"p:", None, 6, 1) == ([b"p:06"], True)  # the offset counts live keys
    assert b"p:05x" not in {backend.random_key(b"p:05") for _ in range(20)}
    assert backend.random_key(b"p:05x") is None
    assert sorted(backend.random_keys(b"p:", 20, True)) == [b"p:%02d" % i for i in range(10)]
    assert backend.read_lease(b"p:05x") is None  # the lease went with the key
    reader = backend.begin_backup(False)
    entries = [row for page, _ in reader.batches(100) for row in page]
    reader.close()
    assert b"p:05x" not in dict(entries) and len(entries) == 10
    assert raw.hexists(n["data"], b"p:05x")  # reads changed nothing


@pytest.mark.parametrize(
    "write",
    [
        "delete", "compare_and_delete", "cas_old", "cas_none", "get_or_set", "increment", "swap", "delete_many",
        "claim_keys", "release", "renew", "complete", "pop_random", "claim_random", "expire", "persist", "set_if_none",
    ],
)  # fmt: skip
def test_every_write_treats_an_expired_key_as_absent(backend: RedisBackend, raw: redis.Redis, write: str) -> None:
    backend.set(b"x", b"old", SHORT)
    (record,) = backend.claim_keys([b"x"], 60_000, b"")
    assert record is not None
    ref = [(b"x", record.token)]
    wait_past(raw, backend, b"x")
    outcome = {
        "delete": lambda: backend.delete(b"x") is False,
        "compare_and_delete": lambda: backend.compare_and_delete_detailed(b"x", b"old") == (False, None),
        "cas_old": lambda: backend.compare_and_swap(b"x", b"old", b"new") is False,
        "cas_none": lambda: backend.compare_and_swap(b"x", None, b"new") and backend.get(b"x") == b"new",
        "get_or_set": lambda: backend.get_or_set(b"x", b"new") == (b"new", False),
        "increment": lambda: backend.increment_by(b"x", 3) == 3,
        "swap": lambda: backend.swap(b"x", b"new") is None and backend.get(b"x") == b"new",
        "delete_many": lambda: backend.delete_many([b"x", b"x"]) == 0,
        "claim_keys": lambda: backend.claim_keys([b"x"], 1_000, b"") == [None],
        "release": lambda: backend.release_claims(ref) == [False],
        "renew": lambda: backend.renew_claims(ref, 1_000) == [None],
        "complete": lambda: backend.complete_claims(ref, True) == [False],
        "pop_random": lambda: backend.pop_random(b"", 5) == [],
        "claim_random": lambda: backend.claim_random(b"", 5, 1_000, b"") == [],
        "expire": lambda: backend.expire(b"x", LONG) is False,
        "persist": lambda: backend.persist(b"x") is False,
        "set_if_none": lambda: backend.compare_and_swap_detailed(b"x", None, b"new") == (True, None),
    }[write]()
    assert outcome
    if write not in ("cas_none", "get_or_set", "increment", "swap", "set_if_none"):
        assert backend.size() == 0
    else:
        assert backend.expiry(b"x") == (True, None)  # stored anew, without the old expiry
    assert backend.read_lease(b"x") is None
    consistent(raw, backend)


# -- counts, scans and draws over the live keys ---------------------------------------------


def test_counts_pages_and_draws_see_only_live_keys_among_many_expired(backend: RedisBackend, raw: redis.Redis) -> None:
    live = [b"r:%03d" % i for i in range(0, 300, 3)]
    dead = [b"r:%03d" % i for i in range(300) if i % 3]
    backend.set_many([(key, b"v") for key in dead], SHORT)
    backend.set_many([(key, b"v") for key in live])
    wait_past(raw, backend, dead[0])
    assert raw.zcard(names(backend)["index"]) == 300  # nothing purged: reads must leave 200 out
    assert backend.size() == 100 and backend.count(b"r:", b"r;") == 100
    assert backend.count(b"r:0", b"r:1") == 34 and backend.count(b"r:050", b"r:100") == 17
    pages, offset = [], 0
    while True:
        keys, more = backend.scan_keys(b"r:", None, offset, 7)
        pages.extend(keys)
        offset += len(keys)
        if not more:
            break
    assert pages == live
    assert [k for k, _ in backend.scan(b"r:", None, 95, 0)[0]] == live[95:]
    draws = Counter(backend.random_key(b"r:") for _ in range(600))
    assert set(draws) <= set(live) and len(draws) > 80
    assert sorted(backend.random_keys(b"r:", 150, True)) == live
    assert set(backend.random_keys(b"r:", 50, False)) <= set(live)


def test_random_key_turns_exact_when_nearly_every_key_expired(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set_many([(b"e:%04d" % i, b"v") for i in range(2_000)], SHORT)
    backend.set_many([(b"e:0100", b"live"), (b"e:1999", b"live")])
    wait_past(raw, backend, b"e:0000")
    draws = Counter(backend.random_key(b"e:") for _ in range(200))
    assert set(draws) == {b"e:0100", b"e:1999"} and min(draws.values()) > 60
    assert backend.random_key(b"e:00") is None
    (claimed,) = backend.claim_random(b"e:", 1, 1_000, b"")  # the exact draw purges the prefix's expired keys
    assert claimed.key in (b"e:0100", b"e:1999")
    assert {k for k, _ in backend.pop_random(b"e:", 5)} == {b"e:0100", b"e:1999"} - {claimed.key}
    consistent(raw, backend)


# -- claims ---------------------------------------------------------------------------------


def test_a_lease_on_an_expired_key_is_gone_with_it(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set(b"c:1", b"v", SHORT)
    backend.set(b"c:2", b"v")
    records = backend.claim_keys([b"c:1", b"c:2"], 60_000, b"w")
    assert all(records)
    assert backend.allocation_stats(b"c:") == (2, 0, 2, 0) and backend.stats()["claims"] == 2
    wait_past(raw, backend, b"c:1")
    assert backend.allocation_stats(b"c:") == (1, 0, 1, 0) and backend.allocation_stats(b"") == (1, 0, 1, 0)
    assert backend.stats()["claims"] == 1
    assert backend.read_lease(b"c:1") is None and backend.read_lease(b"c:2") is not None
    backend.set(b"c:1", b"again")  # a new key of the same name: claimable at once
    (fresh,) = backend.claim_keys([b"c:1"], 60_000, b"w")
    assert fresh is not None and fresh.token > max(r.token for r in records if r)
    consistent(raw, backend)


# -- backup and restore -----------------------------------------------------------------------


def test_a_backup_carries_expiries_and_leaves_out_the_expired(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set(b"a", b"1", LONG)
    backend.set(b"b", b"2")
    backend.set(b"c", b"3", SHORT)
    wait_past(raw, backend, b"c")
    reader = backend.begin_backup(False)
    batches = list(reader.batches(100))
    reader.close()
    ((entries, ends),) = batches
    assert entries == [(b"a", b"1"), (b"b", b"2")]
    assert ends is not None and ends[1] == 0 and ends[0] == raw.zscore(names(backend)["expires"], b"a")
    backend.delete(b"a")
    reader = backend.begin_backup(False)
    assert list(reader.batches(100)) == [([(b"b", b"2")], None)]  # none expires: None
    reader.close()


def test_a_backup_keeps_its_moment_of_expiries_while_writers_change_them(backend: RedisBackend, raw: redis.Redis) -> None:
    keys = [b"k%03d" % i for i in range(50)]
    backend.set_many([(key, b"v") for key in keys], LONG)
    expected = {key: int(raw.zscore(names(backend)["expires"], key)) for key in keys}
    backend.set(b"k049", b"short", SHORT)  # expires during the backup: left out
    del expected[b"k049"]
    reader = backend.begin_backup(False)
    pages = reader.batches(10)
    first_entries, first_ends = next(pages)
    backend.persist(b"k020")  # not read yet: the backup keeps the expiry it began with
    backend.expire(b"k021", 5)
    backend.set(b"k022", b"changed")
    backend.set(b"k023", b"changed", 5)
    time.sleep(0.3)
    rows = list(zip(first_entries, first_ends or []))
    for entries, ends in pages:
        rows.extend(zip(entries, ends or [0] * len(entries)))
    reader.close()
    assert {key: end for (key, _), end in rows} == expected
    assert all(value == b"v" for (_, value), _ in rows)


def test_replace_all_skips_the_expired_and_keeps_the_other_expiries(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set(b"old", b"x", LONG)
    now = server_ms(raw)
    batches = [
        ([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], [0, now - 1, now + LONG]),
        ([(b"d", b"4")], None),
    ]
    assert backend.replace_all(iter(batches)) == 3
    assert backend.scan(b"", None, 0, 0)[0] == [(b"a", b"1"), (b"c", b"3"), (b"d", b"4")]
    assert raw.zrange(names(backend)["expires"], 0, -1, withscores=True) == [(b"c", float(now + LONG))]
    assert backend.expiry(b"a") == (True, None)
    prefix = names(backend)["data"][: -len(b"data")]
    assert not raw.exists(prefix + b"staging:expires", prefix + b"staging:data")
    assert backend.replace_all(iter([([(b"z", b"1")], None)])) == 1
    assert not raw.exists(names(backend)["expires"]) and backend.expiry(b"z") == (True, None)
    consistent(raw, backend)


# -- purging ------------------------------------------------------------------------------------


def test_purge_expired_removes_at_most_its_limit_and_keeps_everything_in_step(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.set_many([(b"x:%03d" % i, b"value") for i in range(100)], SHORT)
    backend.set_many([(b"y:%03d" % i, b"value") for i in range(10)])
    backend.stats()  # the byte counter exists from here on
    wait_past(raw, backend, b"x:000")
    assert [backend.purge_expired(30) for _ in range(5)] == [30, 30, 30, 10, 0]
    n = names(backend)
    assert raw.zcard(n["index"]) == 10 and not raw.exists(n["expires"])
    assert not raw.hexists(n["data"], b"\xffexpiring")  # the flag goes with the last expiry
    assert backend.stats()["bytes"] == 10 * len(b"y:000value")
    consistent(raw, backend)


def test_every_write_purges_a_bounded_step_on_its_way(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set_many([(b"x:%03d" % i, b"v") for i in range(100)], SHORT)
    wait_past(raw, backend, b"x:000")
    backend.set(b"w", b"1")
    assert raw.zcard(names(backend)["index"]) == 100 - 16 + 1
    backend.delete(b"w")
    assert raw.zcard(names(backend)["index"]) == 100 - 32
    consistent(raw, backend)


def test_a_write_refused_by_the_quota_purges_and_tries_again(tmp_path: Path, raw: redis.Redis) -> None:
    options = store_options("redis", tmp_path)
    with open_kv(**options, max_keys=20, max_bytes=1_000) as kv:
        backend: RedisBackend = kv._store.backend  # type: ignore[attr-defined]
        backend.set_many([(b"q:%02d" % i, b"v" * 40) for i in range(20)], SHORT)
        with pytest.raises(QuotaExceededError):
            backend.set(b"more", b"v")
        wait_past(raw, backend, b"q:00")
        backend.set_many([(b"n:%02d" % i, b"w" * 40) for i in range(20)])  # the expired ones made room
        assert backend.size() == 20 and backend.stats()["bytes"] == 20 * (4 + 40)
        with pytest.raises(QuotaExceededError):
            backend.set(b"more", b"v")
        consistent(raw, backend)


# -- the flag that keeps get one plain command ---------------------------------------------------


def test_a_store_without_expiries_has_no_flag_and_get_sees_one_set_by_another_handle(
    backend: RedisBackend, raw: redis.Redis, tmp_path: Path
) -> None:
    options = {k: v for k, v in store_options("redis", tmp_path).items() if k != "backend"}
    other = configure(**options).create()  # a second handle of the same store, as another process has
    try:
        backend.set(b"k", b"v")
        assert backend.get(b"k") == b"v" and not backend._timed
        assert not raw.hexists(names(backend)["data"], b"\xffexpiring")
        assert other.expire(b"k", 50)
        assert raw.hexists(names(backend)["data"], b"\xffexpiring")
        wait_past(raw, backend, b"k")
        assert backend.get(b"k") is None and backend._timed  # saw the flag, checked the expiry
        backend.set(b"k", b"again")
        assert backend.get(b"k") == b"again"
    finally:
        other.close()


# -- processes ---------------------------------------------------------------------------------------


def _watch(options: dict[str, object], key: bytes, out: str) -> None:
    """In a forked child: read the expiry through a handle of its own, then wait for the key to go."""
    with open_kv(**options) as kv:
        backend: RedisBackend = kv._store.backend  # type: ignore[attr-defined]
        client = redis.Redis.from_url(session_redis_url())
        exists, left = backend.expiry(key)
        assert exists and left is not None and 0 < left <= 1_500
        assert backend.get(key) == b"shared"
        while backend.get(key) is not None:
            time.sleep(0.005)
        gone_at = server_ms(client)
        assert not backend.exists(key) and backend.expiry(key) == (False, None)
        Path(out).write_text(f"{gone_at}")
        client.close()


def test_two_processes_see_the_same_expiry_by_the_servers_clock(tmp_path: Path, raw: redis.Redis) -> None:
    options = store_options("redis", tmp_path)
    with open_kv(**options) as kv:
        backend: RedisBackend = kv._store.backend  # type: ignore[attr-defined]
        backend.set(b"s", b"shared", 1_500)
        ends = int(raw.zscore(names(backend)["expires"], b"s"))
        outs = [str(tmp_path / f"gone-{i}") for i in range(2)]
        wait_all_ok([fork_call(_watch, options, b"s", out) for out in outs])
        for out in outs:
            gone_at = int(Path(out).read_text())
            assert ends <= gone_at < ends + 1_000
        assert backend.get(b"s") is None


# -- measurements (printed, not asserted) ---------------------------------------------------------


def _median_us(call, keys: list[bytes], rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for key in keys:
            call(key)
        samples.append((time.perf_counter() - started) / len(keys) * 1e6)
    return sorted(samples)[len(samples) // 2]


def test_measure_get_with_and_without_expiries(tmp_path: Path) -> None:
    plain = open_kv(**store_options("redis", tmp_path, "plain"))
    timed = open_kv(**store_options("redis", tmp_path, "timed"))
    try:
        keys = [b"m:%05d" % i for i in range(2_000)]
        p: RedisBackend = plain._store.backend  # type: ignore[attr-defined]
        t: RedisBackend = timed._store.backend  # type: ignore[attr-defined]
        p.set_many([(key, b"v" * 100) for key in keys])
        t.set_many([(key, b"v" * 100) for key in keys], LONG)
        t.get(keys[0])
        raw_client = redis.Redis.from_url(session_redis_url())
        rows = []
        for _ in range(3):  # interleaved, so that the machine's load falls on each alike
            rows.append(
                (
                    _median_us(lambda key: raw_client.hget(p._data, key), keys),
                    _median_us(p.get, keys),
                    _median_us(t.get, keys),
                )
            )
        raw_client.close()
        bare, without, with_ttl = (sorted(column)[1] for column in zip(*rows))
        print(
            f"\nget: bare redis-py HGET {bare:.1f} us, store without ttl {without:.1f} us,"
            f" every key with a ttl {with_ttl:.1f} us ({with_ttl / without:.2f}x)"
        )
    finally:
        plain.close()
        timed.close()


@pytest.mark.skipif(not os.environ.get("LOCUST_KV_MEASURE_PURGE"), reason="loads a million keys: set LOCUST_KV_MEASURE_PURGE=1")
def test_measure_a_purge_step_among_a_million_expired_keys(tmp_path: Path, raw: redis.Redis) -> None:
    count = int(os.environ.get("LOCUST_KV_MEASURE_PURGE_KEYS", "1000000"))
    with open_kv(**store_options("redis", tmp_path)) as kv:
        backend: RedisBackend = kv._store.backend  # type: ignore[attr-defined]
        started = time.perf_counter()
        for start in range(0, count, 10_000):
            backend.set_many([(b"big:%07d" % i, b"v" * 20) for i in range(start, start + 10_000)], SHORT)
        loaded = time.perf_counter() - started
        time.sleep(SHORT / 1000 + 0.05)
        steps = []
        for limit in (16, 1_000, 1_000, 1_000):
            started = time.perf_counter()
            assert backend.purge_expired(limit) == limit
            steps.append((limit, (time.perf_counter() - started) * 1000))
        started = time.perf_counter()
        backend.set(b"w", b"1")
        write = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        size = backend.size()
        size_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        assert backend.count(b"big:05", b"big:06") == 0
        count_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        got = backend.get(b"big:0000001")
        get_ms = (time.perf_counter() - started) * 1000
        assert size == 1 and got is None
        print(f"\n{count:,} expired keys loaded in {loaded:.1f} s")
        for limit, took in steps:
            print(f"purge_expired({limit}): {took:.2f} ms")
        print(
            f"a set (purging 16 on its way): {write:.2f} ms; size() {size_ms:.2f} ms;"
            f" count(range) {count_ms:.0f} ms in all (it first purged the store down to 1,000 expired,"
            f" in steps of 1,000); get {get_ms:.2f} ms"
        )
        backend.clear()


def test_reads_among_more_expired_keys_than_one_script_walks_purge_them_in_steps_first(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.set_many([(b"s:%05d" % i, b"v") for i in range(5_000)], SHORT)
    backend.set_many([(b"s:%05d" % i, b"live") for i in range(0, 5_000, 1_000)])
    wait_past(raw, backend, b"s:00001")
    assert backend.count(b"s:01", b"s:03") == 2  # 4,995 expired: purged in steps down to 1,000 first
    assert raw.zcard(names(backend)["expires"]) <= 1_000
    backend.set_many([(b"t:%05d" % i, b"v") for i in range(3_000)], SHORT)
    wait_past(raw, backend, b"t:00001")
    assert [k for k, _ in backend.scan(b"s:", None, 1, 2)[0]] == [b"s:01000", b"s:02000"]
    backend.set_many([(b"t:%05d" % i, b"v") for i in range(3_000)], SHORT)
    wait_past(raw, backend, b"t:00001")
    assert backend.stats()["keys"] == 5 and backend.allocation_stats(b"t:") == (0, 0, 0, 0)
    backend.set_many([(b"t:%05d" % i, b"v") for i in range(3_000)], SHORT)
    wait_past(raw, backend, b"t:00001")
    assert len(backend.pop_random(b"", 10)) == 5  # the exact draw
    consistent(raw, backend)


def test_random_key_is_uniform_over_the_live_keys_among_expired_ones(backend: RedisBackend, raw: redis.Redis) -> None:
    live = [b"u:%03d" % i for i in range(0, 100, 10)]
    backend.set_many([(b"u:%03d" % i, b"v") for i in range(100) if i % 10], SHORT)
    backend.set_many([(key, b"v") for key in live])
    wait_past(raw, backend, b"u:001")
    draws = Counter(backend.random_key(b"u:") for _ in range(2_000))
    assert set(draws) == set(live)
    # 10 keys, 200 draws expected each: a count outside [130, 270] is more than 5 standard deviations off.
    assert all(130 <= n <= 270 for n in draws.values()), draws
    many = Counter(backend.random_keys(b"u:", 2_000, False))
    assert set(many) == set(live) and all(130 <= n <= 270 for n in many.values()), many


def _churn(options: dict[str, object], seed: int) -> None:
    """In a forked child: a second of every kind of write on 200 keys, a third of them expiring within 50 ms."""
    import random

    rng = random.Random(seed)
    with open_kv(**options) as kv:
        backend: RedisBackend = kv._store.backend  # type: ignore[attr-defined]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            key = b"c:%03d" % rng.randrange(200)
            ttl = rng.choice([None, None, rng.randrange(1, 50)])
            action = rng.randrange(9)
            if action == 0:
                backend.set(key, b"v" * rng.randrange(20), ttl)
            elif action == 1:
                backend.delete(key)
            elif action == 2:
                backend.increment_by(b"n:%d" % rng.randrange(20), 1, ttl)
            elif action == 3:
                backend.swap(key, b"s", ttl)
            elif action == 4:
                backend.set_many([(b"c:%03d" % rng.randrange(200), b"m") for _ in range(5)], ttl)
            elif action == 5:
                backend.expire(key, rng.randrange(1, 50)) if rng.random() < 0.5 else backend.persist(key)
            elif action == 6:
                backend.purge_expired(rng.randrange(1, 30))
            elif action == 7:
                records = backend.claim_random(b"c:", 2, rng.randrange(1, 100), b"")
                backend.complete_claims([(r.key, r.token) for r in records], rng.random() < 0.5)
            else:
                backend.get_or_set(key, b"g", ttl)


def test_processes_writing_expiring_keys_keep_data_index_expiries_and_bytes_in_step(
    tmp_path: Path, backend: RedisBackend, raw: redis.Redis
) -> None:
    backend.stats()  # the byte counter exists from the start
    options = store_options("redis", tmp_path)
    wait_all_ok([fork_call(_churn, options, seed) for seed in range(3)])
    consistent(raw, backend)
    time.sleep(0.06)
    live = backend.scan_keys(b"", None, 0, 0)[0]
    assert backend.size() == len(live) == backend.count(b"", None) == backend.stats()["keys"]
    assert all(backend.expiry(key)[0] for key in live)
    while backend.purge_expired(1_000):
        pass
    assert raw.zcard(names(backend)["index"]) == len(live)
    consistent(raw, backend)


# -- the expiry beside the value, for gets -----------------------------------------------------------


def test_a_get_reads_the_expiry_beside_the_value_and_never_reads_expires(
    backend: RedisBackend, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the flag at 2, a get is one MULTI of HMGET (value, companion, flag) and TIME: no read of ``expires``."""
    backend.set(b"short", b"s", SHORT)
    backend.set(b"long", b"l", LONG)
    backend.set(b"plain", b"p")
    assert raw.hget(names(backend)["data"], b"\xffexpiring") == b"2"

    def refused(key: bytes) -> bytes | None:
        raise AssertionError("the get read expires")

    monkeypatch.setattr(backend, "_get_by_expires", refused)
    assert backend.get(b"short") == b"s" and backend.get(b"long") == b"l" and backend.get(b"plain") == b"p"
    wait_past(raw, backend, b"short")
    assert backend.get(b"short") is None  # expired, not purged yet
    assert raw.hexists(names(backend)["data"], b"short")
    assert backend.get(b"long") == b"l" and backend.get(b"absent") is None
    consistent(raw, backend)


def test_a_store_flagged_by_an_earlier_release_is_read_through_expires_until_its_expiries_are_gone(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    """Flag 1 (an earlier release's): companions may be missing, so gets read ``expires``; new writes keep
    the flag at 1 and still write companions; once no key expires the flag goes, and the next expiry sets 2."""
    n = names(backend)
    backend.set(b"short", b"s", SHORT)
    backend.set(b"long", b"l", LONG)
    # What the earlier release leaves: the expiries in ``expires`` only, and the flag at 1.
    raw.hdel(n["data"], b"short\xff", b"long\xff")
    raw.hset(n["data"], b"\xffexpiring", b"1")
    backend.set(b"later", b"x", LONG)
    assert raw.hget(n["data"], b"\xffexpiring") == b"1" and raw.hexists(n["data"], b"later\xff")
    consistent(raw, backend)
    wait_past(raw, backend, b"short")
    assert backend.get(b"short") is None and backend.get(b"long") == b"l" and backend.get(b"later") == b"x"
    backend.persist(b"long")
    backend.persist(b"later")
    backend.purge_expired(0)
    assert not raw.hexists(n["data"], b"\xffexpiring")  # no key expires: the flag is gone
    backend.set(b"new", b"n", LONG)
    assert raw.hget(n["data"], b"\xffexpiring") == b"2" and raw.hexists(n["data"], b"new\xff")
    assert backend.get(b"new") == b"n" and backend.get(b"long") == b"l"
    consistent(raw, backend)


def test_companions_follow_every_write_that_sets_or_drops_an_expiry(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set_many([(b"m:%03d" % i, b"v") for i in range(50)], LONG)
    backend.set_many([(b"m:%03d" % i, b"w") for i in range(0, 50, 2)])  # drops theirs
    backend.expire(b"m:001", SHORT)
    backend.persist(b"m:003")
    backend.swap(b"m:005", b"x", LONG)
    backend.increment_by(b"c", 1, LONG)
    backend.get_or_set(b"g", b"1", LONG)
    backend.compare_and_swap(b"m:007", b"v", b"y")  # replaces the expiry: none
    backend.delete(b"m:009")
    backend.delete_many([b"m:011", b"m:013"])
    backend.delete_prefix(b"m:02", 0)
    backend.pop_random(b"m:03", 2)
    consistent(raw, backend)
    wait_past(raw, backend, b"m:001")
    assert backend.get(b"m:001") is None
    backend.purge_expired(0)
    consistent(raw, backend)
    backend.clear()
    assert raw.hkeys(names(backend)["data"]) == []


def test_a_restore_writes_the_companions_and_the_flag_at_2(backend: RedisBackend, raw: redis.Redis) -> None:
    backend.set(b"old", b"o", LONG)
    now = server_ms(raw)
    rows = [(b"r:%03d" % i, b"v") for i in range(20)]
    ends = [now + LONG if i % 2 else 0 for i in range(20)]
    assert backend.replace_all(iter([(rows, ends)])) == 20
    assert raw.hget(names(backend)["data"], b"\xffexpiring") == b"2"
    consistent(raw, backend)
    assert backend.get(b"r:001") == b"v" and backend.get(b"r:002") == b"v" and backend.get(b"old") is None
