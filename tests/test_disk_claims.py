"""The disk backend's claims (leases), batch and prefix operations, at the backend level.

Backend calls take bytes; real contention comes from forked processes and OS
threads sharing one store file.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from locust_kv.backends import lmdb as disk
from locust_kv.backends.lmdb import backend as disk_backend
from locust_kv.backends.lmdb import engine, errors, layout
from locust_kv.backends.lmdb import leases as lease_records
from locust_kv.backends.base import Batch, ClaimRecord
from locust_kv.backends.lmdb.backend import DiskBackend
from locust_kv.errors import DiskStoreFullError, RestoreInProgressError

from .disk_helpers import fork_call, wait_all_ok

LONG = 3_600_000  # an hour, in ms


def _open(path: Path, **options: object) -> DiskBackend:
    return disk.configure(path=str(path), **options).create()


@pytest.fixture(params=[True, False], ids=["indexed", "unindexed"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DiskBackend]:
    backend = _open(tmp_path / "s.lmdb", track_keys=request.param)
    yield backend
    backend.close()


def _fill(backend: DiskBackend, n: int, prefix: bytes = b"k") -> list[bytes]:
    keys = [prefix + b"%05d" % i for i in range(n)]
    backend.set_many([(key, b"v" + key) for key in keys])
    return keys


def _fake_clock(backend: DiskBackend, start: int = 1_000_000) -> list[int]:
    now = [start]
    backend.clock = lambda: now[0]  # type: ignore[method-assign]
    return now


# -- claim_keys, release, complete, renew ----------------------------------------------


def test_claim_keys_grants_existing_free_keys_once(store: DiskBackend) -> None:
    now = _fake_clock(store)
    _fill(store, 3)
    got = store.claim_keys([b"k00000", b"k00000", b"absent", b"k00001"], 500, b"me")
    assert got[1] is None and got[2] is None
    first, second = got[0], got[3]
    assert isinstance(first, ClaimRecord) and isinstance(second, ClaimRecord)
    assert (first.key, first.value, first.expires_ms) == (b"k00000", b"vk00000", now[0] + 500)
    assert second.token > first.token
    assert store.claim_keys([b"k00000", b"k00002"], 500, b"other")[0] is None  # held
    now[0] += 500  # expires_ms <= now: free again
    again = store.claim_keys([b"k00000"], 10, b"other")[0]
    assert again is not None and again.token > second.token
    assert store.release_claims([(b"k00000", first.token)]) == [False]  # taken over
    assert store.release_claims([(b"k00000", again.token)]) == [True]


def test_release_complete_renew_check_the_token_and_the_end(store: DiskBackend) -> None:
    now = _fake_clock(store)
    _fill(store, 4)
    a, b, c, d = (r for r in store.claim_keys([b"k00000", b"k00001", b"k00002", b"k00003"], 100, b"o"))
    assert a and b and c and d
    assert store.renew_claims([(a.key, a.token), (b.key, b.token + 99)], 1_000) == [now[0] + 1_000, None]
    now[0] += 500  # b, c, d expired; a renewed
    assert store.release_claims([(b.key, b.token)]) == [False]
    assert store.renew_claims([(c.key, c.token)], 1_000) == [None]
    assert store.complete_claims([(a.key, a.token), (a.key, a.token)], False) == [True, False]
    assert store.get(a.key) == b"vk00000"  # complete without delete keeps the key
    e = store.claim_keys([b"k00001"], 100, b"o")[0]
    assert e is not None
    assert store.complete_claims([(e.key, e.token)], True) == [True]
    assert store.get(e.key) is None
    assert store.count(b"", None) == 3
    assert e.key not in [store.random_key(b"") for _ in range(200)]
    assert store.allocation_stats(b"") == (3, 3, 0, 2)  # c and d still carry ended leases


def test_claim_random_takes_only_claimable_keys_and_all_of_them(store: DiskBackend) -> None:
    _fill(store, 300)
    _fill(store, 50, b"other")
    held = store.claim_random(b"k", 299, LONG, b"a")
    assert len({r.key for r in held}) == 299 and all(r.key.startswith(b"k") for r in held)
    last = store.claim_random(b"k", 5, LONG, b"b")  # one claimable key among 300: the exact fallback
    assert len(last) == 1 and last[0].key not in {r.key for r in held}
    assert store.claim_random(b"k", 1, LONG, b"b") == []
    assert store.allocation_stats(b"k") == (300, 0, 300, 0)
    assert store.allocation_stats(b"") == (350, 50, 300, 0)
    assert len(store.claim_random(b"", 100, LONG, b"c")) == 50


@pytest.mark.parametrize("prefix", [b"", b"k"])
def test_claim_random_is_uniform_over_the_claimable_keys(tmp_path: Path, prefix: bytes) -> None:
    store = _open(tmp_path / "s.lmdb")
    now = _fake_clock(store)
    keys = _fill(store, 200)
    store.claim_keys(keys[:100], LONG, b"h")
    store.claim_keys(keys[100:150], 10, b"h")
    now[0] += 10  # 50 ended, 50 free, 100 held
    seen: collections.Counter[bytes] = collections.Counter()
    for _ in range(5_000):
        (got,) = store.claim_random(prefix, 1, LONG, b"x")
        seen[got.key] += 1
        assert store.release_claims([(got.key, got.token)]) == [True]
    assert set(seen) == set(keys[100:])
    assert min(seen.values()) > 20 and max(seen.values()) < 90  # expected 50 each (sd 7)
    store.close()


def test_pop_random_skips_live_leases_and_takes_expired_ones(store: DiskBackend) -> None:
    now = _fake_clock(store)
    keys = _fill(store, 100)
    store.claim_keys(keys[:90], 100, b"h")
    store.claim_keys(keys[90:95], 10, b"h")
    now[0] += 50  # keys[90:95] expired
    popped = store.pop_random(b"k", 1_000)
    assert sorted(popped) == [(key, b"v" + key) for key in keys[90:]]
    assert store.count(b"", None) == 90
    assert store.stats()["claims"] == 90 and store.stats()["expired_claims"] == 0
    assert store.pop_random(b"k", 1) == []


@pytest.mark.parametrize("prefix", [b"", b"k"])
def test_an_exhausted_pool_gives_exactly_its_ended_leases(store: DiskBackend, prefix: bytes) -> None:
    now = _fake_clock(store)
    keys = _fill(store, 2_000)
    store.claim_keys(keys[:1_990], 100, b"h")
    store.claim_keys(keys[1_990:], 50, b"h")
    assert store.claim_random(prefix, 10, 100, b"x") == []
    assert store.pop_random(prefix, 10) == []
    now[0] += 60  # the last ten ended
    assert store.allocation_stats(prefix) == (2_000, 10, 1_990, 10)
    got = store.claim_random(prefix, 100, 100, b"x")
    assert sorted(r.key for r in got) == keys[1_990:]
    assert store.claim_random(prefix, 1, 100, b"x") == []
    _check_leases(store)


@pytest.mark.parametrize("prefix", [b"", b"k"])
def test_many_ended_leases_are_all_claimable(store: DiskBackend, prefix: bytes) -> None:
    now = _fake_clock(store)
    keys = _fill(store, 4_000)
    store.claim_keys(keys[:2_500], 100, b"h")  # more ended leases than the sampler lists
    store.claim_keys(keys[2_500:], 1_000, b"h")
    now[0] += 100
    assert store.allocation_stats(prefix) == (4_000, 2_500, 1_500, 2_500)
    first = store.claim_random(prefix, 10, 1_000, b"x")
    assert len(first) == 10 and all(r.key in set(keys[:2_500]) for r in first)
    rest = store.claim_random(prefix, 4_000, 1_000, b"x")
    assert sorted(r.key for r in first + rest) == keys[:2_500]
    _check_leases(store)


def _check_leases(store: DiskBackend) -> None:
    """Every lease record has its one entry in the ends' database, and is on an existing key."""

    def check(txn: lmdb.Transaction, view: layout.View) -> None:
        leases = dict(txn.cursor(view.claims).iternext())
        ends = dict(txn.cursor(view.ends).iternext())
        assert sorted(ends.values()) == sorted(leases)
        assert {lease_records.end_key(record) for record in leases.values()} == set(ends)
        assert all(txn.get(key, None, view.data) is not None for key in leases)

    store._read(errors.READ, check)


