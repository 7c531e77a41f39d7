"""Backup and restore through the public API: round trips, options, damaged files, budgets, file faults.

Every snapshot error is provoked here with a real fault where the machine
allows one: a missing file, a directory in the way, a file truncated or
altered on disk, a file-size limit (EFBIG), and, because the tests run as
root, a child process whose bounding set lacks the capabilities that let
root ignore permission bits (EACCES).
"""

from __future__ import annotations

import errno
import gzip
import os
import resource
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import pytest

from locust_kv import KV, BackupSummary, RestoreSummary, open_kv
from locust_kv.backends.base import Batch
from locust_kv.errors import (
    BackupOptionsRequiredError,
    KVError,
    RestoreInProgressError,
    RestoreOptionsRequiredError,
    SnapshotBudgetExceededError,
    SnapshotExportError,
    SnapshotIOError,
    SnapshotNotFoundError,
    SnapshotPermissionError,
    SnapshotReadError,
    StoreClosedError,
)
from locust_kv.serialization import get_serializer
from locust_kv.snapshot import (
    DEFAULT_SNAPSHOT_FILE,
    FORMAT_VERSION,
    inspect,
    map_os_error,
    write_snapshot,
)
from locust_kv.snapshot import restore as snapshot_restore
from locust_kv.store import set_reporter

from .conftest import BACKENDS, store_options
from .disk_helpers import run_python

VALUES: dict[str, Any] = {
    "user:1": {"name": "Ada", "roles": ["admin", "dev"], "age": 36},
    "user:2": {"name": "Bob", "active": False, "score": 1.5},
    "counter": 41,
    "empty-string": "",
    "null": None,
    "list": [1, "two", 3.0, None, {"nested": True}],
    "unicode:ключ:鍵": "значение ✓",
    "x" * 511: "the longest key",
}


def _fill(kv: KV, count: int = 0) -> dict[str, Any]:
    """Store VALUES plus ``count`` numbered entries; what was stored."""
    expected = dict(VALUES)
    expected.update({f"item:{i:06d}": {"i": i, "pad": "p" * 40} for i in range(count)})
    for key, value in expected.items():
        kv.set(key, value)
    return expected


def _contents(kv: KV) -> dict[str, Any]:
    return {entry.key: entry.value for entry in kv.scan().entries}


# ---------------------------------------------------------------------------
# Round trips.


def test_round_trip_restores_exactly_what_was_backed_up(kv: KV, tmp_path: Path) -> None:
    expected = _fill(kv, 25_000)  # several blocks
    target = tmp_path / "snap.kv"

    summary = kv.backup(str(target))

    assert isinstance(summary, BackupSummary)
    assert summary == (len(expected), target.stat().st_size, False, "")
    kv.clear()
    kv.set("not-in-snapshot", 1)
    assert kv.restore(target) == RestoreSummary(len(expected))
    assert _contents(kv) == expected
    assert kv.size() == len(expected)
    assert not kv.exists("not-in-snapshot")
    assert kv.increment_by("counter", 1) == 42


def test_string_serialization_round_trip(kv_string: KV, tmp_path: Path) -> None:
    expected = {f"k{i}": f"value {i} ✓" for i in range(100)}
    for key, value in expected.items():
        kv_string.set(key, value)
    kv_string.backup(tmp_path / "s.kv")
    kv_string.clear()
    kv_string.restore(tmp_path / "s.kv")
    assert _contents(kv_string) == expected
    assert inspect(tmp_path / "s.kv").serialization == "string"


@pytest.mark.parametrize(
    ("source", "target"),
    [("memory", "disk"), ("disk", "memory"), ("disk", "disk"), ("memory", "redis"), ("redis", "memory"), ("disk", "redis"), ("redis", "disk"), ("redis", "redis")],
)
def test_snapshots_cross_backends(source: str, target: str, tmp_path: Path) -> None:
    """One format: memory -> disk -> memory (and disk -> disk) keeps every key and value."""
    first = open_kv(**store_options(source, tmp_path, "a"))
    second = open_kv(**store_options(target, tmp_path, "b"))
    try:
        expected = _fill(first, 2_000)
        first.backup(tmp_path / "x.kv")
        second.restore(tmp_path / "x.kv")
        assert _contents(second) == expected
        assert inspect(tmp_path / "x.kv").source_backend == source
        second.set("changed", True)
        second.backup(tmp_path / "y.kv")
        first.restore(tmp_path / "y.kv")
        assert _contents(first) == {**expected, "changed": True}
    finally:
        first.close()
        second.close()


