"""Snapshots and the command line against hostile targets and inputs (issue 11).

Each test makes the fault for real: a device node, a FIFO, a symbolic link
made in a temporary directory, a pipe, a crafted snapshot with valid
checksums, rows a store could not hold as written.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import KVError, SnapshotExportError, SnapshotMismatchError, SnapshotReadError
from locust_kv.snapshot import SnapshotWriter, _temp_name, write_file

from .test_cli import ROOT, failure_name, jsonl, run


def _memory(serialization: str = "json") -> KV:
    """A memory store of its own (stores of one name are shared by the whole process)."""
    return open_kv("memory", name=f"faults-{secrets.token_hex(6)}", serialization=serialization)


def _targets(tmp_path: Path) -> dict[str, Path]:
    """A non-regular file of each kind, made here (a null device of our own needs root)."""
    made: dict[str, Path] = {}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made["fifo"] = fifo
    link = tmp_path / "link"
    (tmp_path / "real.kv").write_bytes(b"earlier")
    link.symlink_to(tmp_path / "real.kv")
    made["symlink"] = link
    directory = tmp_path / "dir"
    directory.mkdir()
    made["directory"] = directory
    if os.geteuid() == 0:
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made["device"] = device
    return made


def _fingerprint(path: Path) -> tuple[int, int, int]:
    found = os.lstat(path)
    return found.st_mode, found.st_ino, found.st_rdev


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory", "device"])
def test_a_backup_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    targets = _targets(tmp_path)
    if kind not in targets:
        pytest.skip("making a device node needs root")
    target = targets[kind]
    before = _fingerprint(target)
    kv = _memory()
    kv.set("k", 1)
    with pytest.raises(SnapshotExportError) as caught:
        kv.backup(target)
    assert "not a regular file" in str(caught.value) or "is a" in str(caught.value)
    assert _fingerprint(target) == before  # the node, link or directory itself is untouched
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    if kind == "symlink":
        assert (tmp_path / "real.kv").read_bytes() == b"earlier"


@pytest.mark.parametrize("suffix", ["", "-lock", "-kvlock"])
def test_a_backup_of_another_store_onto_a_disk_store_file_is_refused(tmp_path: Path, suffix: str) -> None:
    disk = open_kv("disk", path=tmp_path / "live.lmdb")
    disk.set("precious", 1)
    other = _memory()
    other.set("k", 2)
    before = (tmp_path / f"live.lmdb{suffix}").stat().st_ino
    with pytest.raises(SnapshotExportError, match="file of a disk store"):
        other.backup(tmp_path / f"live.lmdb{suffix}")
    assert (tmp_path / f"live.lmdb{suffix}").stat().st_ino == before
    assert disk.get("precious") == 1
    disk.close()


def test_cli_outputs_refuse_devices_fifos_and_store_files_and_stream_to_stdout(tmp_path: Path) -> None:
    targets = _targets(tmp_path)
    (tmp_path / "rows.jsonl").write_text(jsonl({"key": "a", "value": 1}))
    run("snapshot", "import", "rows.jsonl", "-o", "good.kv", cwd=tmp_path)
    store = open_kv("disk", path=tmp_path / "store.lmdb")
    store.set("precious", 1)
    for name, target in [*targets.items(), ("store", tmp_path / "store.lmdb"), ("side", tmp_path / "store.lmdb-kvlock")]:
        before = _fingerprint(target)
        done = run("snapshot", "import", "rows.jsonl", "-o", target, cwd=tmp_path, check_status=1)
        assert failure_name(done) == "SnapshotExportError", name
        done = run("snapshot", "export", "good.kv", "-o", target, cwd=tmp_path, check_status=1)
        assert failure_name(done) == "SnapshotExportError", name
        assert _fingerprint(target) == before, name
    assert store.get("precious") == 1
    store.close()
    streamed = run("snapshot", "export", "good.kv", "-o", "-", cwd=tmp_path)
    assert orjson.loads(streamed.stdout.splitlines()[0]) == {"key": "a", "value": 1}


def test_temp_files_of_dead_writers_are_removed_and_others_kept(tmp_path: Path) -> None:
    target = tmp_path / "snap.kv"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = int(child.stdout)  # a pid that has exited (reuse within this test is not a concern)
    dead_file = tmp_path / _temp_name("snap.kv", "aaaa").replace(f".{os.getpid()}.", f".{dead}.")
    live_file = tmp_path / _temp_name("snap.kv", "bbbb").replace(f".{os.getpid()}.", f".{os.getppid()}.")
    other_host = tmp_path / f".snap.kv.another-host.{dead}.cccc.tmp"
    other_target = tmp_path / _temp_name("other.kv", "dddd").replace(f".{os.getpid()}.", f".{dead}.")
    for leftover in (dead_file, live_file, other_host, other_target):
        leftover.write_bytes(b"x" * 1000)
    write_file(target, [b"new"])
    assert target.read_bytes() == b"new"
    assert not dead_file.exists()  # a dead writer's, on this host: removed
    assert live_file.exists() and other_host.exists() and other_target.exists()


# ---------------------------------------------------------------------------
# Import: a value is never changed.


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('{"key":"a","value":123456789012345678901234567890}', "SerializerError"),
        ('{"key":"a","value":1e400}', "no exact float form"),
        ('{"key":"a","value":0.1000000000000000055511151231257827}', "no exact float form"),
        ('{"key":"a","value":NaN}', "not a JSON number"),
        ('{"key":"a","value":[1, {"b": 99999999999999999999}]}', "SerializerError"),
    ],
)
def test_import_refuses_a_value_it_would_change(tmp_path: Path, row: str, expected: str) -> None:
    (tmp_path / "rows.jsonl").write_text(row + "\n")
    done = run("snapshot", "import", "rows.jsonl", "-o", "out.kv", cwd=tmp_path, check_status=1)
    assert failure_name(done) == "SnapshotImportError"
    assert expected in done.stderr
    assert not (tmp_path / "out.kv").exists()


def test_import_keeps_exact_numbers_and_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_bytes(
        b"\xef\xbb\xbf" + b'{"key":"a","value":9223372036854775807}\n{"key":"b","value":0.1}\n{"key":"c","value":-2.5e-3}\n'
    )
    run("snapshot", "import", "rows.jsonl", "-o", "out.kv", cwd=tmp_path)
    kv = _memory()
    kv.restore(tmp_path / "out.kv")
    assert kv.get("a") == 2**63 - 1 and kv.get("b") == 0.1 and kv.get("c") == -0.0025
    (tmp_path / "rows.csv").write_text("key,value\na,123456789012345678901234567890\nb,NaN\n")
    done = run("snapshot", "import", "rows.csv", "-o", "c.kv", cwd=tmp_path, check_status=1)
    assert "rows.csv:2: SerializerError" in done.stderr and "rows.csv:3" not in done.stderr  # NaN: the text "NaN"


# ---------------------------------------------------------------------------
# Reading from pipes.


def test_snapshot_info_reads_a_pipe_and_a_fifo(tmp_path: Path) -> None:
    kv = _memory()
    for i in range(3000):
        kv.set(f"k{i:05d}", i)
    kv.backup(tmp_path / "s.kv")
    data = (tmp_path / "s.kv").read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "locust_kv.cli", "snapshot", "info"]
    piped = subprocess.run([*command, "/dev/stdin"], input=data, capture_output=True, env=env, timeout=60, check=False)
    assert piped.returncode == 0, piped.stderr
    assert b"3,000" in piped.stdout and f"{len(data):,}".encode() in piped.stdout
    cut = subprocess.run([*command, "/dev/stdin"], input=data[:-40], capture_output=True, env=env, timeout=60, check=False)
    assert cut.returncode == 1 and b"SnapshotReadError" in cut.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(data))
    feeder.start()
    from_fifo = subprocess.run([*command, str(fifo)], capture_output=True, env=env, timeout=60, check=False)
    feeder.join(timeout=60)
    assert from_fifo.returncode == 0, from_fifo.stderr
    restored = _memory()
    fifo_writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    fifo_writer.start()
    assert restored.restore(fifo).total_entries == 3000
    fifo_writer.join(timeout=60)


# ---------------------------------------------------------------------------
# Restore: what cannot be read back is refused before anything changes.


def _crafted(path: Path, entries: list[tuple[bytes, bytes]], serialization: str = "json") -> None:
    """A snapshot with valid checksums holding exactly ``entries`` (which no store would have written)."""
    with path.open("wb") as out:
        writer = SnapshotWriter(out, "crafted", serialization)
        writer.add(entries)
        writer.finish()


@pytest.mark.parametrize(
    ("entries", "serialization", "why"),
    [
        ([(b"good", b"1"), (b"\xff\xfe", b"2")], "json", "key that is not UTF-8"),
        ([(b"a", b"1"), (b"b", b"{not json")], "json", "not a JSON document"),
        ([(b"a", b"text"), (b"b", b"\xff")], "string", "not UTF-8 text"),
    ],
)
def test_a_crafted_snapshot_that_could_not_be_read_back_is_refused(
    backend_kv_factory: object, tmp_path: Path, entries: list[tuple[bytes, bytes]], serialization: str, why: str
) -> None:
    kv = backend_kv_factory(serialization)  # type: ignore[operator]
    kv.set("live", "kept")
    _crafted(tmp_path / "c.kv", entries, serialization)
    with pytest.raises(SnapshotReadError, match=why):
        kv.restore(tmp_path / "c.kv")
    assert kv.get("live") == "kept" and kv.size() == 1
    assert [entry.key for entry in kv.scan().entries] == ["live"]


@pytest.mark.parametrize(("written", "store"), [("string", "json"), ("json", "string")])
def test_a_snapshot_of_another_serialization_is_refused_before_anything_changes(
    backend_kv_factory: object, tmp_path: Path, written: str, store: str
) -> None:
    source = _memory(written)
    source.set("a", "1")
    source.backup(tmp_path / "s.kv")
    kv = backend_kv_factory(store)  # type: ignore[operator]
    kv.set("live", "kept")
    with pytest.raises(SnapshotMismatchError):
        kv.restore(tmp_path / "s.kv")
    assert kv.get("live") == "kept" and kv.size() == 1
    done = run("restore", "--path", tmp_path / "cli.lmdb", "--serialization", store, tmp_path / "s.kv", cwd=tmp_path, check_status=1)
    assert failure_name(done) == "SnapshotMismatchError"
    run("restore", "--path", tmp_path / "cli.lmdb", tmp_path / "s.kv", cwd=tmp_path)  # no --serialization: the snapshot's


@pytest.fixture(params=["memory", "disk"])
def backend_kv_factory(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    opened: list[object] = []

    def make(serialization: str) -> object:
        if request.param == "disk":
            kv = open_kv("disk", path=tmp_path / f"store-{serialization}.lmdb", serialization=serialization)
        else:
            kv = _memory(serialization)
        opened.append(kv)
        return kv

    yield make
    for kv in opened:
        try:
            kv.close()  # type: ignore[attr-defined]
        except KVError:
            pass