def test_the_ends_index_follows_every_lease_operation(store: DiskBackend) -> None:
    now = _fake_clock(store)
    keys = _fill(store, 400)
    granted = store.claim_random(b"", 200, 100, b"a")
    refs = [(r.key, r.token) for r in granted]
    store.renew_claims(refs[:50], 500)
    store.release_claims(refs[50:70])
    store.complete_claims(refs[70:90], True)
    store.complete_claims(refs[90:100], False)
    store.delete_many([key for key, _ in refs[100:110]])
    store.delete(refs[110][0])
    store.compare_and_delete(refs[111][0], b"v" + refs[111][0])
    _check_leases(store)
    now[0] += 200  # 90 leases ended, 50 renewed ones live
    assert store.stats()["claims"] == 50 and store.stats()["expired_claims"] == 88
    store.claim_keys(keys, 100, b"b")  # takes over the ended ones
    store.pop_random(b"", 10)
    store.delete_prefix(b"k000", 0)
    _check_leases(store)
    store.clear()
    _check_leases(store)
    assert store.stats()["claims"] == 0


# -- the lease goes with the key ------------------------------------------------------------


def _removals(backend: DiskBackend, key: bytes, token: int) -> dict[str, object]:
    return {
        "delete": lambda: backend.delete(key),
        "compare_and_delete": lambda: backend.compare_and_delete(key, b"v" + key),
        "compare_and_delete_detailed": lambda: backend.compare_and_delete_detailed(key, b"v" + key),
        "delete_many": lambda: backend.delete_many([key]),
        "delete_prefix": lambda: backend.delete_prefix(key, 0),
        "complete_delete": lambda: backend.complete_claims([(key, token)], True),
        "clear": backend.clear,
        "replace_all": lambda: backend.replace_all(iter([([(key, b"v" + key)], None)])),
    }


