"""State that never heals: what a killed process, a killed greenlet or a fork leaves behind.

Each test makes the fault for real (kill -9 of a child process that holds a
read transaction or runs a rebuild, gevent.kill of a rebuilding greenlet,
os.fork without gevent's monkey patching) and checks that the store heals by
itself, by its state, never by timing.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from locust_kv import open_kv

from .disk_helpers import fork_call, python_child, wait_exit

# ---------------------------------------------------------------------------
# Item 3: backup() in a child forked (plain os.fork) from a program that used gevent unpatched.


def test_backup_in_a_child_forked_without_monkey_patching_finishes(tmp_path: Path) -> None:
    # A fresh interpreter, so that no test of this session monkey-patched os.fork.
    script = f"""
        import os, sys, time
        import gevent
        from locust_kv import open_kv

        assert "gevent.monkey" not in sys.modules or not gevent.monkey.is_module_patched("os")
        kv = open_kv(backend="disk", path={str(tmp_path / "s.lmdb")!r})
        kv.set("k", 1)
        gevent.sleep(0)  # this thread runs a hub now
        kv.backup({str(tmp_path / "parent.snapshot")!r})  # fsync went to the hub's threadpool: it has threads
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                summary = kv.backup({str(tmp_path / "child.snapshot")!r})
                code = 0 if summary.total_entries == 1 else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print(os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("hung")
        """
    out = python_child(script)
    try:
        stdout, stderr = out.communicate(timeout=120)
    finally:
        if out.poll() is None:
            out.kill()
    assert out.returncode == 0, stderr
    assert stdout.split() == ["0"], (stdout, stderr)
    with open_kv(backend="memory", name=str(tmp_path)) as check:
        assert check.restore(tmp_path / "child.snapshot").total_entries == 1


# ---------------------------------------------------------------------------
# Item 1: a reader slot left by a process killed during backup() does not make the file grow for good.


def _stale_reader_txns(env: object) -> list[tuple[int, str]]:
    """(pid, txnid) of every reader slot that holds a transaction, from LMDB's reader table."""
    rows = []
    for line in env.readers().splitlines()[1:]:  # type: ignore[attr-defined]
        fields = line.split()
        if fields and fields[0].isdigit() and fields[-1] != "-":
            rows.append((int(fields[0]), fields[-1]))
    return rows


def _hold_backup_and_signal(kv: object, write_fd: int) -> None:  # pragma: no cover - runs in the child
    """In the child: start a backup, read its first batch, say so, and wait to be killed."""
    reader = kv._backend.begin_backup(False)  # type: ignore[attr-defined]
    next(iter(reader.batches(1)))
    os.write(write_fd, b"1")
    while True:
        signal.pause()


def test_a_process_killed_mid_backup_does_not_make_the_store_grow_until_full(tmp_path: Path) -> None:
    size = 1 << 20  # 256 pages: a store that cannot grow at all
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=size, max_map_size=size)
    try:
        for i in range(20):
            kv.set(f"other{i}", i)
        kv.set("hot", "v" * 3000)  # an overflow page per version
        read_fd, write_fd = os.pipe()
        pid = fork_call(_hold_backup_and_signal, kv, write_fd)
        try:
            assert os.read(read_fd, 1) == b"1"  # the child holds the backup's read transaction
        finally:
            os.kill(pid, signal.SIGKILL)
            assert wait_exit(pid) == -signal.SIGKILL
            os.close(read_fd)
            os.close(write_fd)
        env = kv._backend._env
        assert pid in [p for p, _ in _stale_reader_txns(env)]  # its slot pins the snapshot it read
        for n in range(2_000):  # each overwrite frees the previous version's pages
            kv.set("hot", f"{n:04d}" + "v" * 2996)
        assert kv.get("hot").startswith("1999")
        assert pid not in [p for p, _ in _stale_reader_txns(kv._backend._env)]
        assert kv.size() == 21
        assert kv.backup(tmp_path / "after.snapshot").total_entries == 21  # a backup can run again
    finally:
        kv.close()


