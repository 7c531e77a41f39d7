"""Random sequences of every operation, compared step by step with a plain-dict model.

The model keeps each value's serialized bytes (as the json serialization
writes them), so comparisons follow the store's rule: values compare by their
serialized form.
"""

from __future__ import annotations

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

from locust_kv import Entry, open_kv
from locust_kv.errors import KeyNotFoundError, ValueParseError

from .conftest import BACKENDS, store_options

KEYS = st.text(alphabet="ab:é", min_size=1, max_size=4)
PREFIXES = st.text(alphabet="ab:é", max_size=2)
SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)
DELTAS = st.integers(-5, 5) | st.integers(-(2**64), 2**64)
COUNTER_TEXT = re.compile(rb'^"?(-?[0-9]+)"?$')


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

    def teardown(self) -> None:
        self.kv.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def expect(self, key: str) -> Any:
        return orjson.loads(self.model[key])

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: Any) -> None:
        assert self.kv.set(key, value) == value
        self.model[key] = dump(value)

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
        self.model.pop(key, None)

    @rule(key=KEYS)
    def exists(self, key: str) -> None:
        assert self.kv.exists(key) is (key in self.model)

    @rule(key=KEYS, delta=DELTAS)
    def increment_by(self, key: str, delta: int) -> None:
        stored = self.model.get(key)
        match = COUNTER_TEXT.match(stored) if stored is not None else None
        if stored is not None and (match is None or stored.count(b'"') == 1):
            with pytest.raises(ValueParseError):
                self.kv.increment_by(key, delta)
            return
        result = (int(match.group(1)) if match else 0) + delta
        if not -(2**63) <= result < 2**63:
            with pytest.raises(ValueParseError):
                self.kv.increment_by(key, delta)
            return
        assert self.kv.increment_by(key, delta) == result
        self.model[key] = b"%d" % result

    @rule(key=KEYS, value=VALUES)
    def get_or_set(self, key: str, value: Any) -> None:
        result = self.kv.get_or_set(key, value)
        if key in self.model:
            assert result == (self.expect(key), True)
        else:
            assert result == (value, False)
            self.model[key] = dump(value)

    @rule(key=KEYS, value=VALUES)
    def swap(self, key: str, value: Any) -> None:
        previous = self.expect(key) if key in self.model else None
        assert self.kv.swap(key, value) == (previous, key in self.model)
        self.model[key] = dump(value)

    @rule(key=KEYS, new=VALUES, data=st.data())
    def compare_and_swap(self, key: str, new: Any, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from([None, self.expect(key)]) if key in self.model else st.none() | VALUES)
        expected = self.model.get(key) == (None if old is None else dump(old))
        assert self.kv.compare_and_swap(key, old, new) is expected
        if expected:
            self.model[key] = dump(new)

    @rule(key=KEYS)
    def delete_if_exists(self, key: str) -> None:
        assert self.kv.delete_if_exists(key) is (key in self.model)
        self.model.pop(key, None)

    @rule(key=KEYS, data=st.data())
    def compare_and_delete(self, key: str, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from([self.expect(key), "other"]) if key in self.model else VALUES)
        expected = self.model.get(key) == dump(old)
        assert self.kv.compare_and_delete(key, old) is expected
        if expected:
            del self.model[key]

    @precondition(lambda self: len(self.model) > 3)
    @rule()
    def clear(self) -> None:
        assert self.kv.clear() is True
        self.model.clear()

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

    @invariant()
    def size(self) -> None:
        assert self.kv.size() == len(self.model)


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
