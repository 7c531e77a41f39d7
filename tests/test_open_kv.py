"""open_kv: options, sharing, conflicts, import-time safety, and the catch-all error mapping."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from locust_kv import KV, open_kv
from locust_kv.backends.memory import MemoryBackend
from locust_kv.errors import (
    InvalidBackendError,
    InvalidOptionsError,
    InvalidSerializationError,
    KVOptionsConflictError,
    SerializerError,
    UnexpectedStoreOutputError,
    UnknownError,
)


def test_equal_options_share_the_data(open_store) -> None:  # type: ignore[no-untyped-def]
    first: KV = open_store()
    second: KV = open_store()
    assert first is not second
    first.set("k", "v")
    assert second.get("k") == "v"
    second.increment_by("n", 2)
    assert first.increment_by("n", 3) == 5


@pytest.mark.parametrize("change", [{"serialization": "string"}, {"track_keys": False}])
def test_different_options_for_the_same_store_conflict(open_store, change: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    first = open_store()
    with pytest.raises(KVOptionsConflictError) as info:
        open_store(**change)
    assert "different options" in str(info.value)
    first.set("still", "works")
    assert first.get("still") == "works"


def test_closing_every_handle_releases_the_options(open_store, backend_name: str) -> None:  # type: ignore[no-untyped-def]
    first = open_store()
    first.set("k", 1)
    first.close()
    second = open_store(serialization="string")
    assert second.serialization == "string"
    if backend_name == "memory":
        assert second.size() == 0  # a memory store's data goes with its last handle


def test_memory_stores_are_told_apart_by_name() -> None:
    with open_kv(backend="memory", name="a") as a, open_kv(backend="memory", name="b", serialization="string") as b:
        a.set("k", 1)
        assert not b.exists("k")
        assert a.options == {
            "backend": "memory", "name": "a", "track_keys": True, "max_keys": None, "max_bytes": None, "serialization": "json",
        }


@pytest.mark.parametrize("backend", ["sqlite", "Memory", "Redis", "", None, 1])
def test_unknown_backend(backend: object) -> None:
    with pytest.raises(InvalidBackendError):
        open_kv(backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("serialization", ["msgpack", "JSON", "", None, 2])
def test_unknown_serialization(serialization: object) -> None:
    with pytest.raises(InvalidSerializationError):
        open_kv(backend="memory", serialization=serialization)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"track_keys": "yes"},
        {"track_keys": 1},
        {"path": 5},
        {"colour": "blue"},
        {"name": ""},
        {"name": 3},
    ],
)
def test_options_that_do_not_parse(options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionsError):
        open_kv(backend="memory", **options)  # type: ignore[arg-type]


def test_kv_describes_itself() -> None:
    with open_kv(backend="memory", name="described") as kv:
        assert kv.backend == "memory"
        assert kv.serialization == "json"
        assert "described" in kv.location
        assert "memory" in repr(kv) and "open" in repr(kv)
    assert "closed" in repr(kv)


def test_an_unexpected_exception_becomes_unknown_error_with_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fault no real input produces: the backend itself raising a bare exception.
    with open_kv(backend="memory", name="faulty") as kv:
        def broken(key: bytes) -> bytes:
            raise RuntimeError("engine exploded on user:7")

        monkeypatch.setattr(kv._backend, "get", broken)
        with pytest.raises(UnknownError) as info:
            kv.get("user:7")
        error = info.value
        assert isinstance(error.__cause__, RuntimeError)
        assert (error.operation, error.key, error.backend) == ("get", "user:7", "memory")
        assert "user:7" not in str(error)


@pytest.mark.parametrize(
    ("method", "result", "call"),
    [
        ("size", -1, lambda kv: kv.size()),
        ("size", "3", lambda kv: kv.size()),
        ("get_or_set", None, lambda kv: kv.get_or_set("k", 1)),
        ("scan", [(b"k", b"1")], lambda kv: kv.scan()),
    ],
)
def test_backend_results_outside_the_contract(monkeypatch: pytest.MonkeyPatch, method: str, result: object, call) -> None:  # type: ignore[no-untyped-def]
    # A backend bug cannot be produced with a correct backend; stand one in.
    with open_kv(backend="memory", name="buggy") as kv:
        monkeypatch.setattr(kv._backend, method, lambda *args: result)
        with pytest.raises(UnexpectedStoreOutputError):
            call(kv)


def test_keyboard_interrupt_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with open_kv(backend="memory", name="interrupted") as kv:
        def interrupted(key: bytes) -> bool:
            raise KeyboardInterrupt

        monkeypatch.setattr(kv._backend, "exists", interrupted)
        with pytest.raises(KeyboardInterrupt):
            kv.exists("k")


def test_importing_locust_kv_has_no_side_effects() -> None:
    code = (
        "import sys, gevent.monkey, locust_kv, locust_kv.errors, locust_kv.store;"
        "assert 'locust' not in sys.modules, 'imported locust';"
        "assert not gevent.monkey.is_anything_patched(), 'patched';"
        "assert 'locust_kv.plugin' not in sys.modules;"
        "assert 'lmdb' not in sys.modules, 'imported lmdb'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_memory_store_opened_before_fork_works_in_the_child() -> None:
    with open_kv(backend="memory", name="forked") as kv:
        kv.set("before", 1)
        pid = os.fork()
        if pid == 0:  # child: its own copy of the data
            try:
                ok = kv.get("before") == 1 and kv.increment_by("child", 5) == 5
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not kv.exists("child")  # the memory backend is per process


def test_memory_backend_is_a_backend() -> None:
    with open_kv(backend="memory", name="kind") as kv:
        assert isinstance(kv._backend, MemoryBackend)


def test_a_stored_key_that_is_not_utf8_raises_serializer_error_on_scan() -> None:
    # Only another program writing the disk file can store such a key; write it below the front-end.
    with open_kv(backend="memory", name="foreign-key") as kv:
        kv.set("good", 1)
        kv._backend.set(b"\xff\xfe", b"1")
        with pytest.raises(SerializerError, match="not valid UTF-8"):
            kv.scan()
        with pytest.raises(SerializerError, match="not valid UTF-8"):
            kv.list()
