"""Random sequences of every operation, compared step by step with a plain-dict model.

The model keeps each value's serialized bytes (as the json serialization
writes them), so comparisons follow the store's rule: values compare by their
serialized form.

Expiring keys are modelled as each key's expiry in milliseconds: on a
backend with its own clock (memory, disk) keys expire when the machine moves
its fake clock past their expiry, and the model then forgets them (the store
must treat them as absent for every operation, purged or not); on a server
clock (redis) lives are long, so nothing expires during a run, and ``ttl``
is checked against the life given.

Leases are modelled too: each key's lease record ``(token, expires_ms)``,
kept until it is released, completed, taken over or its key removed (an
expired record counts in ``allocation_stats().expired``). On a backend with
its own clock (memory, disk) the machine replaces it with a fake one and
moves time itself; on one with a server's clock (redis) leases are long and
never expire during a run.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from locust_kv import (
    AllocationStats,
    Claim,
    CompareAndDeleteResult,
    CompareAndSwapResult,
    DeletePrefixResult,
    Entry,
    KeyScanPage,
    Lookup,
    open_kv,
)
from locust_kv.errors import ClaimLostError, KeyNotFoundError, ValueParseError

from .conftest import BACKENDS, store_options

KEYS = st.text(alphabet="ab:é", min_size=1, max_size=4)
PREFIXES = st.text(alphabet="ab:é", max_size=2)
BOUNDS = st.none() | st.text(alphabet="ab:é", min_size=1, max_size=3)
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
DELTAS = st.integers(-5, 5) | st.integers(-(2**64), 2**64)
COUNTER_TEXT = re.compile(rb'^"?(-?[0-9]+)"?$')
KEY_LISTS = st.lists(KEYS, max_size=5)
TTLS = st.sampled_from([0.001, 0.002, 0.007, 0.05]) | st.integers(1, 4000).map(lambda ms: ms / 1000)
LIVES = st.none() | st.sampled_from([0.001, 0.002, 0.05]) | st.integers(1, 4000).map(lambda ms: ms / 1000)
"""A key's ttl: None for none."""
OWNERS = st.sampled_from(["", "user-1", "é"])
COUNTS = st.integers(1, 5)
START_MS = 1_700_000_000_000
LONG_MS = 3_600_000
"""Added to every lease on a server-clock backend, so that none expires during a run."""


