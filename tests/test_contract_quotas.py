"""Quotas (``max_keys``, ``max_bytes``): the contract every backend passes, and races of real processes.

A write that would pass the quota raises QuotaExceededError and changes
nothing; overwrites that do not grow the data, deletes, pops, claims and
completions always work; a restore past the quota is refused with the store
unchanged; ``stats()`` shows the usage against the limits. The races fork
real processes on one disk store and one redis namespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import InvalidOptionsError, QuotaExceededError

from .conftest import store_options
from .disk_helpers import fork_call, wait_all_ok


def _contents(kv: KV) -> tuple[list[tuple[str, Any]], int, int]:
    """Everything a refused write must leave as it was: the entries, the key count and the bytes measure."""
    stats = kv.stats()
    return [tuple(entry) for entry in kv.list()], stats.keys, stats.bytes


def _refused(kv: KV, call: Callable[[], object], what: str) -> QuotaExceededError:
    before = _contents(kv)
    with pytest.raises(QuotaExceededError) as caught:
        call()
    assert _contents(kv) == before, f"{what}: a refused write changed the store"
    return caught.value


@pytest.mark.parametrize(
    "options",
    [{"max_keys": -1}, {"max_keys": True}, {"max_keys": 1.5}, {"max_keys": "3"}, {"max_bytes": 2**53 + 1}, {"max_bytes": -5}],
)
def test_bad_quota_options_are_invalid_options(open_store: Callable[..., KV], options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOptionsError):
        open_store(**options)


def test_no_quota_is_none_or_zero_and_stats_show_the_limits(open_store: Callable[..., KV], tmp_path: Path) -> None:
    plain = open_store(max_keys=0, max_bytes=None)
    stats = plain.stats()
    assert (stats.max_keys, stats.max_bytes) == (None, None)
    limited = open_kv(**store_options(plain.backend, tmp_path, "limited"), max_keys=3, max_bytes=1 << 20)
    limited.set("a", 1)
    stats = limited.stats()
    assert (stats.keys, stats.max_keys, stats.max_bytes) == (1, 3, 1 << 20)
    assert 0 < stats.bytes <= 1 << 20
    assert limited.options["max_keys"] == 3 and limited.options["max_bytes"] == 1 << 20
    limited.close()


def test_every_write_of_a_new_key_at_max_keys_is_refused_and_changes_nothing(open_store: Callable[..., KV]) -> None:
    kv = open_store(max_keys=3)
    kv.set_many({"a": 1, "b": "two", "c": [3]})
    writes: dict[str, Callable[[], object]] = {
        "set": lambda: kv.set("new", 1),
        "set_many": lambda: kv.set_many({"a": 10, "new": 1}),
        "increment_by": lambda: kv.increment_by("new", 1),
        "get_or_set": lambda: kv.get_or_set("new", 1),
        "swap": lambda: kv.swap("new", 1),
        "compare_and_swap": lambda: kv.compare_and_swap("new", None, 1),
        "compare_and_swap_detailed": lambda: kv.compare_and_swap_detailed("new", None, 1),
        "set_if_absent": lambda: kv.set_if_absent("new", 1),
    }
    texts = set()
    for name, call in writes.items():
        error = _refused(kv, call, name)
        assert error.name == "QuotaExceededError" and error.group.value == "user error"
        assert error.operation == name and error.backend == kv.backend
        assert "new" not in str(error) and "max_keys=3" in str(error)
        texts.add(str(error))
    assert len(texts) == 1, "the text Locust groups failures by must not vary by operation or key"
    with pytest.raises(QuotaExceededError):
        kv.set_many([("x", 1), ("y", 2)])  # every item new: none written
    assert kv.size() == 3 and not kv.exists("x")


def test_overwrites_deletes_pops_and_claims_work_at_max_keys(open_store: Callable[..., KV]) -> None:
    kv = open_store(max_keys=4)
    kv.set_many({"a": 1, "b": 2, "job:1": "x", "job:2": "y"})
    assert kv.set("a", 5) == 5 and kv.increment_by("a", 1) == 6
    assert kv.swap("b", 3) == (2, True) and kv.compare_and_swap("b", 3, 4)
    assert kv.get_or_set("a", 0) == (6, True) and not kv.set_if_absent("a", 0)
    assert kv.set_many({"a": 7, "b": 8}) == 2
    claim = kv.claim_key("job:1", ttl=60)
    assert claim is not None and kv.renew_claim(claim, 60).key == "job:1"
    other = kv.claim_random("job:", ttl=60)
    assert other is not None and other.key == "job:2"
    assert kv.allocation_stats("job:").claimed == 2
    kv.complete_claim(claim, delete=True)  # frees a key
    assert kv.size() == 3 and kv.set("c", 1) == 1  # room again
    _refused(kv, lambda: kv.set("d", 1), "set")
    kv.release_claim(other)
    assert kv.pop_random("job:") == ("job:2", "y")
    assert kv.delete("a") and kv.delete_if_exists("b") and kv.compare_and_delete("c", 1)
    kv.set_many({"p:1": 1, "p:2": 2, "p:3": 3, "q": 4})
    assert kv.delete_many(["q", "q"]) == 1
    assert kv.delete_prefix("p:") == (3, True)
    kv.set_many({"a": 1, "b": 2, "c": 3, "d": 4})
    assert kv.clear() and kv.size() == 0


def _fill_until_refused(kv: KV, value: str, limit: int = 2_000) -> int:
    for n in range(limit):
        try:
            kv.set(f"k{n:05d}", value)
        except QuotaExceededError:
            return n
    raise AssertionError("the quota never refused a write")


def test_max_bytes_refuses_growth_and_keeps_overwrites_and_deletes(open_store: Callable[..., KV]) -> None:
    """Portable over the measures: key+value bytes (memory, redis) and the entries' pages (disk)."""
    max_bytes = 16 * 4096
    kv = open_store(max_bytes=max_bytes, serialization="string")
    value = "v" * 500
    stored = _fill_until_refused(kv, value)
    assert stored > 0 and not kv.exists(f"k{stored:05d}")
    stats = kv.stats()
    assert stats.keys == stored and stats.bytes <= max_bytes and stats.max_bytes == max_bytes
    _refused(kv, lambda: kv.set(f"k{stored:05d}", value), "set at the limit")
    assert kv.set("k00000", "w" * 500)  # an overwrite that does not grow the data
    _refused(kv, lambda: kv.set("k00001", "g" * (2 * max_bytes)), "an overwrite growing past max_bytes")
    _refused(kv, lambda: kv.set_many({"k00002": "x", "zz": "y" * max_bytes}), "set_many growing past max_bytes")
    assert kv.get("k00001") == value
    kv.delete_prefix("k000")  # 100 keys
    assert kv.set("fresh", value) == value
    assert kv.stats().bytes <= max_bytes