@pytest.mark.parametrize(
    "how",
    ["delete", "compare_and_delete", "compare_and_delete_detailed", "delete_many", "delete_prefix",
     "complete_delete", "clear", "replace_all"],
)
def test_removing_a_key_ends_its_lease(store: DiskBackend, how: str) -> None:
    keys = _fill(store, 100)
    held = store.claim_keys([keys[7]], LONG, b"h")[0]
    assert held is not None
    _removals(store, keys[7], held.token)[how]()  # type: ignore[operator]
    store.set(keys[7], b"v" + keys[7])
    assert store.stats()["claims"] == 0
    assert store.release_claims([(keys[7], held.token)]) == [False]
    again = store.claim_keys([keys[7]], LONG, b"h")[0]
    assert again is not None and again.token > held.token


def test_writes_that_keep_the_key_keep_its_lease(store: DiskBackend) -> None:
    keys = _fill(store, 3)
    held = store.claim_keys([keys[0]], LONG, b"h")[0]
    assert held is not None
    store.set(keys[0], b"1")
    store.swap(keys[0], b"2")
    store.increment_by(keys[0], 5)
    store.compare_and_swap(keys[0], b"7", b"8")
    store.compare_and_swap_detailed(keys[0], b"8", b"9")
    store.set_many([(keys[0], b"10")])
    assert store.claim_keys([keys[0]], LONG, b"x") == [None]
    assert store.release_claims([(keys[0], held.token)]) == [True]


def test_clear_and_restore_drop_every_lease_and_the_token_keeps_growing(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    store = _open(path)
    keys = _fill(store, 50)
    tokens = [r.token for r in store.claim_random(b"", 50, LONG, b"a")]
    store.clear()
    assert store.stats() == {"keys": 0, "bytes": store.stats()["bytes"], "claims": 0, "expired_claims": 0}
    store.replace_all(iter([([(key, b"x") for key in keys], None)]))
    assert store.allocation_stats(b"") == (50, 50, 0, 0)
    tokens += [r.token for r in store.claim_random(b"", 10, LONG, b"a")]
    store.replace_all(iter([([(key, b"y") for key in keys], None)]))
    assert store.allocation_stats(b"") == (50, 50, 0, 0)
    store.close()
    store = _open(path)  # the counter is stored with the data
    tokens += [r.token for r in store.claim_random(b"", 5, LONG, b"a")]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens) == 65
    store.close()


