"""The lease (claim) contract, on every backend, through the front-end.

Leases expire by the backend's clock (the server's on redis), so expiry is
tested with real short leases, not a fake clock (the model test uses one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import gevent
import pytest

from locust_kv import KV, AllocationStats, Claim, ClaimBatch, Entry, open_kv
from locust_kv.errors import ClaimLostError, InvalidArgumentError, InvalidKeyError, ReadOnlyStoreError, StoreOpenError

from .disk_helpers import fork_call, wait_all_ok

SHORT = 0.05
"""A lease that has surely expired after ``EXPIRED`` seconds."""
EXPIRED = 0.25


def seed(kv: KV, n: int, prefix: str = "acct:") -> list[str]:
    keys = [f"{prefix}{i:04d}" for i in range(n)]
    kv.set_many({key: {"id": i} for i, key in enumerate(keys)})
    return keys


# -- claim_key ----------------------------------------------------------------


def test_claim_key_grants_a_lease_with_the_value_a_token_and_an_end(kv: KV) -> None:
    kv.set("acct:1", {"user": "alice"})
    before = time.time()
    claim = kv.claim_key("acct:1", ttl=10, owner="tester")
    assert isinstance(claim, Claim)
    assert claim.key == "acct:1"
    assert claim.value == {"user": "alice"}
    assert claim.owner == "tester"
    assert type(claim.token) is int and claim.token >= 1
    # The backend's clock (a server's on redis) may differ a little from ours.
    assert before + 9 < claim.expires_at < time.time() + 11


def test_claim_key_of_an_absent_or_held_key_is_none(kv: KV) -> None:
    assert kv.claim_key("nope", ttl=5) is None
    kv.set("acct:1", 1)
    assert kv.claim_key("acct:1", ttl=5) is not None
    assert kv.claim_key("acct:1", ttl=5) is None


def test_a_released_key_is_claimable_again_with_a_larger_token(kv: KV) -> None:
    kv.set("acct:1", 1)
    first = kv.claim_key("acct:1", ttl=5)
    assert first is not None
    kv.release_claim(first)
    second = kv.claim_key("acct:1", ttl=5)
    assert second is not None and second.token > first.token


def test_tokens_grow_with_every_claim_of_the_store(kv: KV) -> None:
    seed(kv, 20)
    tokens = []
    for _ in range(3):
        claims = kv.claim_random_many("acct:", count=20, ttl=5)
        tokens += [c.token for c in claims]
        kv.release_claims(claims)
    assert len(set(tokens)) == 60
    by_round = [tokens[i * 20 : (i + 1) * 20] for i in range(3)]
    assert max(by_round[0]) < min(by_round[1]) and max(by_round[1]) < min(by_round[2])


def test_leases_ignore_every_other_operation(kv: KV) -> None:
    kv.set("acct:1", 1)
    claim = kv.claim_key("acct:1", ttl=5)
    assert claim is not None
    assert kv.get("acct:1") == 1
    kv.set("acct:1", 2)  # the holder (or anyone) may write the entry; the lease stays
    assert kv.increment_by("acct:1", 1) == 3
    assert kv.claim_key("acct:1", ttl=5) is None
    assert kv.random_key("acct:") == "acct:1"
    assert kv.list("acct:") == [Entry("acct:1", 3)]
    assert kv.size() == 1 and kv.count("acct:") == 1
    kv.release_claim(claim)


# -- claim_random ---------------------------------------------------------------


def test_claim_random_hands_out_every_key_of_the_prefix_once_then_none(kv: KV) -> None:
    keys = seed(kv, 30)
    kv.set("other:1", 1)
    got = []
    for _ in range(30):
        claim = kv.claim_random("acct:", ttl=5)
        assert claim is not None
        got.append(claim.key)
    assert sorted(got) == keys
    assert kv.claim_random("acct:", ttl=5) is None
    assert kv.claim_random("missing:", ttl=5) is None
    other = kv.claim_random("", ttl=5)
    assert other is not None and other.key == "other:1"


def test_claim_random_many_grants_distinct_free_keys_up_to_count(kv: KV) -> None:
    keys = seed(kv, 10)
    held = kv.claim_keys(keys[:4], ttl=5)
    assert [c.key for c in held] == keys[:4]
    claims = kv.claim_random_many("acct:", count=4, ttl=5)
    assert len(claims) == 4 and len({c.key for c in claims}) == 4
    assert not {c.key for c in claims} & set(keys[:4])
    rest = kv.claim_random_many("acct:", count=100, ttl=5)
    assert len(rest) == 2
    assert kv.claim_random_many("acct:", count=5, ttl=5) == []


def test_claim_random_is_roughly_uniform_over_the_free_keys(kv: KV) -> None:
    keys = seed(kv, 8)
    kv.claim_keys(keys[:2], ttl=30)
    seen = dict.fromkeys(keys[2:], 0)
    for _ in range(1200):
        claim = kv.claim_random("acct:", ttl=30)
        assert claim is not None and claim.key in seen
        seen[claim.key] += 1
        kv.release_claim(claim)
    # 200 expected each; a fair draw stays within +-35% with overwhelming probability.
    assert all(130 < n < 270 for n in seen.values()), seen


def test_claim_keys_skips_absent_held_and_repeated_keys(kv: KV) -> None:
    kv.set_many({"a": 1, "b": 2, "c": 3})
    assert kv.claim_key("b", ttl=5) is not None
    claims = kv.claim_keys(["a", "b", "zz", "c", "a"], ttl=5)
    assert [c.key for c in claims] == ["a", "c"]
    assert [c.value for c in claims] == [1, 3]
    assert kv.claim_keys([], ttl=5) == []


# -- release / complete / renew -----------------------------------------------


def test_release_twice_is_claim_lost(kv: KV) -> None:
    kv.set("acct:1", 1)
    claim = kv.claim_key("acct:1", ttl=5)
    assert claim is not None
    kv.release_claim(claim)
    with pytest.raises(ClaimLostError) as info:
        kv.release_claim(claim)
    assert info.value.key == "acct:1" and info.value.operation == "release_claim"
    assert "acct:1" not in str(info.value)


def test_complete_with_delete_consumes_the_entry_and_without_keeps_it(kv: KV) -> None:
    kv.set_many({"a": 1, "b": 2})
    a, b = kv.claim_keys(["a", "b"], ttl=5)
    kv.complete_claim(a, delete=True)
    kv.complete_claim(b)
    assert not kv.exists("a")
    assert kv.get("b") == 2
    assert kv.claim_key("b", ttl=5) is not None
    with pytest.raises(ClaimLostError):
        kv.complete_claim(b, delete=True)
    assert kv.exists("b")  # a lost lease deletes nothing


def test_renew_moves_the_end_and_keeps_the_token(kv: KV) -> None:
    kv.set("a", 1)
    claim = kv.claim_key("a", ttl=1)
    assert claim is not None
    renewed = kv.renew_claim(claim, ttl=60)
    assert renewed.token == claim.token and renewed.key == "a"
    assert renewed.expires_at > claim.expires_at + 50
    kv.release_claim(renewed)
    with pytest.raises(ClaimLostError):
        kv.renew_claim(claim, ttl=5)


def test_batch_forms_report_done_and_lost(kv: KV) -> None:
    keys = seed(kv, 4)
    claims = kv.claim_keys(keys, ttl=5)
    kv.release_claim(claims[1])
    renewed = kv.renew_claims(claims, ttl=30)
    assert isinstance(renewed, ClaimBatch)
    assert [c.key for c in renewed.done] == [keys[0], keys[2], keys[3]]
    assert renewed.lost == [claims[1]]
    released = kv.release_claims([claims[0], claims[1]])
    assert released.done == [claims[0]] and released.lost == [claims[1]]
    completed = kv.complete_claims(claims[2:], delete=True)
    assert completed.done == claims[2:] and completed.lost == []
    assert kv.list_keys("acct:") == keys[:2]
    assert kv.release_claims([]) == ClaimBatch([], [])


# -- expiry -------------------------------------------------------------------


def test_an_expired_lease_is_free_and_its_old_holder_is_fenced_off(kv: KV) -> None:
    kv.set("acct:1", 1)
    old = kv.claim_key("acct:1", ttl=SHORT)
    assert old is not None
    time.sleep(EXPIRED)
    assert kv.allocation_stats("acct:") == AllocationStats(total=1, claimable=1, claimed=0, expired=1)
    new = kv.claim_key("acct:1", ttl=30)
    assert new is not None and new.token > old.token
    for act in (kv.release_claim, kv.complete_claim, lambda c: kv.renew_claim(c, 5)):
        with pytest.raises(ClaimLostError):
            act(old)
    assert kv.claim_key("acct:1", ttl=5) is None  # the new holder's lease is untouched
    kv.release_claim(new)


def test_an_expired_lease_cannot_be_renewed_even_before_anyone_else_claims(kv: KV) -> None:
    kv.set("a", 1)
    claim = kv.claim_key("a", ttl=SHORT)
    assert claim is not None
    time.sleep(EXPIRED)
    with pytest.raises(ClaimLostError):
        kv.renew_claim(claim, 30)


# -- removing the key ends its lease --------------------------------------------


@pytest.mark.parametrize(
    "remove",
    [
        lambda kv: kv.delete("acct:0000"),
        lambda kv: kv.delete_if_exists("acct:0000"),
        lambda kv: kv.compare_and_delete("acct:0000", {"id": 0}),
        lambda kv: kv.compare_and_delete_detailed("acct:0000", {"id": 0}),
        lambda kv: kv.delete_many(["acct:0000"]),
        lambda kv: kv.delete_prefix("acct:0"),
        lambda kv: kv.clear(),
    ],
    ids=["delete", "delete_if_exists", "compare_and_delete", "compare_and_delete_detailed", "delete_many", "delete_prefix", "clear"],
)
def test_removing_a_key_ends_its_lease(kv: KV, remove: Callable[[KV], object]) -> None:
    seed(kv, 1)
    claim = kv.claim_key("acct:0000", ttl=30)
    assert claim is not None
    remove(kv)
    assert not kv.exists("acct:0000")
    kv.set("acct:0000", {"id": 0})
    fresh = kv.claim_key("acct:0000", ttl=30)
    assert fresh is not None and fresh.token > claim.token
    with pytest.raises(ClaimLostError):
        kv.release_claim(claim)
    assert kv.stats().claims == 1


def test_complete_with_delete_of_one_lease_and_pop_leave_others_alone(kv: KV) -> None:
    keys = seed(kv, 3)
    a, b = kv.claim_keys(keys[:2], ttl=30)
    kv.complete_claim(a, delete=True)
    popped = kv.pop_random("acct:")
    assert popped == Entry(keys[2], {"id": 2})  # the only entry without a lease
    assert kv.pop_random("acct:") is None
    kv.release_claim(b)
    assert kv.pop_random("acct:") == Entry(keys[1], {"id": 1})


def test_restore_drops_every_lease_and_backups_hold_no_lease(kv: KV, tmp_path) -> None:
    keys = seed(kv, 5)
    claims = kv.claim_keys(keys, ttl=30)
    summary = kv.backup(str(tmp_path / "snap"))
    assert summary.total_entries == 5
    assert kv.restore(str(tmp_path / "snap")).total_entries == 5
    assert kv.allocation_stats("acct:") == AllocationStats(5, 5, 0, 0)
    assert kv.release_claims(claims).lost == claims
    assert len(kv.claim_random_many("acct:", count=10, ttl=5)) == 5


# -- pool health ---------------------------------------------------------------


def test_allocation_stats_counts_the_prefix_only(kv: KV) -> None:
    keys = seed(kv, 6)
    seed(kv, 3, prefix="other:")
    kv.claim_keys(keys[:2], ttl=30)
    kv.claim_key(keys[2], ttl=SHORT)
    kv.claim_key("other:0000", ttl=30)
    time.sleep(EXPIRED)
    assert kv.allocation_stats("acct:") == AllocationStats(total=6, claimable=4, claimed=2, expired=1)
    assert kv.allocation_stats("") == AllocationStats(total=9, claimable=6, claimed=3, expired=1)
    assert kv.allocation_stats("none:") == AllocationStats(0, 0, 0, 0)


def test_stats_describe_the_store(kv: KV) -> None:
    keys = seed(kv, 10)
    kv.claim_keys(keys[:3], ttl=30)
    stats = kv.stats()
    assert stats.keys == 10 and stats.claims == 3 and stats.expired_claims == 0
    assert stats.bytes > 0
    assert isinstance(stats.operations, dict)


# -- arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, 0.0, math.nan, math.inf, True, "5", None, 8 * 24 * 3600])
def test_bad_ttls_are_refused_before_the_store_is_touched(kv: KV, ttl: object) -> None:
    kv.set("a", 1)
    with pytest.raises(InvalidArgumentError):
        kv.claim_key("a", ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.claim_random("", ttl=ttl)  # type: ignore[arg-type]
    assert kv.allocation_stats().claimed == 0


def test_a_tiny_ttl_is_one_millisecond_not_zero(kv: KV) -> None:
    kv.set("a", 1)
    claim = kv.claim_key("a", ttl=1e-9)
    assert claim is not None


@pytest.mark.parametrize("count", [0, -1, 100_001, 1.5, True, "2"])
def test_bad_counts_are_refused(kv: KV, count: object) -> None:
    with pytest.raises(InvalidArgumentError):
        kv.claim_random_many("", count=count)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.pop_random_many("", count=count)  # type: ignore[arg-type]


def test_bad_owners_and_claims_are_refused(kv: KV) -> None:
    kv.set("a", 1)
    with pytest.raises(InvalidArgumentError):
        kv.claim_key("a", owner="x" * 257)
    with pytest.raises(InvalidArgumentError):
        kv.claim_key("a", owner=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.release_claim(("a", 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.release_claims("a")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        kv.release_claim(Claim("a", 1, 0, "", 0.0))
    with pytest.raises(InvalidKeyError):
        kv.claim_key("", ttl=5)
    assert kv.claim_key("a", owner="é" * 128) is not None  # 256 bytes


# -- contention -----------------------------------------------------------------------


def test_greenlets_never_hold_one_key_at_once(kv: KV) -> None:
    seed(kv, 12)
    holders: dict[str, int] = {}
    violations = []
    granted = []

    def user(n: int) -> None:
        for _ in range(30):
            claim = kv.claim_random("acct:", ttl=30)
            if claim is None:
                gevent.sleep(0)
                continue
            if claim.key in holders:
                violations.append((claim.key, holders[claim.key], n))
            holders[claim.key] = n
            granted.append(claim.token)
            gevent.sleep(0)
            del holders[claim.key]
            kv.release_claim(claim)

    gevent.joinall([gevent.spawn(user, n) for n in range(40)], raise_error=True)
    assert violations == []
    assert len(granted) > 100 and len(set(granted)) == len(granted)
    assert kv.allocation_stats("acct:").claimed == 0


def _claim_in_child(kv: KV, rounds: int, out: str) -> None:
    got = []
    for _ in range(rounds):
        claim = kv.claim_random("acct:", ttl=60)
        if claim is not None:
            got.append(f"{claim.key} {claim.token}")
    with open(out, "w") as f:
        f.write("\n".join(got))


def test_processes_never_get_one_key_twice(backend_name: str, kv: KV, tmp_path) -> None:
    """As with Locust's --processes: the handle is opened before the fork and used in the children."""
    if backend_name == "memory":
        pytest.skip("a memory store is private to its process")
    keys = seed(kv, 400)
    pids = [fork_call(_claim_in_child, kv, 150, str(tmp_path / f"out{n}")) for n in range(4)]
    wait_all_ok(pids)
    rows = [line.split() for n in range(4) for line in (tmp_path / f"out{n}").read_text().splitlines()]
    assert sorted(key for key, _ in rows) == keys  # 600 tries for 400 keys: every key once, none twice
    assert len({token for _, token in rows}) == 400
    assert kv.allocation_stats("acct:") == AllocationStats(400, 0, 400, 0)