def test_bytes_is_key_plus_value_bytes_and_stays_exact(open_store: Callable[..., KV], backend_name: str) -> None:
    """Memory and redis measure exactly what is stored; every kind of write and removal keeps it exact."""
    if backend_name == "disk":
        pytest.skip("disk measures the pages of the entries' database (docs/quotas.md)")
    kv = open_store(serialization="string")

    def exact() -> None:
        assert kv.stats().bytes == sum(len(k.encode()) + len(v.encode()) for k, v in kv.list())

    kv.set("a", "1234")
    kv.set("a", "12")
    kv.set("é", "")
    kv.increment_by("n", 99)
    kv.increment_by("n", 1)
    kv.get_or_set("g", "gg")
    kv.swap("s", "sss")
    kv.swap("s", "s")
    kv.compare_and_swap("c", None, "c1")
    kv.compare_and_swap("c", "c1", "c22")
    kv.set_many([("m1", "1"), ("m2", "22"), ("m1", "111")])
    exact()
    kv.delete("a")
    kv.compare_and_delete("c", "c22")
    kv.delete_many(["m1", "m1", "nope"])
    exact()
    kv.set_many({f"p:{i}": "v" * i for i in range(30)})
    kv.delete_prefix("p:", limit=10)
    kv.pop_random_many("p:", count=5)
    claim = kv.claim_random("p:", ttl=60)
    assert claim is not None
    kv.complete_claim(claim, delete=True)
    exact()
    kv.clear()
    assert kv.stats().bytes == 0
    kv.set("after-clear", "x")
    exact()