def test_claims_are_refused_while_a_restore_runs(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    keys = _fill(store, 10)
    held = store.claim_keys([keys[0]], LONG, b"a")[0]
    assert held is not None
    refused = []

    def batches() -> Iterator[Batch]:
        yield [(keys[0], b"new")], None
        for call in (
            lambda: store.claim_keys([keys[1]], LONG, b"a"),
            lambda: store.claim_random(b"", 1, LONG, b"a"),
            lambda: store.release_claims([(keys[0], held.token)]),
            lambda: store.pop_random(b"", 1),
            lambda: store.set_many([(b"x", b"y")]),
            lambda: store.delete_prefix(b"k", 0),
        ):
            with pytest.raises(RestoreInProgressError):
                call()
            refused.append(True)
        assert store.get_many([keys[0]]) == [b"vk00000"]  # reads go on, on the live data

    assert store.replace_all(batches()) == 1
    assert len(refused) == 6
    assert store.stats()["claims"] == 0
    store.close()


# -- batches, counts, samples -------------------------------------------------------------


def test_batches_counts_and_scans(store: DiskBackend) -> None:
    _fill(store, 1_000, b"a:")
    _fill(store, 100, b"b:")
    store.set_many([(b"c", b"1"), (b"c", b"2")])
    assert store.get_many([b"c", b"a:00003", b"zz"]) == [b"2", b"va:00003", None]
    assert store.count(b"", None) == 1_101 and store.count(b"a:", b"a;") == 1_000 and store.count(b"b:0005", b"b:0006") == 10
    assert store.count(b"\xff", None) == 0
    assert store.delete_many([b"c", b"c", b"zz", b"b:00000"]) == 2
    assert store.scan_keys(b"b:00098", b"b;", 0, 0) == ([b"b:00098", b"b:00099"], False)
    assert store.scan_keys(b"a:", b"a;", 0, 2) == ([b"a:00000", b"a:00001"], True)
    assert store.delete_prefix(b"a:", 300) == (300, False)
    assert store.delete_prefix(b"a:", 0) == (700, True)
    assert store.delete_prefix(b"a:", 0) == (0, True)
    assert store.count(b"", None) == 99
    assert store.delete_prefix(b"b:", 99) == (99, True)
    assert store.size() == 0


def test_delete_prefix_runs_in_short_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _open(tmp_path / "s.lmdb")
    _fill(store, 50_000, b"p")
    _fill(store, 10, b"q")
    steps = []
    monkeypatch.setattr(disk_backend, "pause", lambda: steps.append(store.count(b"p", b"q")))
    assert store.delete_prefix(b"p", 0) == (50_000, True)
    assert len(steps) >= 2 and steps == sorted(steps, reverse=True)
    assert store.count(b"", None) == 10
    assert [store.random_key(b"") for _ in range(5)] != [None] * 5  # the index followed
    store.rebuild_key_list()
    assert store.count(b"q", b"r") == 10
    store.close()


@pytest.mark.parametrize("track_keys", [False, True], ids=["walk", "ranks"])
def test_counts_and_offsets_of_large_ranges_pause_in_one_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, track_keys: bool
) -> None:
    """Without the key index, a count or an offset walks the range, pausing between steps of 16,384 keys;
    with it, the rank index answers without a walk, so without a pause.

    A writer adds keys inside the range at each pause: the answer is still of the snapshot the call started with.
    """
    store = _open(tmp_path / "s.lmdb", track_keys=track_keys)
    _fill(store, 60_000, b"p")
    pauses: list[int] = []

    def writer_at_each_pause() -> None:
        pauses.append(len(pauses))
        store.set(b"p3%04d-new" % len(pauses), b"x")  # where the walk has not been yet

    monkeypatch.setattr(engine, "pause", writer_at_each_pause)
    walks = 2 if not track_keys else 0
    before = store.scan_keys(b"p00010", b"p59990", 0, 0)[0]  # no offset: one read, no pause
    assert len(before) == 59_980 and pauses == []
    assert store.count(b"p00010", b"p59990") == 59_980
    assert len(pauses) >= walks and (track_keys is False or pauses == [])
    before = store.scan_keys(b"p00010", b"p59990", 0, 0)[0]
    assert store.scan_keys(b"p00010", b"p59990", 50_000, 3) == (before[50_000:50_003], True)
    assert len(pauses) >= 2 * walks and (track_keys is False or pauses == [])
    before = store.scan_keys(b"p", None, 0, 0)[0]
    assert store.scan(b"p", None, len(before) - 1, 0) == ([(before[-1], b"v" + before[-1])], False)
    assert len(pauses) >= 3 * walks and (track_keys is False or pauses == [])
    assert store.scan_keys(b"p", b"q", len(before) + 10, 0) == ([], False)  # past the end
    store.close()