# -- read-only handles --------------------------------------------------------------


def test_a_read_only_handle_reads_and_refuses_every_write(open_store: Callable[..., KV]) -> None:
    kv = open_store()
    seed(kv, 3)
    reader = open_store(read_only=True)
    assert reader.read_only and not kv.read_only
    assert reader.get("acct:0000") == {"id": 0}
    assert reader.count("acct:") == 3
    assert reader.allocation_stats("acct:").total == 3
    assert reader.stats().keys == 3
    writes: list[Callable[[], object]] = [
        lambda: reader.set("x", 1),
        lambda: reader.delete("acct:0000"),
        lambda: reader.increment_by("n", 1),
        lambda: reader.get_or_set("x", 1),
        lambda: reader.set_if_absent("x", 1),
        lambda: reader.swap("x", 1),
        lambda: reader.compare_and_swap("x", None, 1),
        lambda: reader.compare_and_delete("acct:0000", {"id": 0}),
        lambda: reader.set_many({"x": 1}),
        lambda: reader.delete_many(["acct:0000"]),
        lambda: reader.delete_prefix("acct:"),
        lambda: reader.pop_random("acct:"),
        lambda: reader.claim_key("acct:0000"),
        lambda: reader.claim_random("acct:"),
        lambda: reader.clear(),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyStoreError):
            write()
    assert kv.size() == 3 and kv.allocation_stats().claimed == 0


def test_a_read_only_disk_open_never_creates_the_store(tmp_path) -> None:
    path = tmp_path / "absent.lmdb"
    with pytest.raises(StoreOpenError):
        open_kv("disk", path=str(path), read_only=True)
    assert not path.exists()