@pytest.mark.parametrize("operation", ["backup", "restore", "clear"])
def test_backup_restore_and_clear_reclaim_the_slot_of_a_killed_backup(tmp_path: Path, operation: str) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    try:
        kv.set("k", 1)
        kv.backup(tmp_path / "seed.snapshot")
        read_fd, write_fd = os.pipe()
        pid = fork_call(_hold_backup_and_signal, kv, write_fd)
        try:
            assert os.read(read_fd, 1) == b"1"
        finally:
            os.kill(pid, signal.SIGKILL)
            assert wait_exit(pid) == -signal.SIGKILL
            os.close(read_fd)
            os.close(write_fd)
        assert pid in [p for p, _ in _stale_reader_txns(kv._backend._env)]
        if operation == "backup":
            kv.backup(tmp_path / "again.snapshot")
        elif operation == "restore":
            kv.restore(tmp_path / "seed.snapshot")
        else:
            kv.clear()
        assert pid not in [p for p, _ in _stale_reader_txns(kv._backend._env)]
    finally:
        kv.close()


# ---------------------------------------------------------------------------
# Item 2: a rebuild whose process was killed, or whose greenlet was killed, does not leave the
# index "being built" forever: the next random_key() that finds it orphaned resumes it.


def _fill(kv: object, n: int) -> None:
    rows = [(b"k%06d" % i, b"%d" % i) for i in range(n)]
    kv._backend.replace_all(iter([(rows, None)]))  # type: ignore[attr-defined]


def _index_status(kv: object) -> bytes:
    kv.size()  # type: ignore[attr-defined] # adopts the current state
    return kv._backend._view.state.index  # type: ignore[attr-defined, no-any-return]


def _rebuild_until_first_pause(kv: object, write_fd: int) -> None:  # pragma: no cover - runs in the child
    """In the child: rebuild; at the first pause between slices, say so and wait to be killed."""
    from locust_kv.backends.lmdb import backend

    def frozen() -> None:
        os.write(write_fd, b"1")
        while True:
            signal.pause()

    backend.pause = frozen  # the hook only tells the parent when the build is under way
    kv.rebuild_key_list()  # type: ignore[attr-defined]


def test_a_rebuild_killed_with_its_process_is_resumed_by_the_next_random_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locust_kv.backends.lmdb import layout

    from .test_disk_index import assert_index_matches_data

    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)  # a slice per 256 keys: the build takes many
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    try:
        _fill(kv, 20_000)
        assert _index_status(kv) == b"v"
        read_fd, write_fd = os.pipe()
        pid = fork_call(_rebuild_until_first_pause, kv, write_fd)
        try:
            assert os.read(read_fd, 1) == b"1"
            building = _index_status(kv)
            assert building.startswith(b"b%d." % pid)  # the marker names its owner
            assert kv.random_key() != ""  # a live builder is left alone: this one walks
            assert _index_status(kv) == building
        finally:
            os.kill(pid, signal.SIGKILL)
            assert wait_exit(pid) == -signal.SIGKILL
            os.close(read_fd)
            os.close(write_fd)
        assert _index_status(kv) == building  # being built, by a dead process
        kv.set("new", 1)  # writers keep the partial index up meanwhile
        kv.delete("k000003")
        kv.delete("k019999")
        assert kv.random_key() != ""
        assert _index_status(kv) == b"v"  # healed, without a manual rebuild
        assert_index_matches_data(kv)
    finally:
        kv.close()


def test_a_rebuild_whose_greenlet_is_killed_is_resumed_by_the_next_random_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gevent

    from locust_kv.backends.lmdb import layout

    from .test_disk_index import assert_index_matches_data

    monkeypatch.setattr(layout, "SLICE_SECONDS", 0.0)
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    try:
        _fill(kv, 20_000)
        rebuilding = gevent.spawn(kv.rebuild_key_list)
        while not _index_status(kv).startswith(b"b"):
            gevent.sleep(0)
        gevent.sleep(0)  # a slice or two
        rebuilding.kill(block=True)  # GreenletExit at its next switch, as Locust stops its users
        assert rebuilding.dead and isinstance(rebuilding.value, gevent.GreenletExit)
        assert _index_status(kv).startswith(b"b")  # left half built
        kv.set("new", 1)
        assert kv.random_key() != ""
        assert _index_status(kv) == b"v"
        assert_index_matches_data(kv)
        assert kv.rebuild_key_list() is True  # and a rebuild still works afterwards
        assert_index_matches_data(kv)
    finally:
        kv.close()