def test_default_file_name_is_in_the_working_directory(
    kv: KV, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kv.set("a", 1)
    kv.backup()
    assert (tmp_path / DEFAULT_SNAPSHOT_FILE).is_file()
    kv.set("a", 2)
    kv.restore()
    assert kv.get("a") == 1


def test_empty_store_round_trip_empties_the_target(kv: KV, tmp_path: Path) -> None:
    assert kv.backup(tmp_path / "empty.kv").total_entries == 0
    kv.set("a", 1)
    assert kv.restore(tmp_path / "empty.kv") == (0, 0)
    assert kv.size() == 0
    assert kv.random_key() == ""


def test_random_key_sees_restored_keys_at_once(kv: KV, tmp_path: Path) -> None:
    for i in range(50):
        kv.set(f"new:{i}", i)
    kv.backup(tmp_path / "s.kv")
    kv.clear()
    for i in range(50):
        kv.set(f"old:{i}", i)
    kv.restore(tmp_path / "s.kv")
    seen = {kv.random_key() for _ in range(500)}
    assert seen <= {f"new:{i}" for i in range(50)}
    assert len(seen) > 25
    assert kv.random_key("new:4") in {"new:4", *(f"new:4{i}" for i in range(10))}
    assert kv.random_key("old:") == ""


def test_backup_creates_missing_directories(kv: KV, tmp_path: Path) -> None:
    kv.set("a", 1)
    kv.backup(tmp_path / "runs" / "2024" / "end.kv")
    assert (tmp_path / "runs" / "2024" / "end.kv").is_file()


def test_backup_replaces_an_earlier_snapshot_and_leaves_no_temp_file(kv: KV, tmp_path: Path) -> None:
    snapshots = tmp_path / "snapshots"
    kv.set("a", 1)
    kv.backup(snapshots / "s.kv")
    kv.set("b", 2)
    kv.backup(snapshots / "s.kv")
    assert os.listdir(snapshots) == ["s.kv"]
    assert inspect(snapshots / "s.kv").entries == 2


def test_info_reports_the_header(kv: KV, tmp_path: Path) -> None:
    expected = _fill(kv)
    summary = kv.backup(tmp_path / "s.kv")
    info = inspect(tmp_path / "s.kv")
    assert info.verified
    assert info.format_version == 1  # no entry expires: the format earlier releases read
    assert info.entries == len(expected)
    dumps = get_serializer("json").dumps
    assert info.data_bytes == sum(len(k.encode()) + len(dumps(v)) for k, v in expected.items())
    assert info.file_bytes == summary.bytes_written
    assert info.source_backend == kv.backend
    assert info.serialization == "json"


# ---------------------------------------------------------------------------
# Options.


@pytest.mark.parametrize("file_name", [123, b"bytes.kv", "", "a\x00b", ["x"], 1.5])
def test_backup_refuses_a_file_name_that_is_not_a_path(kv: KV, file_name: object) -> None:
    with pytest.raises(BackupOptionsRequiredError) as caught:
        kv.backup(file_name)  # type: ignore[arg-type]
    assert caught.value.operation == "backup"
    assert caught.value.backend == kv.backend


@pytest.mark.parametrize("flag", [1, 0, "yes", None])
def test_backup_refuses_a_non_bool_flag(kv: KV, tmp_path: Path, flag: object) -> None:
    with pytest.raises(BackupOptionsRequiredError):
        kv.backup(tmp_path / "s.kv", allow_concurrent_writes=flag)  # type: ignore[arg-type]
    assert not (tmp_path / "s.kv").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"file_name": 7},
        {"file_name": ""},
        {"max_entries": -1},
        {"max_bytes": -5},
        {"max_entries": 1.0},
        {"max_entries": True},
        {"max_bytes": "10"},
        {"max_bytes": None},
    ],
)
def test_restore_refuses_options_it_cannot_use(kv: KV, options: dict[str, Any]) -> None:
    kv.set("a", 1)
    with pytest.raises(RestoreOptionsRequiredError) as caught:
        kv.restore(**options)
    assert caught.value.operation == "restore"
    assert kv.get("a") == 1


# ---------------------------------------------------------------------------
# Missing and damaged files: refused before the live data changes.