def dump(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class StoreMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="locust-kv-model-"))
        self.kv = open_kv(**store_options(self.backend, self.tmp))
        self.kv.clear()
        self.model: dict[str, bytes] = {}
        backend = self.kv._backend
        self.fake_clock = not backend.server_clock
        self.now = START_MS
        if self.fake_clock:
            backend.clock = lambda: self.now
        self.leases: dict[str, tuple[int, int]] = {}  # key -> (token, expires_ms), live or expired
        self.expires: dict[str, int] = {}  # key -> when it expires (ms; on a server clock: the life asked for)
        self.last_token = 0
        self.refs: list[Claim] = []  # claims handed out, most of them stale by now

    def teardown(self) -> None:
        self.kv.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def expect(self, key: str) -> Any:
        return orjson.loads(self.model[key])

    # -- the lease model ----------------------------------------------------------

    def ttl_ms(self, ttl: float) -> int:
        """The lease's length the store grants for ``ttl``: milliseconds rounded up, as the front-end converts."""
        ms = max(1, math.ceil(ttl * 1000))
        return ms if self.fake_clock else max(1, math.ceil(self.ttl_of(ttl) * 1000))

    def ttl_of(self, ttl: float) -> float:
        """The ttl to pass: on a server clock, long enough never to expire."""
        return ttl if self.fake_clock else ttl + LONG_MS / 1000

    def live(self, key: str) -> bool:
        lease = self.leases.get(key)
        return lease is not None and (not self.fake_clock or lease[1] > self.now)

    def holds(self, claim: Claim) -> bool:
        return self.live(claim.key) and self.leases[claim.key][0] == claim.token

    def claimable(self, prefix: str) -> set[str]:
        return {k for k in self.model if k.startswith(prefix) and not self.live(k)}

    def remove(self, key: str) -> None:
        """A key removed by any operation (or expired): its lease and its expiry go with it."""
        self.model.pop(key, None)
        self.leases.pop(key, None)
        self.expires.pop(key, None)

    def life(self, ttl: float | None) -> float | None:
        """The ttl to pass for a key: on a server clock, long enough never to expire."""
        return None if ttl is None else self.ttl_of(ttl)

    def stored(self, key: str, value: bytes, ttl: float | None) -> None:
        """A write that replaces the expiry (set, swap, set_many, a successful compare_and_swap)."""
        self.model[key] = value
        self.expire_in(key, ttl)

    def expire_in(self, key: str, ttl: float | None) -> None:
        if ttl is None:
            self.expires.pop(key, None)
        else:
            self.expires[key] = self.now + self.ttl_ms(ttl) if self.fake_clock else self.ttl_ms(ttl)

    def granted(self, claims: list[Claim], ttl_ms: int, owner: str) -> None:
        """Check freshly granted claims and record them (in any order; tokens new and distinct)."""
        tokens = [c.token for c in claims]
        assert len(set(tokens)) == len(tokens) and all(t > self.last_token for t in tokens)
        for c in claims:
            assert isinstance(c, Claim) and c.owner == owner
            assert c.value == self.expect(c.key)
            assert not self.live(c.key)
            if self.fake_clock:
                assert c.expires_at == (self.now + ttl_ms) / 1000
            self.leases[c.key] = (c.token, round(c.expires_at * 1000))
        self.last_token = max(tokens, default=self.last_token)
        self.refs = (self.refs + claims)[-12:]

    def draw_refs(self, data: st.DataObject, max_size: int = 4) -> list[Claim]:
        forged = Claim(data.draw(KEYS), None, self.last_token + 1, "", 0.0)  # a token never issued
        return data.draw(st.lists(st.sampled_from([*self.refs, forged]), min_size=1, max_size=max_size))

    @rule(key=KEYS, value=VALUES, ttl=LIVES)
    def set(self, key: str, value: Any, ttl: float | None) -> None:
        assert self.kv.set(key, value, ttl=self.life(ttl)) == value
        self.stored(key, dump(value), ttl)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.kv.get(key) == self.expect(key)
        else:
            with pytest.raises(KeyNotFoundError):
                self.kv.get(key)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        assert self.kv.delete(key) is True
        self.remove(key)

    @rule(key=KEYS)
    def exists(self, key: str) -> None:
        assert self.kv.exists(key) is (key in self.model)

    @rule(key=KEYS, delta=DELTAS, ttl=LIVES)
    def increment_by(self, key: str, delta: int, ttl: float | None) -> None:
        stored = self.model.get(key)
        match = COUNTER_TEXT.match(stored) if stored is not None else None
        if stored is not None and (match is None or stored.count(b'"') == 1):
            with pytest.raises(ValueParseError):
                self.kv.increment_by(key, delta, ttl=self.life(ttl))
            return
        result = (int(match.group(1)) if match else 0) + delta
        if not -(2**63) <= result < 2**63:
            with pytest.raises(ValueParseError):
                self.kv.increment_by(key, delta, ttl=self.life(ttl))
            return
        assert self.kv.increment_by(key, delta, ttl=self.life(ttl)) == result
        if stored is None:  # created: the ttl applies; a live counter keeps its expiry
            self.expire_in(key, ttl)
        self.model[key] = b"%d" % result

    @rule(key=KEYS, value=VALUES, ttl=LIVES)
    def get_or_set(self, key: str, value: Any, ttl: float | None) -> None:
        result = self.kv.get_or_set(key, value, ttl=self.life(ttl))
        if key in self.model:
            assert result == (self.expect(key), True)
        else:
            assert result == (value, False)
            self.stored(key, dump(value), ttl)

    @rule(key=KEYS, value=VALUES, ttl=LIVES)
    def swap(self, key: str, value: Any, ttl: float | None) -> None:
        previous = self.expect(key) if key in self.model else None
        assert self.kv.swap(key, value, ttl=self.life(ttl)) == (previous, key in self.model)
        self.stored(key, dump(value), ttl)

    @rule(key=KEYS, new=VALUES, data=st.data(), ttl=LIVES)
    def compare_and_swap(self, key: str, new: Any, data: st.DataObject, ttl: float | None) -> None:
        old = data.draw(st.sampled_from([None, self.expect(key)]) if key in self.model else st.none() | VALUES)
        expected = self.model.get(key) == (None if old is None else dump(old))
        assert self.kv.compare_and_swap(key, old, new, ttl=self.life(ttl)) is expected
        if expected:
            self.stored(key, dump(new), ttl)

    @rule(key=KEYS)
    def delete_if_exists(self, key: str) -> None:
        assert self.kv.delete_if_exists(key) is (key in self.model)
        self.remove(key)

    @rule(key=KEYS, data=st.data())
    def compare_and_delete(self, key: str, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from([self.expect(key), "other"]) if key in self.model else VALUES)
        expected = self.model.get(key) == dump(old)
        assert self.kv.compare_and_delete(key, old) is expected
        if expected:
            self.remove(key)

    @precondition(lambda self: len(self.model) > 3)
    @rule()
    def clear(self) -> None:
        assert self.kv.clear() is True
        self.model.clear()
        self.leases.clear()
        self.expires.clear()

    @rule(prefix=PREFIXES, limit=st.integers(-1, 4))
    def scan_all_pages(self, prefix: str, limit: int) -> None:
        expected = sorted((k for k in self.model if k.startswith(prefix)), key=str.encode)
        seen: list[Entry] = []
        cursor = ""
        while True:
            page = self.kv.scan(prefix=prefix, limit=limit, cursor=cursor)
            if limit > 0:
                assert len(page.entries) <= limit
            seen.extend(page.entries)
            if page.done:
                assert page.cursor == ""
                break
            cursor = page.cursor
        assert seen == [Entry(k, self.expect(k)) for k in expected]

    @rule(prefix=PREFIXES, limit=st.integers(-1, 4))
    def list(self, prefix: str, limit: int) -> None:
        expected = sorted((k for k in self.model if k.startswith(prefix)), key=str.encode)
        if limit > 0:
            expected = expected[:limit]
        assert self.kv.list(prefix=prefix, limit=limit) == [Entry(k, self.expect(k)) for k in expected]

    @rule(prefix=PREFIXES)
    def random_key(self, prefix: str) -> None:
        matching = {k for k in self.model if k.startswith(prefix)}
        key = self.kv.random_key(prefix=prefix)
        assert key in matching if matching else key == ""

    @rule()
    def rebuild_key_list(self) -> None:
        assert self.kv.rebuild_key_list() is True

    # -- more atomic operations, batches, prefixes -----------------------------------

    @rule(key=KEYS, value=VALUES, ttl=LIVES)
    def set_if_absent(self, key: str, value: Any, ttl: float | None) -> None:
        assert self.kv.set_if_absent(key, value, ttl=self.life(ttl)) is (key not in self.model)
        if key not in self.model:
            self.stored(key, dump(value), ttl)

    @rule(key=KEYS, new=VALUES, data=st.data())
    def compare_and_swap_detailed(self, key: str, new: Any, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from([None, self.expect(key)]) if key in self.model else st.none() | VALUES)
        existed = key in self.model
        if self.model.get(key) == (None if old is None else dump(old)):
            assert self.kv.compare_and_swap_detailed(key, old, new) == CompareAndSwapResult(True, "swapped", existed, None)
            self.stored(key, dump(new), None)
        else:
            current = self.expect(key) if existed else None
            assert self.kv.compare_and_swap_detailed(key, old, new) == CompareAndSwapResult(False, "mismatch", existed, current)

    @rule(key=KEYS, data=st.data())
    def compare_and_delete_detailed(self, key: str, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from([self.expect(key), "other"]) if key in self.model else VALUES)
        existed = key in self.model
        if self.model.get(key) == dump(old):
            assert self.kv.compare_and_delete_detailed(key, old) == CompareAndDeleteResult(True, "deleted", True, None)
            self.remove(key)
        else:
            current = self.expect(key) if existed else None
            assert self.kv.compare_and_delete_detailed(key, old) == CompareAndDeleteResult(False, "mismatch", existed, current)

    @rule(keys=KEY_LISTS)
    def get_many(self, keys: list[str]) -> None:
        expected = [Lookup(k, self.expect(k), True) if k in self.model else Lookup(k, None, False) for k in keys]
        assert self.kv.get_many(keys) == expected

    @rule(items=st.lists(st.tuples(KEYS, VALUES), max_size=5), ttl=LIVES)
    def set_many(self, items: list[tuple[str, Any]], ttl: float | None) -> None:
        assert self.kv.set_many(items, ttl=self.life(ttl)) == len(items)
        for key, value in items:
            self.stored(key, dump(value), ttl)

    # -- expiring keys -----------------------------------------------------------------

    @rule(key=KEYS, ttl=TTLS)
    def expire(self, key: str, ttl: float) -> None:
        assert self.kv.expire(key, self.ttl_of(ttl)) is (key in self.model)
        if key in self.model:
            self.expire_in(key, ttl)

    @rule(key=KEYS)
    def persist(self, key: str) -> None:
        assert self.kv.persist(key) is (key in self.expires)
        self.expires.pop(key, None)

    @rule(key=KEYS)
    def ttl(self, key: str) -> None:
        if key not in self.model:
            with pytest.raises(KeyNotFoundError):
                self.kv.ttl(key)
            return
        left = self.kv.ttl(key)
        if key not in self.expires:
            assert left is None
        elif self.fake_clock:
            assert left == (self.expires[key] - self.now) / 1000
        else:
            assert left is not None and 0 < left <= self.expires[key] / 1000

    @rule(limit=st.integers(-1, 3))
    def purge_expired(self, limit: int) -> None:
        removed = self.kv.purge_expired(limit)  # what writes already shed is not counted again
        assert 0 <= removed and (limit <= 0 or removed <= limit)
        if limit <= 0:
            assert self.kv.purge_expired() == 0
            if self.backend == "memory":
                assert self.kv.stats().bytes == sum(len(k.encode()) + len(v) for k, v in self.model.items())

    @rule(keys=KEY_LISTS)
    def delete_many(self, keys: list[str]) -> None:
        assert self.kv.delete_many(keys) == len({k for k in keys if k in self.model})
        for key in keys:
            self.remove(key)

    @rule(prefix=st.text(alphabet="ab:é", min_size=1, max_size=2), limit=st.integers(-1, 3))
    def delete_prefix(self, prefix: str, limit: int) -> None:
        matching = sorted((k for k in self.model if k.startswith(prefix)), key=str.encode)
        gone = matching[:limit] if limit > 0 else matching
        assert self.kv.delete_prefix(prefix, limit) == DeletePrefixResult(len(gone), len(gone) == len(matching))
        for key in gone:
            self.remove(key)

    @rule(prefix=PREFIXES)
    def count(self, prefix: str) -> None:
        assert self.kv.count(prefix) == sum(1 for k in self.model if k.startswith(prefix))

    @rule(prefix=PREFIXES, limit=st.integers(-1, 4))
    def scan_keys_all_pages(self, prefix: str, limit: int) -> None:
        expected = sorted((k for k in self.model if k.startswith(prefix)), key=str.encode)
        seen: list[str] = []
        cursor = ""
        while True:
            page = self.kv.scan_keys(prefix=prefix, limit=limit, cursor=cursor)
            assert isinstance(page, KeyScanPage)
            if limit > 0:
                assert len(page.keys) <= limit
            seen.extend(page.keys)
            if page.done:
                break
            cursor = page.cursor
        assert seen == expected
        assert self.kv.list_keys(prefix, limit) == (expected[:limit] if limit > 0 else expected)

    @rule(prefix=PREFIXES, start=BOUNDS, end=BOUNDS, offset=st.integers(0, 3), limit=st.integers(-1, 4))
    def scan_range(self, prefix: str, start: str | None, end: str | None, offset: int, limit: int) -> None:
        low = None if start is None else start.encode()
        high = None if end is None else end.encode()
        expected = [
            k
            for k in sorted(self.model, key=str.encode)
            if k.startswith(prefix) and (low is None or k.encode() >= low) and (high is None or k.encode() < high)
        ]
        assert self.kv.count(prefix, start=start, end=end) == len(expected)
        seen: list[Entry] = []
        page = self.kv.scan(prefix, limit, start=start, end=end, offset=offset)
        while True:
            if limit > 0:
                assert len(page.entries) <= limit
            seen.extend(page.entries)
            if page.done:
                break
            page = self.kv.scan(prefix, limit, page.cursor, start=start, end=end)
        assert seen == [Entry(k, self.expect(k)) for k in expected[offset:]]

    @rule(prefix=PREFIXES, count=COUNTS, unique=st.booleans())
    def random_keys(self, prefix: str, count: int, unique: bool) -> None:
        matching = {k for k in self.model if k.startswith(prefix)}
        keys = self.kv.random_keys(prefix, count, unique)
        assert set(keys) <= matching
        if unique:
            assert len(keys) == len(set(keys)) == min(count, len(matching))
        else:
            assert len(keys) == (count if matching else 0)

    @rule(prefix=PREFIXES)
    def pop_random(self, prefix: str) -> None:
        free = self.claimable(prefix)
        entry = self.kv.pop_random(prefix)
        if not free:
            assert entry is None
            return
        assert entry is not None and entry.key in free and entry.value == self.expect(entry.key)
        self.remove(entry.key)

    @rule(prefix=PREFIXES, count=COUNTS)
    def pop_random_many(self, prefix: str, count: int) -> None:
        free = self.claimable(prefix)
        entries = self.kv.pop_random_many(prefix, count)
        keys = [e.key for e in entries]
        assert len(keys) == len(set(keys)) == min(count, len(free)) and set(keys) <= free
        for entry in entries:
            assert entry.value == self.expect(entry.key)
            self.remove(entry.key)

    # -- leases ----------------------------------------------------------------------

    @precondition(lambda self: self.fake_clock)
    @rule(ms=st.sampled_from([0, 1]) | st.integers(0, 3000))
    def advance_the_clock(self, ms: int) -> None:
        self.now += ms
        for key in [k for k, end in self.expires.items() if end <= self.now]:
            self.remove(key)  # absent for every operation from now on, purged or not

    @rule(key=KEYS, ttl=TTLS, owner=OWNERS)
    def claim_key(self, key: str, ttl: float, owner: str) -> None:
        claim = self.kv.claim_key(key, ttl=self.ttl_of(ttl), owner=owner)
        if key not in self.model or self.live(key):
            assert claim is None
            return
        assert claim is not None and claim.key == key
        self.granted([claim], self.ttl_ms(ttl), owner)

    @rule(keys=KEY_LISTS, ttl=TTLS, owner=OWNERS)
    def claim_keys(self, keys: list[str], ttl: float, owner: str) -> None:
        expected: list[str] = []
        for key in keys:
            if key in self.model and not self.live(key) and key not in expected:
                expected.append(key)
        claims = self.kv.claim_keys(keys, ttl=self.ttl_of(ttl), owner=owner)
        assert [c.key for c in claims] == expected
        self.granted(claims, self.ttl_ms(ttl), owner)

    @rule(prefix=PREFIXES, ttl=TTLS, owner=OWNERS)
    def claim_random(self, prefix: str, ttl: float, owner: str) -> None:
        free = self.claimable(prefix)
        claim = self.kv.claim_random(prefix, ttl=self.ttl_of(ttl), owner=owner)
        if not free:
            assert claim is None
            return
        assert claim is not None and claim.key in free
        self.granted([claim], self.ttl_ms(ttl), owner)

    @rule(prefix=PREFIXES, count=COUNTS, ttl=TTLS, owner=OWNERS)
    def claim_random_many(self, prefix: str, count: int, ttl: float, owner: str) -> None:
        free = self.claimable(prefix)
        claims = self.kv.claim_random_many(prefix, count=count, ttl=self.ttl_of(ttl), owner=owner)
        keys = [c.key for c in claims]
        assert len(keys) == len(set(keys)) == min(count, len(free)) and set(keys) <= free
        self.granted(claims, self.ttl_ms(ttl), owner)

    def split(self, refs: list[Claim]) -> tuple[list[Claim], list[Claim]]:
        """The refs that end a live lease (the first of each) and those lost; ends those leases in the model."""
        done, lost = [], []
        for ref in refs:
            if self.holds(ref):
                done.append(ref)
                del self.leases[ref.key]
            else:
                lost.append(ref)
        return done, lost

    @rule(data=st.data())
    def release_claim(self, data: st.DataObject) -> None:
        (ref,) = self.draw_refs(data, max_size=1)
        if self.holds(ref):
            assert self.kv.release_claim(ref) is None
            del self.leases[ref.key]
        else:
            with pytest.raises(ClaimLostError):
                self.kv.release_claim(ref)

    @rule(data=st.data())
    def release_claims(self, data: st.DataObject) -> None:
        refs = self.draw_refs(data)
        result = self.kv.release_claims(refs)
        assert (result.done, result.lost) == self.split(refs)

    @rule(data=st.data(), delete=st.booleans())
    def complete_claim(self, data: st.DataObject, delete: bool) -> None:
        (ref,) = self.draw_refs(data, max_size=1)
        if self.holds(ref):
            assert self.kv.complete_claim(ref, delete=delete) is None
            del self.leases[ref.key]
            if delete:
                self.remove(ref.key)
        else:
            with pytest.raises(ClaimLostError):
                self.kv.complete_claim(ref, delete=delete)

    @rule(data=st.data(), delete=st.booleans())
    def complete_claims(self, data: st.DataObject, delete: bool) -> None:
        refs = self.draw_refs(data)
        result = self.kv.complete_claims(refs, delete=delete)
        done, lost = self.split(refs)
        assert (result.done, result.lost) == (done, lost)
        if delete:
            for ref in done:
                self.remove(ref.key)

    def renewed(self, ref: Claim, claim: Claim, ttl: float) -> None:
        assert claim == ref._replace(expires_at=claim.expires_at)
        if self.fake_clock:
            assert claim.expires_at == (self.now + self.ttl_ms(ttl)) / 1000
        self.leases[ref.key] = (ref.token, round(claim.expires_at * 1000))

    @rule(data=st.data(), ttl=TTLS)
    def renew_claim(self, data: st.DataObject, ttl: float) -> None:
        (ref,) = self.draw_refs(data, max_size=1)
        if self.holds(ref):
            self.renewed(ref, self.kv.renew_claim(ref, self.ttl_of(ttl)), ttl)
        else:
            with pytest.raises(ClaimLostError):
                self.kv.renew_claim(ref, self.ttl_of(ttl))

    @rule(data=st.data(), ttl=TTLS)
    def renew_claims(self, data: st.DataObject, ttl: float) -> None:
        refs = self.draw_refs(data)
        live = [self.holds(ref) for ref in refs]  # renewing keeps a lease live: a ref given twice renews twice
        result = self.kv.renew_claims(refs, self.ttl_of(ttl))
        assert len(result.done) == sum(live)
        assert result.lost == [ref for ref, ok in zip(refs, live) if not ok]
        for ref, claim in zip([ref for ref, ok in zip(refs, live) if ok], result.done):
            self.renewed(ref, claim, ttl)

    @rule(prefix=PREFIXES)
    def allocation_stats(self, prefix: str) -> None:
        keys = [k for k in self.model if k.startswith(prefix)]
        claimed = sum(1 for k in keys if self.live(k))
        expired = sum(1 for k in keys if k in self.leases and not self.live(k))
        assert self.kv.allocation_stats(prefix) == AllocationStats(len(keys), len(keys) - claimed, claimed, expired)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def size(self) -> None:
        assert self.kv.size() == len(self.model)

    @invariant()
    def leases_name_existing_keys_and_stats_agree(self) -> None:
        assert set(self.leases) <= set(self.model)
        stats = self.kv.stats()
        claims = sum(1 for k in self.leases if self.live(k))
        assert (stats.keys, stats.claims, stats.expired_claims) == (len(self.model), claims, len(self.leases) - claims)
        if self.backend == "memory":  # expired keys count until they are purged
            assert stats.bytes >= sum(len(k.encode()) + len(v) for k, v in self.model.items())
        assert set(self.expires) <= set(self.model)
        self.allocation_stats("")


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_matches_the_model(backend: str) -> None:
    machine = type(f"StoreMachine_{backend}", (StoreMachine,), {"backend": backend})
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
