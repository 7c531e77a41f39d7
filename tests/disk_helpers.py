"""Helpers for the disk backend's tests: real child processes, and reading LMDB's file layout.

Children are either forked from the test process (``fork_call``: the Locust
case, a handle created before the fork) or fresh interpreters
(``run_python``: separate programs opening one path).
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

ROOT = Path(__file__).resolve().parent.parent


def fork_call(target: Callable[..., object], *args: Any) -> int:
    """Run ``target(*args)`` in a forked child; its pid. The child exits 0 on success, 1 on an exception."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            target(*args)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait_exit(pid: int, timeout: float = 120.0) -> int:
    """The exit status of child ``pid`` (negative: killed by that signal), waiting at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"child {pid} did not finish in {timeout} s")
        time.sleep(0.005)


def wait_all_ok(pids: list[int], timeout: float = 120.0) -> None:
    codes = [wait_exit(pid, timeout) for pid in pids]
    assert codes == [0] * len(pids), codes


def python_child(script: str, *, unprivileged: bool = False) -> subprocess.Popen[str]:
    """A fresh interpreter running ``script`` (dedented), with the repository importable."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_without_root_file_powers if unprivileged and os.geteuid() == 0 else None,
    )


def run_python(script: str, *, unprivileged: bool = False, timeout: float = 120.0) -> str:
    """Run ``script`` in a fresh interpreter; its stdout (it must exit 0)."""
    child = python_child(script, unprivileged=unprivileged)
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, err
    return out


_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3
_PR_CAPBSET_DROP = 24


def _without_root_file_powers() -> None:  # pragma: no cover - runs in the child
    """Before exec: drop the capabilities that let root ignore permission bits, so EACCES is real."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


# ---------------------------------------------------------------------------
# LMDB's file layout (0.9 engine), to damage a page on purpose.

_PAGE_HEADER = 16  # mp_pgno (8), mp_pad (2), mp_flags (2), lower/upper (4)
_META = struct.Struct("=IIQQ48s48sQQ")  # magic, version, address, mapsize, free db, main db, last page, txnid
_DB_ROOT = struct.Struct("=IHHQQQQQ")  # pad, flags, depth, branch, leaf, overflow, entries, root
_P_OVERFLOW = 0x04


def main_root_page(path: Path) -> int:
    """The page number of the main database's root, from the newer meta page."""
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "rb") as f:
        metas = []
        for n in (0, 1):
            f.seek(n * page + _PAGE_HEADER)
            metas.append(_META.unpack(f.read(_META.size)))
    newest = max(metas, key=lambda meta: meta[7])
    return _DB_ROOT.unpack(newest[5])[7]  # type: ignore[no-any-return]


def named_root_page(txn: lmdb.Transaction, name: bytes) -> int:
    """The root page of named database ``name``: its record in the main database."""
    record = txn.get(name)
    assert record is not None and len(record) == _DB_ROOT.size
    return _DB_ROOT.unpack(record)[7]  # type: ignore[no-any-return]


def damage_page(path: Path, pgno: int) -> bytes:
    """Make page ``pgno`` claim to be an overflow page (LMDB then says MDB_CORRUPTED); the bytes it had."""
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDWR)
    try:
        offset = pgno * page + 10  # mp_flags
        before = os.pread(fd, 2, offset)
        os.pwrite(fd, struct.pack("=H", _P_OVERFLOW), offset)
        return before
    finally:
        os.close(fd)


def repair_page(path: Path, pgno: int, before: bytes) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, before, pgno * page + 10)
    finally:
        os.close(fd)


def reader_pids(env: lmdb.Environment) -> list[int]:
    """The pids holding a reader slot, from LMDB's reader table."""
    pids = []
    for line in env.readers().splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            pids.append(int(fields[0]))
    return pids


# -- the rank index --------------------------------------------------------------------------------