def test_random_keys(store: DiskBackend) -> None:
    keys = _fill(store, 500, b"r")
    _fill(store, 5, b"s")
    unique = store.random_keys(b"r", 100, True)
    assert len(set(unique)) == 100 and set(unique) <= set(keys)
    assert sorted(store.random_keys(b"s", 10, True)) == [b"s%05d" % i for i in range(5)]
    draws = store.random_keys(b"s", 300, False)
    assert len(draws) == 300 and set(draws) == {b"s%05d" % i for i in range(5)}
    assert len(store.random_keys(b"r", 2_000, False)) == 2_000
    assert store.random_keys(b"t", 5, False) == [] and store.random_keys(b"t", 5, True) == []
    store.claim_random(b"r", 500, LONG, b"x")  # leases do not matter to random_keys
    assert len(set(store.random_keys(b"r", 500, True))) == 500


def test_compare_and_detailed(store: DiskBackend) -> None:
    assert store.compare_and_swap_detailed(b"k", b"x", b"1") == (False, None)
    assert store.compare_and_swap_detailed(b"k", None, b"1") == (True, None)
    assert store.compare_and_swap_detailed(b"k", b"1", b"2") == (True, b"1")
    assert store.compare_and_delete_detailed(b"k", b"1") == (False, b"2")
    assert store.compare_and_delete_detailed(b"k", b"2") == (True, b"2")
    assert store.compare_and_delete_detailed(b"k", b"2") == (False, None)
    assert store.count(b"", None) == 0