def test_restore_past_the_quota_is_refused_with_the_store_unchanged(
    open_store: Callable[..., KV], backend_name: str, tmp_path: Path
) -> None:
    source = open_kv(**store_options(backend_name, tmp_path, "source"))
    source.set_many({f"s{i}": "x" * 1_000 for i in range(10)})
    snapshot = tmp_path / "ten.snapshot"
    source.backup(str(snapshot))
    source.close()
    kv = open_store(max_keys=5)
    kv.set_many({"mine": 1, "yours": 2})
    error = _refused(kv, lambda: kv.restore(str(snapshot)), "restore past max_keys")
    assert "max_keys=5" in error.message
    roomy = open_kv(**store_options(backend_name, tmp_path, "bytes"), max_bytes=8_192)  # two disk pages
    roomy.set("mine", 1)
    _refused(roomy, lambda: roomy.restore(str(snapshot)), "restore past max_bytes")
    # The backend checks the loaded data too, whatever the source (a pipe's header cannot be read twice).
    rows = [(f"r{i}".encode(), b"1") for i in range(6)]
    _refused(kv, lambda: kv._store.backend.replace_all(iter([(rows, None)])), "replace_all past max_keys")
    fits = open_kv(**store_options(backend_name, tmp_path, "fits"), max_keys=10)
    assert fits.restore(str(snapshot)).total_entries == 10 and fits.size() == 10
    _refused(fits, lambda: fits.set("one-more", 1), "set after a restore to the limit")
    fits.close()
    roomy.close()


def test_a_handle_without_a_quota_is_not_limited_by_another_handles(open_store: Callable[..., KV], tmp_path: Path) -> None:
    """Each handle enforces the quota it was opened with; the limit is not stored with the data."""
    kv = open_store(max_keys=2)
    kv.set_many({"a": 1, "b": 2})
    _refused(kv, lambda: kv.set("c", 3), "set")
    if kv.backend != "memory":  # memory stores live in one process: reopening with other options conflicts
        kv.close()
        free = open_kv(**store_options(kv.backend, tmp_path))
        assert free.set("c", 3) == 3 and free.size() == 3
        free.close()


# -- real contention ----------------------------------------------------------------

PROCESSES = 4
MAX_KEYS = 150


def _race_for_keys(kv: KV, writer: int, out: Path) -> None:
    stored = refused = 0
    for n in range(100):
        try:
            if n % 2:
                kv.set(f"w{writer}:{n}", n)
            else:
                kv.increment_by(f"w{writer}:{n}", 1)
            stored += 1
        except QuotaExceededError:
            refused += 1
    out.write_text(json.dumps([stored, refused]))


@pytest.mark.parametrize("backend", ["disk", "redis"])
def test_processes_racing_past_max_keys_end_with_exactly_max_keys(tmp_path: Path, backend: str) -> None:
    """4 processes x 100 new keys against max_keys=150: exactly 150 stored; every other write refused, by name."""
    kv = open_kv(**store_options(backend, tmp_path), max_keys=MAX_KEYS)
    outs = [tmp_path / f"writer-{w}.json" for w in range(PROCESSES)]
    wait_all_ok([fork_call(_race_for_keys, kv, w, out) for w, out in enumerate(outs)])
    results = [json.loads(out.read_text()) for out in outs]
    assert sum(stored for stored, _ in results) == MAX_KEYS == kv.size() == kv.stats().keys
    assert sum(refused for _, refused in results) == PROCESSES * 100 - MAX_KEYS
    kv.close()


def test_a_redis_namespace_that_predates_the_byte_counter_gets_it_computed_once(tmp_path: Path) -> None:
    """Writers leave an absent counter absent; the first quota check (or stats) counts the data once, then all keep it."""
    import redis

    options = store_options("redis", tmp_path)
    kv = open_kv(**options, serialization="string")
    kv.set_many({f"old:{i}": "v" * i for i in range(50)})
    client = redis.Redis.from_url(options["url"])
    counter = f"lkv:{{{options['namespace']}}}:bytes"
    client.delete(counter)  # as a namespace written before the counter existed
    kv.set("old:0", "changed")  # a writer without a quota: the counter stays absent
    assert client.exists(counter) == 0
    exact = sum(len(k.encode()) + len(v.encode()) for k, v in kv.list())
    kv.close()
    quota = open_kv(**options, serialization="string", max_bytes=exact + 10)
    with pytest.raises(QuotaExceededError):
        quota.set("new", "x" * 20)  # counts the data once: exact + 23 > exact + 10
    assert int(client.get(counter)) == exact
    quota.set("n", "x")  # exact + 2: fits, and the counter follows
    assert quota.stats().bytes == int(client.get(counter)) == exact + 2
    quota.close()
    client.close()
