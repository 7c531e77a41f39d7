"""Leases, batches and prefix operations of the redis backend, against a real redis-server.

The contract suites (test_contract_claims.py, test_contract_batch.py) check
the semantics through the front-end on every backend; these check what is
the redis backend's own: the lease records beside the data, the exact draw
when most keys are held, the scripts' 1,000-key slices, the server's clock,
copy-on-write backups under claims and pops, and real OS processes racing.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from locust_kv import KV, open_kv
from locust_kv.backends.base import Batch
from locust_kv.backends.redis.backend import RedisBackend
from locust_kv.errors import BackupInProgressError, RestoreInProgressError

from .conftest import session_redis_url, store_options
from .disk_helpers import fork_call, wait_all_ok

PROCESSES = 4


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[KV]:
    handle = open_kv(**store_options("redis", tmp_path))
    yield handle
    handle.close()


@pytest.fixture
def backend(kv: KV) -> RedisBackend:
    return kv._store.backend  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def server() -> redis.Redis:
    return redis.Redis.from_url(session_redis_url())


def fill(backend: RedisBackend, n: int, prefix: bytes = b"k:") -> list[bytes]:
    keys = [prefix + b"%05d" % i for i in range(n)]
    backend.set_many([(key, b"v" + key) for key in keys])
    return keys


def lease_records(backend: RedisBackend, server: redis.Redis) -> tuple[int, int]:
    """How many leases the store keeps, and how many of them were swept aside as expired.

    Every lease is in the hash, and in either claims:keys and claims:ends
    (not swept) or claims:lapsed (swept), never both.
    """
    leases, unswept, ends, lapsed = (
        server.hlen(backend._claims),
        server.zcard(backend._claim_keys),
        server.zcard(backend._claim_ends),
        server.zcard(backend._claim_lapsed),
    )
    assert unswept == ends and leases == unswept + lapsed, (leases, unswept, ends, lapsed)
    return leases, lapsed


def server_ms(server: redis.Redis) -> int:
    seconds, micros = server.time()
    return seconds * 1000 + micros // 1000


# -- claims ---------------------------------------------------------------------------------


def test_claim_keys_grants_by_the_server_clock_with_one_token_each(backend: RedisBackend, server: redis.Redis) -> None:
    keys = fill(backend, 3)
    before = server_ms(server)
    records = backend.claim_keys([keys[0], b"absent", keys[1], keys[0]], 5_000, b"owner")
    after = server_ms(server)
    first, absent, second, again = records
    assert absent is None and again is None
    assert first is not None and second is not None
    assert (first.key, first.value) == (keys[0], b"v" + keys[0])
    assert second.token == first.token + 1
    assert before + 5_000 <= first.expires_ms <= after + 5_000
    assert lease_records(backend, server) == (2, 0)
    assert server.hget(backend._claims, keys[0]) == b"%d:%d:owner" % (first.expires_ms, first.token)


def test_a_lease_expires_by_the_server_clock(backend: RedisBackend, server: redis.Redis) -> None:
    (key,) = fill(backend, 1)
    (old,) = backend.claim_keys([key], 150, b"")
    assert old is not None
    assert backend.claim_keys([key], 150, b"") == [None]
    assert backend.pop_random(b"k:", 1) == []
    while server_ms(server) <= old.expires_ms:
        time.sleep(0.01)
    assert backend.allocation_stats(b"k:") == (1, 1, 0, 1)
    assert backend.stats()["expired_claims"] == 1
    assert backend.renew_claims([(key, old.token)], 1_000) == [None]
    (new,) = backend.claim_random(b"k:", 1, 10_000, b"")
    assert new.key == key and new.token > old.token
    assert backend.release_claims([(key, old.token)]) == [False]
    assert backend.complete_claims([(key, old.token)], True) == [False]
    assert backend.get(key) == b"v" + key
    assert backend.allocation_stats(b"k:") == (1, 0, 1, 0)
    assert lease_records(backend, server) == (1, 0)


def test_expired_leases_are_swept_aside_counted_and_free(backend: RedisBackend, server: redis.Redis) -> None:
    keys = fill(backend, 1_000)
    long = backend.claim_keys(keys[:500], 60_000, b"")
    short = backend.claim_keys(keys[500:996], 150, b"")
    fill(backend, 10, b"other:")
    short += backend.claim_keys([b"other:00000"], 150, b"")
    deadline = max(r.expires_ms for r in short if r is not None)
    while server_ms(server) <= deadline:
        time.sleep(0.01)
    # Not swept yet: counted as expired all the same.
    assert lease_records(backend, server) == (997, 0)
    assert backend.allocation_stats(b"k:") == (1_000, 500, 500, 496)
    assert backend.allocation_stats(b"") == (1_010, 510, 500, 497)
    assert backend.stats()["claims"] == 500 and backend.stats()["expired_claims"] == 497
    # A claim sweeps a few in passing; the exact draw (600 asked, 500 free) sweeps the rest.
    backend.claim_keys([b"other:00001"], 60_000, b"")
    assert lease_records(backend, server) == (998, 64)
    assert backend.allocation_stats(b"k:") == (1_000, 500, 500, 496)
    got = backend.claim_random(b"k:", 600, 60_000, b"")
    assert sorted(r.key for r in got) == keys[500:]
    assert lease_records(backend, server) == (1_002, 1)  # other:00000's lease, swept, still expired
    assert backend.allocation_stats(b"other:") == (10, 9, 1, 1)
    assert backend.stats()["claims"] == 1_001 and backend.stats()["expired_claims"] == 1
    assert backend.release_claims([(b"other:00000", 1)]) == [False]
    backend.delete(b"other:00000")  # removing a key drops its swept lease too
    assert lease_records(backend, server) == (1_001, 0)
    assert all(long) and backend.claim_random(b"k:", 1, 60_000, b"") == []


def test_release_complete_and_renew_act_on_live_leases_only(backend: RedisBackend, server: redis.Redis) -> None:
    keys = fill(backend, 4)
    records = backend.claim_keys(keys, 10_000, b"me")
    refs = [(r.key, r.token) for r in records if r is not None]
    renewed = backend.renew_claims([refs[0], (keys[1], refs[1][1] + 100), refs[0]], 60_000)
    assert renewed[1] is None and renewed[0] is not None and renewed[2] is not None
    assert renewed[0] >= records[0].expires_ms + 49_000  # type: ignore[union-attr]
    assert server.hget(backend._claims, keys[0]) == b"%d:%d:me" % (renewed[2], refs[0][1])
    assert server.zscore(backend._claim_ends, keys[0]) == renewed[2]
    assert backend.release_claims([refs[0], refs[0]]) == [True, False]
    assert backend.complete_claims([refs[1]], False) == [True]
    assert backend.complete_claims([refs[2], refs[3]], True) == [True, True]
    assert backend.get(keys[1]) == b"v" + keys[1] and backend.get(keys[2]) is None
    assert backend.count(b"k:", b"k;") == 2
    assert lease_records(backend, server) == (0, 0)


def test_claim_random_falls_back_to_an_exact_draw_when_most_keys_are_held(backend: RedisBackend) -> None:
    keys = fill(backend, 1_000)
    free = set(keys[::250])  # 4 free keys among 1,000: rejection alone often gives up
    held = backend.claim_keys([k for k in keys if k not in free], 60_000, b"")
    assert all(held)
    singles: collections.Counter[bytes] = collections.Counter()
    for _ in range(200):
        (record,) = backend.claim_random(b"k:", 1, 60_000, b"")
        singles[record.key] += 1
        assert backend.release_claims([(record.key, record.token)]) == [True]
    assert set(singles) == free and all(25 < n < 80 for n in singles.values()), singles  # 50 expected each
    pairs: collections.Counter[frozenset[bytes]] = collections.Counter()
    for _ in range(240):  # two at once: nearly always the exact draw; each of the 6 pairs equally likely
        records = backend.claim_random(b"k:", 2, 60_000, b"")
        pairs[frozenset(r.key for r in records)] += 1
        assert backend.release_claims([(r.key, r.token) for r in records]) == [True, True]
    assert len(pairs) == 6 and all(len(pair) == 2 and 18 < n < 65 for pair, n in pairs.items()), pairs
    got = backend.claim_random(b"k:", 10, 60_000, b"")
    assert {r.key for r in got} == free
    assert backend.claim_random(b"k:", 1, 60_000, b"") == []


def test_claim_random_many_mixes_both_draws_without_repeats(backend: RedisBackend) -> None:
    keys = fill(backend, 3_000)
    backend.claim_keys(keys[: 2_000], 60_000, b"")
    got = backend.claim_random(b"k:", 900, 60_000, b"")
    assert len(got) == 900 and len({r.key for r in got}) == 900
    assert all(r.key in keys[2_000:] for r in got)
    assert [r.token for r in got] == list(range(got[0].token, got[0].token + 900))  # one INCRBY
    rest = backend.claim_random(b"k:", 100_000, 60_000, b"")  # more than the prefix holds: exact at once
    assert len(rest) == 100 and not {r.key for r in rest} & {r.key for r in got}
    assert backend.allocation_stats(b"k:") == (3_000, 0, 3_000, 0)
    assert backend.allocation_stats(b"") == (3_000, 0, 3_000, 0)


def test_a_prefix_sees_only_its_own_leases(backend: RedisBackend) -> None:
    a = fill(backend, 50, b"a:")
    b = fill(backend, 50, b"b:")
    backend.claim_keys(b, 60_000, b"")  # every b: key held; a: is untouched
    backend.claim_keys(a[:45], 60_000, b"")
    got = backend.claim_random(b"a:", 10, 60_000, b"")
    assert sorted(r.key for r in got) == a[45:]
    assert backend.allocation_stats(b"a:") == (50, 0, 50, 0)
    assert backend.allocation_stats(b"b:") == (50, 0, 50, 0)
    assert backend.allocation_stats(b"") == (100, 0, 100, 0)
    assert backend.allocation_stats(b"\xff") == (0, 0, 0, 0)


def test_every_removal_drops_the_lease_records(backend: RedisBackend, server: redis.Redis) -> None:
    keys = fill(backend, 3_000)
    backend.claim_keys(keys, 60_000, b"")
    assert lease_records(backend, server) == (3_000, 0)
    backend.delete(keys[0])
    backend.compare_and_delete(keys[1], b"v" + keys[1])
    assert backend.compare_and_delete_detailed(keys[2], b"v" + keys[2]) == (True, b"v" + keys[2])
    assert backend.delete_many(keys[3:1_500] + keys[3:10]) == 1_497
    assert backend.delete_prefix(b"k:02", 0) == (1_000, True)
    assert lease_records(backend, server) == (500, 0)
    backend.set(keys[1_600], b"overwritten")  # a write that keeps the key keeps its lease
    backend.swap(keys[1_700], b"swapped")
    assert lease_records(backend, server) == (500, 0)
    backend.clear()
    assert lease_records(backend, server) == (0, 0)
    assert server.exists(backend._leased[-1])  # the token counter stays: tokens never repeat


def test_tokens_never_repeat_across_clear_and_restore(backend: RedisBackend) -> None:
    (key,) = fill(backend, 1)
    (first,) = backend.claim_keys([key], 60_000, b"")
    backend.clear()
    fill(backend, 1)
    (second,) = backend.claim_keys([key], 60_000, b"")
    backend.replace_all(iter([([(key, b"restored")], None)]))
    (third,) = backend.claim_keys([key], 60_000, b"")
    assert first is not None and second is not None and third is not None
    assert first.token < second.token < third.token


def test_restore_drops_every_lease_and_refuses_claims_while_it_runs(backend: RedisBackend, server: redis.Redis) -> None:
    keys = fill(backend, 10)
    records = backend.claim_keys(keys, 60_000, b"")
    refused: list[type] = []

    def batches() -> Iterator[Batch]:
        for attempt in (
            lambda: backend.claim_keys([keys[0]], 1_000, b""),
            lambda: backend.claim_random(b"k:", 1, 1_000, b""),
            lambda: backend.release_claims([(keys[1], records[1].token)]),  # type: ignore[union-attr]
            lambda: backend.pop_random(b"k:", 1),
            lambda: backend.delete_prefix(b"k:", 0),
        ):
            with pytest.raises(RestoreInProgressError):
                attempt()
            refused.append(RestoreInProgressError)
        yield [(key, b"new") for key in keys[:5]], None

    assert backend.replace_all(batches()) == 5 and len(refused) == 5
    assert lease_records(backend, server) == (0, 0)
    assert backend.allocation_stats(b"") == (5, 5, 0, 0)
    assert backend.release_claims([(r.key, r.token) for r in records if r]) == [False] * 10


def test_a_backup_reads_its_moment_while_claims_complete_and_pops_remove_keys(backend: RedisBackend) -> None:
    keys = fill(backend, 2_500)
    before = {key: b"v" + key for key in keys}
    reader = backend.begin_backup(False)
    pages = reader.batches(500)
    read = list(next(pages)[0])
    popped = backend.pop_random(b"k:", 300)
    claimed = backend.claim_random(b"k:", 300, 60_000, b"")
    assert all(backend.complete_claims([(r.key, r.token) for r in claimed], True))
    backend.delete_many(keys[1_000:1_200])
    backend.delete_prefix(b"k:02", 0)
    backend.set_many([(b"k:00001", b"changed"), (b"new", b"created")])
    for page, _ in pages:
        read.extend(page)
        backend.pop_random(b"k:", 50)
    reader.close()
    assert dict(read) == before and [k for k, _ in read] == keys
    assert len(popped) == 300 and backend.get(b"new") == b"created"


def test_clear_waits_for_a_backup_and_claims_do_not(backend: RedisBackend) -> None:
    keys = fill(backend, 5)
    reader = backend.begin_backup(True)
    (record,) = backend.claim_keys(keys[:1], 60_000, b"")
    assert record is not None and backend.release_claims([(record.key, record.token)]) == [True]
    with pytest.raises(BackupInProgressError):
        backend.clear()
    assert [row for page, _ in reader.batches(100) for row in page] == [(k, b"v" + k) for k in keys]
    reader.close()


def test_every_lease_key_is_under_the_store_hash_tag(backend: RedisBackend, server: redis.Redis, tmp_path: Path) -> None:
    keys = fill(backend, 3)
    backend.claim_keys(keys, 60_000, b"")
    namespace = store_options("redis", tmp_path)["namespace"]
    names = [name for name in server.scan_iter(match=f"*{namespace}*")]
    claimtoken = backend._leased[12]  # the byte counter is last
    assert claimtoken.endswith(b":claimtoken")
    assert {backend._claims, backend._claim_keys, backend._claim_ends, claimtoken} <= set(names)
    assert len({key_slot(name) for name in names}) == 1


# -- processes ------------------------------------------------------------------------------


def _claim_many(kv: KV, rounds: int, out: str) -> None:
    got = []
    for _ in range(rounds):
        got += [f"{c.key} {c.token}" for c in kv.claim_random_many("pool:", count=7, ttl=60)]
    Path(out).write_text("\n".join(got))


def test_processes_claiming_from_one_pool_never_share_a_key_or_a_token(kv: KV, tmp_path: Path) -> None:
    keys = [f"pool:{i:04d}" for i in range(1_000)]
    kv.set_many(dict.fromkeys(keys, 0))
    kv.set_many({f"other:{i}": 0 for i in range(100)})
    outs = [str(tmp_path / f"out{n}") for n in range(PROCESSES)]
    wait_all_ok([fork_call(_claim_many, kv, 60, out) for out in outs])  # 1,680 asked for 1,000 keys
    rows = [line.split() for out in outs for line in Path(out).read_text().splitlines()]
    assert sorted(key for key, _ in rows) == keys
    assert len({token for _, token in rows}) == 1_000
    assert kv.allocation_stats("pool:") == (1_000, 0, 1_000, 0)
    assert kv.allocation_stats() == (1_100, 100, 1_000, 0)


def _pop_all(kv: KV, out: str) -> None:
    got = []
    while True:
        entries = kv.pop_random_many("job:", count=3)
        if not entries:
            break
        got += [f"{e.key} {e.value}" for e in entries]
    Path(out).write_text("\n".join(got))


def test_processes_popping_take_every_free_entry_exactly_once(kv: KV, tmp_path: Path) -> None:
    jobs = {f"job:{i:04d}": i for i in range(1_500)}
    kv.set_many(jobs)
    held = kv.claim_keys(list(jobs)[:100], ttl=60)  # leased entries are not popped
    outs = [str(tmp_path / f"out{n}") for n in range(PROCESSES)]
    wait_all_ok([fork_call(_pop_all, kv, out) for out in outs])
    rows = [line.split() for out in outs for line in Path(out).read_text().splitlines()]
    assert sorted(key for key, _ in rows) == sorted(list(jobs)[100:])
    assert all(jobs[key] == int(value) for key, value in rows)
    assert kv.count("job:") == 100 and kv.release_claims(held).lost == []


# -- batches and prefixes ----------------------------------------------------------------


def test_batches_larger_than_a_script_slice(backend: RedisBackend) -> None:
    items = [(b"b:%06d" % i, b"%d" % i) for i in range(4_321)]
    backend.set_many(items + [(b"b:000000", b"last")])
    assert backend.count(b"b:", b"b;") == 4_321 and backend.count(b"", None) == 4_321 and backend.count(b"b:0001", b"b:0002") == 100
    values = backend.get_many([k for k, _ in items] + [b"absent"])
    assert values[0] == b"last" and values[1:-1] == [v for _, v in items[1:]] and values[-1] is None
    assert backend.get_many([b"absent", b"b:000001"]) == [None, b"1"]
    backend.set(b"b:empty", b"")
    assert backend.get_many([b"b:empty"]) == [b""]
    keys, more = backend.scan_keys(b"b:000100", b"b;", 0, 1_500)
    assert keys == [k for k, _ in items[100:1_600]] and more
    assert backend.scan_keys(b"b:0043", b"b:0044", 0, 0) == ([k for k, _ in items[4_300:]], False)
    assert backend.delete_prefix(b"b:", 2_500) == (2_500, False)
    assert backend.delete_prefix(b"b:", 0) == (1_822, True)
    assert backend.delete_prefix(b"b:", 0) == (0, True)


def test_random_keys_draw_uniformly_both_ways(backend: RedisBackend) -> None:
    keys = fill(backend, 10)
    fill(backend, 3, b"z:")
    for many in (5, 40):  # 40 draws of 10 keys read the prefix once
        draws: collections.Counter[bytes] = collections.Counter()
        for _ in range(2_000 // many):
            got = backend.random_keys(b"k:", many, False)
            assert len(got) == many
            draws.update(got)
        assert set(draws) == set(keys) and all(120 < n < 290 for n in draws.values()), draws
    firsts: collections.Counter[bytes] = collections.Counter()
    for _ in range(2_000):
        got = backend.random_keys(b"k:", 3, True)
        assert len(set(got)) == 3 and set(got) <= set(keys)
        firsts[got[0]] += 1  # a unique draw comes in random order: its first key is uniform too
    assert all(120 < n < 290 for n in firsts.values()), firsts
    assert sorted(backend.random_keys(b"k:", 50, True)) == keys
    assert backend.random_keys(b"none:", 3, False) == []


def test_stats_read_the_store_at_one_moment(backend: RedisBackend) -> None:
    assert backend.stats() == {"keys": 0, "bytes": 0, "claims": 0, "expired_claims": 0}
    keys = fill(backend, 100)
    backend.claim_keys(keys[:10], 60_000, b"")
    backend.claim_keys(keys[10:12], 1, b"")
    time.sleep(0.05)
    stats = backend.stats()
    assert stats["keys"] == 100 and stats["claims"] == 10 and stats["expired_claims"] == 2
    assert stats["bytes"] > 100 * 10
