"""Snapshots of a disk store shared by several processes: each sees the others' backups and restores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import BackupInProgressError, RestoreInProgressError
from locust_kv.snapshot import inspect, write_snapshot

from .disk_helpers import python_child, run_python

ENTRIES = 30_000  # three blocks: the held child stops after the first


@pytest.fixture(scope="module")
def big_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.kv"
    value = b'"' + b"v" * 98 + b'"'
    write_snapshot(
        path,
        ([(b"big:%07d" % i, value) for i in range(start, start + 10_000)] for start in range(0, ENTRIES, 10_000)),
        "memory",
        "json",
    )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KV]:
    kv = open_kv(backend="disk", path=str(tmp_path / "shared.lmdb"))
    yield kv
    kv.close()


def test_another_process_backs_up_and_restores_what_this_one_sees(store: KV, tmp_path: Path) -> None:
    for i in range(1_000):
        store.set(f"parent:{i:04d}", {"i": i})
    run_python(
        f"""
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(tmp_path / "shared.lmdb")!r})
        kv.backup({str(tmp_path / "by-child.kv")!r})
        """
    )
    assert inspect(tmp_path / "by-child.kv").entries == 1_000

    store.clear()
    store.set("parent-only", 1)
    out = run_python(
        f"""
        from locust_kv import open_kv
        kv = open_kv(backend="disk", path={str(tmp_path / "shared.lmdb")!r})
        print(kv.restore({str(tmp_path / "by-child.kv")!r}).total_entries)
        """
    )
    assert out.strip() == "1000"
    # This process sees the restore at once, random_key included.
    assert store.size() == 1_000
    assert not store.exists("parent-only")
    assert store.get("parent:0042") == {"i": 42}
    assert {store.random_key() for _ in range(50)} <= {f"parent:{i:04d}" for i in range(1_000)}


def _held(tmp_path: Path, operation: str) -> tuple[object, Path, Path]:
    """A child process that starts ``operation`` on the shared store and holds it after its first block.

    ``operation`` is a call on ``snapshot`` with ``backend`` and ``hold``.
    The child creates the file "ready" once it is holding, and goes on once
    the file "go" exists. Returns the child and the two paths.
    """
    ready, go = tmp_path / "ready", tmp_path / "go"
    child = python_child(
        f"""
        import os, time
        from locust_kv import snapshot
        from locust_kv.options import configure_backend

        backend = configure_backend("disk", {{"path": {str(tmp_path / "shared.lmdb")!r}}}).create()

        def hold(done):
            if not os.path.exists({str(ready)!r}):
                open({str(ready)!r}, "w").close()
                while not os.path.exists({str(go)!r}):
                    time.sleep(0.005)

        snapshot.{operation}
        backend.close()
        """
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, child.stderr.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.005)
    return child, ready, go


def _finish(child: object, go: Path) -> None:
    go.touch()
    _, err = child.communicate(timeout=60)  # type: ignore[attr-defined]
    assert child.returncode == 0, err  # type: ignore[attr-defined]


def test_during_another_process_restore_writers_backups_and_restores_fail_fast(
    store: KV, tmp_path: Path, big_snapshot: Path
) -> None:
    store.set("before", 1)
    child, _, go = _held(tmp_path, f"restore(backend, {str(big_snapshot)!r}, 0, 0, progress=hold)")
    try:
        with pytest.raises(RestoreInProgressError):
            store.set("writer", 1)
        with pytest.raises(RestoreInProgressError):
            store.increment_by("counter", 1)
        with pytest.raises(RestoreInProgressError):
            store.backup(tmp_path / "parent.kv")
        with pytest.raises(RestoreInProgressError):
            store.restore(big_snapshot)
        assert store.get("before") == 1  # readers keep the old data until the restore commits
        assert store.size() == 1
    finally:
        _finish(child, go)
    assert store.size() == ENTRIES
    assert not store.exists("before")
    store.set("writer", 1)


def test_during_another_process_backup_writers_go_on_and_a_second_backup_or_restore_is_refused(
    store: KV, tmp_path: Path, big_snapshot: Path
) -> None:
    store.restore(big_snapshot)
    child, _, go = _held(tmp_path, f"backup(backend, {str(tmp_path / 'child.kv')!r}, False, 'json', progress=hold)")
    try:
        with pytest.raises(BackupInProgressError):
            store.backup(tmp_path / "parent.kv", allow_concurrent_writes=True)
        with pytest.raises(BackupInProgressError):
            store.restore(big_snapshot)
        for i in range(100):
            store.set(f"during:{i}", i)  # the disk backend's backup reads an LMDB snapshot; writers go on
        store.delete("big:0029999")
    finally:
        _finish(child, go)
    # The child's copy is the moment its backup began.
    copy = open_kv(backend="memory")
    try:
        copy.restore(tmp_path / "child.kv")
        assert copy.size() == ENTRIES
        assert copy.exists("big:0029999") and not copy.exists("during:0")
    finally:
        copy.close()
    assert not (tmp_path / "parent.kv").exists()