def rank_index_problems(txn: lmdb.Transaction, slotof: Any, ranks_db: Any) -> list[str]:
    """What is wrong with one generation's rank index, checked against its indexed keys (``slotof``); [] when nothing.

    Every level in use has a head; an indexed key is a fence on exactly the
    levels up to its own (``ranks.level_of``); a fence of no indexed key (one
    kept after its key was deleted) is on all its levels and counts a key on
    its top one; each record counts the keys from it to the next fence of its level.
    """
    from bisect import bisect_left

    from locust_kv.backends.lmdb import ranks

    keys = [key for key, _ in txn.cursor(slotof)]
    levels: dict[int, list[tuple[bytes, int]]] = {}
    for record, raw in txn.cursor(ranks_db):
        levels.setdefault(record[0], []).append((record[1:], int.from_bytes(raw, "big")))
    problems = []
    top = max(levels, default=0)
    if sorted(levels) != list(range(1, top + 1)):
        problems.append(f"levels in use {sorted(levels)}, not 1..{top}")
    highest = max((ranks.level_of(key) for key in keys), default=0)
    if highest > top:
        problems.append(f"a key of level {highest} above the top level {top}")
    for level, fences in sorted(levels.items()):
        names = [fence for fence, _ in fences]
        if not names or names[0] != b"":
            problems.append(f"level {level} has no head")
            continue
        wanted = {key for key in keys if ranks.level_of(key) >= level}
        kept = set(names[1:]) - wanted
        if not wanted <= set(names) or any(ranks.level_of(fence) < level for fence in kept):
            problems.append(f"level {level}: fences {len(names) - 1}, keys of the level {len(wanted)}, kept {len(kept)}")
            continue
        if level > 1 and not set(names) <= {fence for fence, _ in levels[level - 1]}:
            problems.append(f"level {level} has fences that level {level - 1} lacks")
        bounds = [bisect_left(keys, name) for name in names] + [len(keys)]
        spans = [bounds[i + 1] - bounds[i] for i in range(len(names))]
        counted = [count for _, count in fences]
        if counted != spans:
            bad = next(i for i in range(len(spans)) if spans[i] != counted[i])
            problems.append(f"level {level}: fence {names[bad]!r} counts {counted[bad]}, its span holds {spans[bad]}")
    for fence in {fence for fences in levels.values() for fence, _ in fences[1:]} - set(keys):
        top_count = dict(levels.get(ranks.level_of(fence), [])).get(fence)
        if top_count == 0:
            problems.append(f"kept fence {fence!r} counts no key on its top level: it should have been removed")
    return problems


def assert_rank_index_matches(kv: Any) -> None:
    """The live generation's rank index counts exactly its indexed keys (a disk store's handle)."""
    backend = kv._backend
    backend.size()  # open the environment and adopt the current state
    view = backend._view
    with backend._env.begin() as txn:
        assert rank_index_problems(txn, view.slotof, view.ranks) == []


def use_fanout(monkeypatch: Any, bits: int) -> None:
    """Make the rank index's fences ``2**bits`` keys apart (levels appear at a few dozen keys); forked children inherit it."""
    from locust_kv.backends.lmdb import ranks

    monkeypatch.setattr(ranks, "FANOUT_BITS", bits)
    monkeypatch.setattr(ranks, "_MASK", (1 << bits) - 1)
    monkeypatch.setattr(ranks, "MAX_LEVEL", 64 // bits)


def rebuild_beside_writers(kv: Any, key_of: Callable[[int], str], span: int, writers: int) -> bool:
    """``kv.rebuild_key_list()`` while ``writers`` greenlets set and delete random keys ``key_of(0..span-1)``; its result."""
    import random

    import gevent

    stop = False

    def writer(n: int) -> None:
        rng = random.Random(n)
        while not stop:
            key = key_of(rng.randrange(span))
            kv.delete(key) if rng.random() < 0.5 else kv.set(key, n)
            gevent.sleep(0)

    running = [gevent.spawn(writer, n) for n in range(writers)]
    gevent.sleep(0)
    try:
        return bool(kv.rebuild_key_list())
    finally:
        stop = True
        gevent.joinall(running, raise_error=True)