def test_set_many_is_all_or_nothing_when_the_store_is_full(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb", map_size=1 << 16, max_map_size=1 << 20)
    store.set_many([(b"before", b"1")])
    big = [(b"k%06d" % i, b"x" * 1_000) for i in range(2_000)]  # 2 MB into a 1 MiB map
    with pytest.raises(DiskStoreFullError):
        store.set_many(big)
    assert store.count(b"", None) == 1 and store.get_many([b"before", b"k000000"]) == [b"1", None]
    store.set_many(big[:100])  # a batch that fits still goes in
    assert store.count(b"k", b"l") == 100
    store.close()


# -- the old file format -------------------------------------------------------------------


def test_a_store_made_before_claims_opens_and_claims(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    store = _open(path)
    keys = _fill(store, 20)
    store.claim_keys(keys[:2], LONG, b"a")
    store.close()
    # Make it look like a store of the previous version: no leases' database, no counter.
    env = lmdb.open(str(path), subdir=False, max_dbs=8, map_size=os.path.getsize(path))
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(layout.CLAIMS_DB, txn=txn), delete=True)
        txn.delete(layout.TOKEN_KEY)
    with env.begin() as txn:
        assert txn.get(layout.CLAIMS_DB) is None
    env.close()
    store = _open(path)
    assert store.count(b"", None) == 20 and store.stats()["claims"] == 0
    granted = store.claim_keys(keys[:3], LONG, b"a")
    assert [r.token for r in granted if r] == [1, 2, 3]
    assert store.delete(keys[0]) and store.stats()["claims"] == 2
    store.close()


# -- contention: processes and threads -----------------------------------------------------

PROCESSES = 4


def _claim_until_empty(store: DiskBackend, count: int, out: Path, ready: Path) -> None:
    got = []
    first = True
    while True:
        records = store.claim_random(b"pool:", count, LONG, b"%d" % os.getpid())
        if first:
            # Every process makes its first claim before any goes on: LMDB's writer mutex is not fair, and one
            # process can claim the whole pool (a few ms) while another waits for its first turn.
            first = False
            (ready / str(os.getpid())).touch()
            deadline = time.monotonic() + 60
            while len(os.listdir(ready)) < PROCESSES and time.monotonic() < deadline:
                time.sleep(0.001)
        if not records:
            break
        got += [(r.key.hex(), r.token) for r in records]
    out.write_text(json.dumps(got))


@pytest.mark.parametrize("count", [1, 7])
def test_processes_claiming_at_random_never_share_a_key(tmp_path: Path, count: int) -> None:
    store = _open(tmp_path / "s.lmdb")
    keys = _fill(store, 1_500, b"pool:")
    _fill(store, 100, b"else:")
    outs = [tmp_path / f"got{i}.json" for i in range(PROCESSES)]
    ready = tmp_path / "ready"
    ready.mkdir()
    wait_all_ok([fork_call(_claim_until_empty, store, count, out, ready) for out in outs])
    grants = [tuple(g) for out in outs for g in json.loads(out.read_text())]
    granted_keys = [bytes.fromhex(key) for key, _ in grants]
    assert sorted(granted_keys) == keys  # every key once, none twice
    tokens = [token for _, token in grants]
    assert len(set(tokens)) == len(tokens)
    assert all(json.loads(out.read_text()) for out in outs)  # every process got some
    assert store.allocation_stats(b"pool:") == (1_500, 0, 1_500, 0)
    store.close()


def _pop_until_empty(store: DiskBackend, out: Path) -> None:
    got = []
    while popped := store.pop_random(b"pool:", 3):
        got += [key.hex() for key, value in popped if value == b"v" + key]
    out.write_text(json.dumps(got))


def test_processes_popping_take_every_key_exactly_once(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    keys = _fill(store, 1_500, b"pool:")
    held = {r.key for r in store.claim_keys(keys[:100], LONG, b"h") if r}
    outs = [tmp_path / f"got{i}.json" for i in range(PROCESSES)]
    wait_all_ok([fork_call(_pop_until_empty, store, out) for out in outs])
    popped = [bytes.fromhex(key) for out in outs for key in json.loads(out.read_text())]
    assert sorted(popped) == keys[100:]
    assert sorted(store.scan_keys(b"pool:", b"pool;", 0, 0)[0]) == sorted(held)
    store.close()


def test_threads_claiming_at_random_never_share_a_key(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    keys = _fill(store, 1_000, b"pool:")
    results: list[list[bytes]] = [[] for _ in range(4)]

    def claim(mine: list[bytes]) -> None:
        while records := store.claim_random(b"pool:", 2, LONG, b"t"):
            mine += [r.key for r in records]

    threads = [threading.Thread(target=claim, args=(mine,)) for mine in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(key for mine in results for key in mine) == keys
    store.close()


def _claim_one(store: DiskBackend, key: bytes, ttl_ms: int, out: Path) -> None:
    (record,) = store.claim_keys([key], ttl_ms, b"child")
    assert record is not None
    out.write_text(json.dumps(record.token))


def _release(store: DiskBackend, key: bytes, token: int, out: Path) -> None:
    out.write_text(json.dumps(store.release_claims([(key, token)])))


def test_a_short_lease_taken_in_one_process_expires_for_the_others(tmp_path: Path) -> None:
    store = _open(tmp_path / "s.lmdb")
    _fill(store, 1)
    out = tmp_path / "out.json"
    wait_all_ok([fork_call(_claim_one, store, b"k00000", 300, out)])
    token = json.loads(out.read_text())
    assert store.claim_keys([b"k00000"], LONG, b"parent") == [None]
    assert store.allocation_stats(b"") == (1, 0, 1, 0)
    time.sleep(0.35)
    assert store.allocation_stats(b"") == (1, 1, 0, 1)
    assert store.stats()["expired_claims"] == 1
    wait_all_ok([fork_call(_release, store, b"k00000", token, out)])
    assert json.loads(out.read_text()) == [False]  # the holder came back too late
    mine = store.claim_keys([b"k00000"], LONG, b"parent")[0]
    assert mine is not None and mine.token > token
    wait_all_ok([fork_call(_release, store, b"k00000", mine.token, out)])
    assert json.loads(out.read_text()) == [True]  # a lease is (key, token), whoever holds it
    store.close()