def test_missing_file_is_snapshot_not_found(kv: KV, tmp_path: Path) -> None:
    kv.set("a", 1)
    for missing in (tmp_path / "nope.kv", tmp_path / "no" / "such" / "dir.kv"):
        with pytest.raises(SnapshotNotFoundError) as caught:
            kv.restore(missing)
        assert isinstance(caught.value.__cause__, FileNotFoundError)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SnapshotNotFoundError):
        kv.restore(tmp_path / "file" / "below-a-file.kv")  # ENOTDIR
    assert _contents(kv) == {"a": 1}


def test_a_directory_is_not_a_snapshot(kv: KV, tmp_path: Path) -> None:
    with pytest.raises(SnapshotReadError):
        kv.restore(tmp_path)


def _damage(name: str, data: bytes) -> bytes:
    header_size = struct.unpack_from("<H", data, 10)[0]
    trailer_at = len(data) - 52

    def flip(at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    def with_header_field(fmt: str, offset: int, value: int) -> bytes:
        header = bytearray(data[:header_size])
        struct.pack_into(fmt, header, offset, value)
        struct.pack_into("<I", header, header_size - 4, zlib.crc32(bytes(header[:-4])))
        return bytes(header) + data[header_size:]

    damages: dict[str, Callable[[], bytes]] = {
        "empty file": lambda: b"",
        "cut inside the magic": lambda: data[:5],
        "cut inside the header": lambda: data[:30],
        "cut after the header": lambda: data[:header_size],
        "cut inside a block": lambda: data[: len(data) // 2],
        "cut before the trailer": lambda: data[:trailer_at],
        "last byte missing": lambda: data[:-1],
        "bytes after the trailer": lambda: data + b"\x00",
        "header field altered": lambda: flip(17),
        "metadata altered": lambda: flip(header_size - 10),
        "first block payload altered": lambda: flip(header_size + 12 + 8 * 10_000 + 3),
        "first block lengths altered": lambda: flip(header_size + 12),
        "last block payload altered": lambda: flip(trailer_at - 7),
        "trailer count altered": lambda: flip(trailer_at + 4),
        "digest altered": lambda: flip(len(data) - 1),
        "unknown future version": lambda: with_header_field("<H", 8, FORMAT_VERSION + 1),
        "unknown flags": lambda: with_header_field("<I", 12, 1),
        "header claims fewer entries": lambda: with_header_field("<Q", 16, 100),
        "header claims more bytes": lambda: with_header_field("<Q", 24, 10**12),
        "text-mode copy": lambda: data.replace(b"\r\n", b"\n"),
        "gzip of a snapshot": lambda: gzip.compress(data),
        "JSON lines": lambda: b'{"key": "a", "value": 1}\n',
        "LMDB-like binary": lambda: os.urandom(4096),
    }
    return damages[name]()


DAMAGES = [
    "empty file",
    "cut inside the magic",
    "cut inside the header",
    "cut after the header",
    "cut inside a block",
    "cut before the trailer",
    "last byte missing",
    "bytes after the trailer",
    "header field altered",
    "metadata altered",
    "first block payload altered",
    "first block lengths altered",
    "last block payload altered",
    "trailer count altered",
    "digest altered",
    "unknown future version",
    "unknown flags",
    "header claims fewer entries",
    "header claims more bytes",
    "text-mode copy",
    "gzip of a snapshot",
    "JSON lines",
    "LMDB-like binary",
]


@pytest.fixture(scope="module")
def good_snapshot(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid 25,000-entry snapshot (three blocks), as bytes."""
    path = tmp_path_factory.mktemp("good") / "good.kv"
    entries = [(b"seed:%06d" % i, b'{"n":%d}' % i) for i in range(25_000)]
    write_snapshot(path, (entries[i : i + 10_000] for i in range(0, 25_000, 10_000)), "memory", "json")
    return path.read_bytes()


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_snapshot_is_refused_and_live_data_is_untouched(
    kv: KV, tmp_path: Path, good_snapshot: bytes, damage: str
) -> None:
    expected = _fill(kv, 100)
    path = tmp_path / "damaged.kv"
    path.write_bytes(_damage(damage, good_snapshot))

    with pytest.raises(SnapshotReadError) as caught:
        kv.restore(path)

    assert caught.value.name == "SnapshotReadError"
    assert _contents(kv) == expected
    kv.set("writable-after", True)  # the restore released the writers
    with pytest.raises(SnapshotReadError):
        inspect(path)


def test_header_figures_are_enforced_while_streaming(kv: KV, tmp_path: Path, good_snapshot: bytes) -> None:
    """A header that under-reports passes the budget check, then fails as soon as the contents exceed it."""
    kv.set("a", 1)
    path = tmp_path / "lying.kv"
    path.write_bytes(_damage("header claims fewer entries", good_snapshot))
    with pytest.raises(SnapshotReadError, match="more entries or bytes than its header says"):
        kv.restore(path, max_entries=100)
    assert _contents(kv) == {"a": 1}


def test_keys_out_of_order_are_refused(kv: KV, tmp_path: Path) -> None:
    path = tmp_path / "unsorted.kv"
    write_snapshot(path, [[(b"b", b"1"), (b"a", b"2")]], "memory", "json")
    with pytest.raises(SnapshotReadError, match="ascending"):
        kv.restore(path)


# ---------------------------------------------------------------------------
# Budgets.


def test_budgets_are_checked_before_anything_is_applied(kv: KV, tmp_path: Path) -> None:
    source = {f"k{i:03d}": "v" * 10 for i in range(100)}  # 4 + 12 bytes each: 1,600 bytes
    for key, value in source.items():
        kv.set(key, value)
    kv.backup(tmp_path / "s.kv")
    kv.clear()
    kv.set("keep", 1)

    with pytest.raises(SnapshotBudgetExceededError) as caught:
        kv.restore(tmp_path / "s.kv", max_entries=99)
    assert "100 entries" in caught.value.message
    assert "max_entries is 99" in caught.value.message

    with pytest.raises(SnapshotBudgetExceededError) as caught:
        kv.restore(tmp_path / "s.kv", max_bytes=1_599)
    assert "1600 key+value bytes" in caught.value.message
    assert "max_bytes is 1599" in caught.value.message
    assert _contents(kv) == {"keep": 1}

    assert kv.restore(tmp_path / "s.kv", max_entries=100, max_bytes=1_600) == (100, 0)
    assert _contents(kv) == source


# ---------------------------------------------------------------------------
# File system faults.


def test_backup_onto_a_directory_is_an_export_error(kv: KV, tmp_path: Path) -> None:
    kv.set("a", 1)
    snapshots = tmp_path / "snapshots"
    (snapshots / "taken").mkdir(parents=True)
    with pytest.raises(SnapshotExportError) as caught:
        kv.backup(snapshots / "taken")
    assert "is a directory" in str(caught.value)  # refused before a temp file is made
    assert os.listdir(snapshots) == ["taken"]  # no temp file left
    (snapshots / "plain-file").write_text("x")
    with pytest.raises(SnapshotExportError):
        kv.backup(snapshots / "plain-file" / "below.kv")  # fails before a single entry is read
    kv.set("writable-after", True)  # each failed strict backup released the writers


@contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """Files of this process cannot grow past ``limit`` bytes: writes fail with EFBIG."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_failed_backup_leaves_the_earlier_snapshot_intact(tmp_path: Path) -> None:
    kv = open_kv(backend="memory")
    try:
        kv.set("small", 1)
        kv.backup(tmp_path / "s.kv")
        before = (tmp_path / "s.kv").read_bytes()
        _fill(kv, 20_000)  # about 2 MB
        with _file_size_limit(256 * 1024), pytest.raises(SnapshotIOError) as caught:
            kv.backup(tmp_path / "s.kv")
        assert caught.value.__cause__.errno == errno.EFBIG  # type: ignore[union-attr]
        assert (tmp_path / "s.kv").read_bytes() == before
        assert os.listdir(tmp_path) == ["s.kv"]
        kv.set("writable-after", True)  # the strict backup released the writers
    finally:
        kv.close()


def test_permission_denied_is_snapshot_permission_error(tmp_path: Path) -> None:
    """A real EACCES: a read-only directory to back up into, an unreadable file to restore."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    secret = tmp_path / "secret.kv"
    write_snapshot(secret, [[(b"a", b"1")]], "memory", "json")
    secret.chmod(0o000)
    readonly.chmod(0o555)
    try:
        out = run_python(
            f"""
            from locust_kv import open_kv
            from locust_kv.errors import KVError
            kv = open_kv(backend="memory")
            kv.set("a", 2)
            for call in (lambda: kv.backup({str(readonly / "s.kv")!r}), lambda: kv.restore({str(secret)!r})):
                try:
                    call()
                    print("no error")
                except KVError as err:
                    print(err.name, type(err.__cause__).__name__)
            print(kv.get("a"))
            """,
            unprivileged=True,
        )
    finally:
        readonly.chmod(0o755)
        secret.chmod(0o644)
    assert out.split("\n")[:3] == [
        "SnapshotPermissionError PermissionError",
        "SnapshotPermissionError PermissionError",
        "2",
    ]
    assert os.listdir(readonly) == []


@pytest.mark.parametrize(
    ("code", "writing", "expected"),
    [
        (errno.EACCES, True, SnapshotPermissionError),
        (errno.EPERM, True, SnapshotPermissionError),
        (errno.EROFS, True, SnapshotPermissionError),
        (errno.EACCES, False, SnapshotPermissionError),
        (errno.ENOSPC, True, SnapshotIOError),
        (errno.EDQUOT, True, SnapshotIOError),
        (errno.EFBIG, True, SnapshotIOError),
        (errno.EIO, True, SnapshotIOError),
        (errno.EIO, False, SnapshotIOError),
        (errno.EISDIR, True, SnapshotExportError),
        (errno.ENOTDIR, True, SnapshotExportError),
        (errno.ENAMETOOLONG, True, SnapshotExportError),
        (errno.EXDEV, True, SnapshotExportError),
        (errno.ENOENT, False, SnapshotNotFoundError),
        (errno.ENOTDIR, False, SnapshotNotFoundError),
        (errno.EISDIR, False, SnapshotReadError),
        (errno.ELOOP, False, SnapshotIOError),
        (None, True, SnapshotExportError),
    ],
)
def test_os_errors_map_by_cause(code: int | None, writing: bool, expected: type[KVError]) -> None:
    cause = OSError(code, os.strerror(code)) if code is not None else OSError("no errno")
    error = map_os_error(cause, "doing", "/some/path", writing)
    assert type(error) is expected
    assert "/some/path" in error.message


# ---------------------------------------------------------------------------
# Reporting, closed handles.


def test_closed_handle_refuses_backup_and_restore(open_store: Callable[..., KV], tmp_path: Path) -> None:
    kv = open_store()
    other = open_store()
    kv.close()
    with pytest.raises(StoreClosedError):
        kv.backup(tmp_path / "s.kv")
    with pytest.raises(StoreClosedError):
        kv.restore(tmp_path / "s.kv")
    assert other.backup(tmp_path / "s.kv").total_entries == 0


def test_a_killed_restore_changes_nothing(kv: KV, tmp_path: Path, good_snapshot: bytes) -> None:
    """A fault mid-stream (the restoring greenlet is killed between blocks) leaves the data as it was."""
    expected = _fill(kv, 10)
    path = tmp_path / "good.kv"
    path.write_bytes(good_snapshot)
    restoring = gevent.spawn(kv.restore, path)
    gevent.sleep(0)  # let it start and pause after its first block
    with pytest.raises(RestoreInProgressError):
        kv.set("during", 1)
    restoring.kill()
    assert restoring.dead
    assert _contents(kv) == expected
    kv.set("writable-after", True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_and_restore_are_reported(backend: str, tmp_path: Path) -> None:
    kv = open_kv(**store_options(backend, tmp_path))
    calls: list[tuple[str, BaseException | None]] = []
    set_reporter(kv, lambda name, seconds, error: calls.append((name, error)))
    try:
        kv.backup(tmp_path / "s.kv")
        kv.restore(tmp_path / "s.kv")
        with pytest.raises(SnapshotNotFoundError):
            kv.restore(tmp_path / "missing.kv")
    finally:
        set_reporter(kv, None)
        kv.close()
    assert [name for name, _ in calls] == ["backup", "restore", "restore"]
    assert isinstance(calls[-1][1], SnapshotNotFoundError)


class _CountingBackend:
    """Stands in for a backend whose replace_all stops asking once it has the entries it expects, then commits."""

    kind = "memory"

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.committed = False

    def replace_all(self, batches: Iterator[Batch]) -> int:
        received = 0
        for batch, _ in batches:
            received += len(batch)
            if received == self.expected:
                break  # never asks for more, so never sees an error raised after the last block
        self.committed = True
        return received


def test_the_last_block_is_handed_over_only_after_the_trailer_is_verified(tmp_path: Path, good_snapshot: bytes) -> None:
    path = tmp_path / "damaged.kv"
    path.write_bytes(_damage("digest altered", good_snapshot))
    backend = _CountingBackend(25_000)
    with pytest.raises(SnapshotReadError):
        snapshot_restore(backend, path, 0, 0)  # type: ignore[arg-type]
    assert not backend.committed

    path.write_bytes(good_snapshot)
    assert snapshot_restore(backend, path, 0, 0) == (25_000, 0)  # type: ignore[arg-type]
    assert backend.committed
