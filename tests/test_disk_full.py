"""A disk store on a full disk: DiskStoreFullError, never a signal, and deletes always work.

Each test mounts a small tmpfs of its own under ``tmp_path`` (root only; it is
unmounted in the fixture's ``finally``), or uses a small ``max_map_size``.
Everything that could die of SIGBUS runs in a fresh interpreter, whose exit
status is asserted: a store that maps blocks the disk cannot back kills that
child, not pytest. After each fault another fresh process reopens the store
and finds exactly the writes that were acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.disk_helpers import python_child

# Runs in the children: fill a store until DiskStoreFullError, empty it, fill it again.
_FILL = """
import json, os, sys
import lmdb
from locust_kv import open_kv
from locust_kv.errors import DiskStoreFullError, KVError

def fill(kv, prefix, size, limit=1_000_000):
    n = 0
    try:
        while n < limit:
            kv.set(f"{prefix}{n:07d}", "x" * size)
            n += 1
    except DiskStoreFullError as exc:
        return n, exc
    return n, None

def report(**fields):
    print(json.dumps(fields), flush=True)

def take_the_rest(path):
    # A file beside the store (a backup, a log) takes every free block of the filesystem.
    with open(path, "wb", buffering=0) as out:
        for chunk in (1 << 16, 4096, 512):
            try:
                while True:
                    out.write(b"\\1" * chunk)
            except OSError:
                pass
"""


def _run(script: str, timeout: float = 300) -> tuple[int, str, str]:
    child = python_child(_FILL + textwrap.dedent(script))
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    return child.returncode, out, err


def _ok(script: str) -> dict:  # type: ignore[type-arg]
    code, out, err = _run(script)
    if code < 0:
        pytest.fail(f"the child died of {signal.Signals(-code).name}: {err[-2000:]}")
    assert code == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _keys_in(path: Path, **options: object) -> dict:  # type: ignore[type-arg]
    """What a fresh process finds in the store: key count, and the keys by prefix."""
    return _ok(
        f"""
        kv = open_kv(backend="disk", path={str(path)!r}, **{options!r})
        keys = [k for k, _ in kv.list(limit=0)]
        values = {{len(json.dumps(v)) for _, v in kv.list(limit=0)}}
        report(size=kv.size(), keys=keys, lengths=sorted(values))
        """
    )


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_fs("8m")``: a directory on a tmpfs of that size, under ``tmp_path``; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
            capture_output=True,
            check=False,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def _fill_the_rest(directory: Path) -> None:
    """A file beside the store (a backup, a log) takes every free block of the filesystem."""
    with open(directory / "backup.bin", "wb", buffering=0) as out:
        for chunk in (1 << 16, 4096, 512):
            try:
                while True:
                    out.write(b"\1" * chunk)
            except OSError:
                pass
    assert os.statvfs(directory).f_bavail == 0


# -- 1. SIGBUS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("writemap", [True, False])
def test_filling_a_small_filesystem_raises_full_and_deletes_then_work(small_fs, writemap: bool) -> None:  # type: ignore[no-untyped-def]
    """Default options on an 8 MiB filesystem: DiskStoreFullError (it used to be SIGBUS with writemap)."""
    path = small_fs("8m") / "s.lmdb"
    result = _ok(
        f"""
        kv = open_kv(backend="disk", path={str(path)!r}, writemap={writemap})
        n, exc = fill(kv, "k", 1000)
        assert exc is not None, "never full"
        for i in range(n):                      # deletes may use the reserve
            assert kv.delete(f"k{{i:07d}}")
        assert kv.size() == 0
        again, exc2 = fill(kv, "k", 1000)       # and the room is writable again
        assert exc2 is not None
        report(n=n, again=again, message=str(exc), blocks=os.stat({str(path)!r}).st_blocks * 512,
               size=os.stat({str(path)!r}).st_size)
        """
    )
    assert result["n"] > 1000
    assert result["again"] >= result["n"] * 0.9
    assert result["message"].startswith("DiskStoreFullError: the disk store is full")
    assert result["blocks"] >= result["size"]  # every byte of the map is allocated: no hole to fault on
    found = _keys_in(path, writemap=writemap)
    assert found["size"] == result["again"]
    assert found["keys"] == [f"k{i:07d}" for i in range(result["again"])]
    assert found["lengths"] == [1002]  # the JSON string of 1000 bytes


def test_a_file_beside_the_store_taking_the_space_is_no_sigbus_and_deletes_work(small_fs) -> None:  # type: ignore[no-untyped-def]
    """The map was sized while the disk had room; then a backup file takes the rest of the disk."""
    directory = small_fs("16m")
    path = directory / "s.lmdb"
    result = _ok(
        f"""
        kv = open_kv(backend="disk", path={str(path)!r}, map_size=1 << 20)
        n = 0
        while kv._backend._map_size < 4 << 20:   # grown twice, with room left on the disk
            kv.set(f"k{{n:07d}}", "x" * 100); n += 1
        take_the_rest({str(directory / "backup.bin")!r})
        assert os.statvfs({str(directory)!r}).f_bavail == 0
        more, exc = fill(kv, "m", 100)
        assert exc is not None
        for i in range(n):
            assert kv.delete(f"k{{i:07d}}")
        for i in range(more):
            assert kv.compare_and_delete(f"m{{i:07d}}", "x" * 100)
        assert kv.size() == 0
        again, exc = fill(kv, "a", 100)
        assert exc is not None
        report(n=n, more=more, again=again)
        """
    )
    assert result["more"] > 0 and result["again"] > result["n"]
    found = _keys_in(path)
    assert found["keys"] == [f"a{i:07d}" for i in range(result["again"])]


def test_a_sparse_store_of_an_older_version_is_backed_at_open_or_refused(small_fs) -> None:  # type: ignore[no-untyped-def]
    """An older version left the map sparse: opening fills the holes, or refuses when the disk cannot."""
    directory = small_fs("8m")
    path = directory / "s.lmdb"
    _ok(
        f"""
        kv = open_kv(backend="disk", path={str(path)!r}, map_size=1 << 20)
        for i in range(100):
            kv.set(f"k{{i:07d}}", i)
        kv.close()
        report()
        """
    )
    os.truncate(path, 4 << 20)  # what an older version's growth left: a 4 MiB map, mostly holes
    assert os.stat(path).st_blocks * 512 < 4 << 20
    assert _keys_in(path)["size"] == 100  # opened: the holes are now allocated
    assert os.stat(path).st_blocks * 512 >= 4 << 20

    os.truncate(path, 64 << 20)  # a map the 8 MiB disk can never back
    result = _ok(
        f"""
        try:
            open_kv(backend="disk", path={str(path)!r})
        except DiskStoreFullError as exc:
            report(refused=str(exc), cause=type(exc.__cause__).__name__)
        """
    )
    assert result["refused"].startswith("DiskStoreFullError: the disk store is full")
    assert result["cause"] == "OSError"
    os.truncate(path, 4 << 20)  # (the older version's 4 MiB map) the data is all there
    assert _keys_in(path)["keys"] == [f"k{i:07d}" for i in range(100)]


# -- 2. deletes on a full store -----------------------------------------------------------------


@pytest.mark.parametrize("track_keys", [True, False])
def test_every_delete_works_on_a_store_at_max_map_size(tmp_path: Path, track_keys: bool) -> None:
    """At max_map_size, writes that add data leave a reserve: every delete, clear and restore abandon works."""
    path = tmp_path / "s.lmdb"
    result = _ok(
        f"""
        from locust_kv.errors import SnapshotReadError
        kv = open_kv(backend="disk", path={str(path)!r}, map_size=1 << 16, max_map_size=4 << 20,
                     track_keys={track_keys})
        n, exc = fill(kv, "k", 100)
        assert exc is not None and kv._backend._map_size == 4 << 20
        failed = 0
        for i in range(n):
            try:
                assert kv.delete(f"k{{i:07d}}")
            except KVError:
                failed += 1
        again, exc = fill(kv, "k", 100)
        assert exc is not None
        kv.clear()
        assert kv.size() == 0
        final, exc = fill(kv, "f", 100)
        report(n=n, failed=failed, again=again, final=final)
        """
    )
    assert result["failed"] == 0
    assert result["again"] >= result["n"] * 0.9
    assert result["final"] >= result["n"] * 0.9
    found = _keys_in(path, map_size=1 << 16, max_map_size=4 << 20, track_keys=track_keys)
    assert found["keys"] == [f"f{i:07d}" for i in range(result["final"])]


def test_a_restore_that_fills_the_store_is_abandoned_and_the_live_data_kept(tmp_path: Path) -> None:
    """A restore too big for the map fails with DiskStoreFullError; dropping its half uses the reserve."""
    path = tmp_path / "s.lmdb"
    big = tmp_path / "big.kv"
    result = _ok(
        f"""
        source = open_kv(backend="memory", name="big")
        for i in range(40_000):
            source.set(f"r{{i:07d}}", "y" * 100)
        source.backup(file_name={str(big)!r})
        kv = open_kv(backend="disk", path={str(path)!r}, map_size=1 << 16, max_map_size=4 << 20)
        n, exc = fill(kv, "k", 100, limit=5_000)
        assert exc is None
        try:
            kv.restore(file_name={str(big)!r})
        except DiskStoreFullError as exc:
            message = str(exc)
        else:
            raise AssertionError("the restore fitted")
        assert kv.size() == n
        for i in range(n):
            assert kv.delete(f"k{{i:07d}}")
        kv.set("after", 1)
        report(n=n, message=message)
        """
    )
    assert result["message"].startswith("DiskStoreFullError")
    assert _keys_in(path, map_size=1 << 16, max_map_size=4 << 20)["keys"] == ["after"]


# -- 3. EIO from a full disk --------------------------------------------------------------------


def test_an_io_error_of_a_full_disk_at_commit_is_full_not_a_write_error(small_fs) -> None:  # type: ignore[no-untyped-def]
    """writemap=False: LMDB reports a short pwrite at commit as EIO; on a full disk that is DiskStoreFullError.

    locust_kv allocates the map's blocks before using them, so its own
    growth never leaves the commit without room; the test punches holes into
    the unused end of the file (as a sparse copy of a store, or a filesystem
    that deduplicates zeros, would) and lets a backup take all but 64 KiB of the freed blocks.
    """
    directory = small_fs("16m")
    path = directory / "s.lmdb"
    result = _ok(
        f"""
        import ctypes, ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        kv = open_kv(backend="disk", path={str(path)!r}, writemap=False, map_size=8 << 20)
        for i in range(100):
            kv.set(f"k{{i:07d}}", i)
        used = (kv._backend._env.info()["last_pgno"] + 1) * 4096
        fd = os.open({str(path)!r}, os.O_RDWR)
        # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: the end of the file becomes a hole again.
        if libc.fallocate(fd, 3, used, os.fstat(fd).st_size - used) != 0:
            raise OSError(ctypes.get_errno(), "punch hole")
        os.close(fd)
        take_the_rest({str(directory / "backup.bin")!r})
        # Leave 64 KiB free: the commit's pwrite then writes part of its pages and comes up short.
        backup = {str(directory / "backup.bin")!r}
        os.truncate(backup, os.stat(backup).st_size - (64 << 10))
        errors = []
        for attempt in range(3):
            try:
                kv.set(f"big{{attempt}}", "z" * 200_000)   # overflow pages: one pwrite past the holes
            except KVError as exc:
                errors.append((type(exc).__name__, str(exc), type(exc.__cause__).__name__, str(exc.__cause__)))
        assert kv.get("k0000050") == 50                     # still readable
        assert kv.delete("k0000099")                         # deletes need no new block of the file
        report(errors=errors)
        """
    )
    assert len(result["errors"]) == 3
    for name, message, cause, cause_text in result["errors"]:
        assert name == "DiskStoreFullError", (message, cause_text)
        assert cause == "Error" and "Input/output error" in cause_text
    found = _keys_in(path, writemap=False, map_size=8 << 20)
    assert found["keys"] == [f"k{i:07d}" for i in range(99)]
