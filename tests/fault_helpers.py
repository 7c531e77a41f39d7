"""Crash testing for the disk backend: real ``kill -9`` at numbered checkpoints, real full disks.

In the spirit of SQLite's crash tests. An operation runs in a forked child
whose checkpoints are armed (:func:`arm`): every step boundary of the
backend and the snapshot code (a transaction begun, its work done but not
yet committed, committed; a pause between batches; the map remapped and the
agreed size recorded; a temp file created, fsynced, renamed) is an event,
numbered in the order the child meets it. Run once unarmed, the child lists
its events; run again with ``kill_at=k``, it sends itself SIGKILL at event
``k``: a real kill -9, at a point chosen by the test rather than by timing.
The hooks only observe; nothing of the library is faked.

After each kill, :func:`check_store` opens the store in a fresh (forked)
process, reads every entry before any write can repair anything, then
proves nothing is stuck: ordinary writes, a backup, a rebuild, a clear and a
restore all succeed. Every wait has a timeout, so a hang fails the test.

:func:`small_tmpfs` mounts a real tmpfs of a few MiB under the test's
directory (root only) for the disk-full tests, and always unmounts it.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .disk_helpers import wait_exit

CHILD_TIMEOUT = 60.0
"""Seconds any child may run before the test calls it hung (it is then killed)."""


# ---------------------------------------------------------------------------
# Checkpoints, armed in a child process only.


class _Checkpoints:
    """The events a child meets, and the one at which it kills itself."""

    def __init__(self, kill_at: int | None, report: Path) -> None:
        self.kill_at = kill_at
        self.report = report
        self.events: list[str] = []
        self.acked = 0  # operations the child saw complete (for sequences of writes)

    def hit(self, name: str) -> None:
        index = len(self.events)
        self.events.append(name)
        if index == self.kill_at:
            fd = os.open(self.report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, json.dumps({"killed_at": name, "index": index, "acked": self.acked}).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


_armed: _Checkpoints | None = None


def ack() -> None:
    """Record, in an armed child, that one more operation of a sequence returned."""
    if _armed is not None:
        _armed.acked += 1


def _around(owner: Any, name: str, label: Callable[..., str] | None = None) -> None:
    """Replace ``owner.name`` by a wrapper that hits ``before`` and ``after`` events."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        assert _armed is not None
        what = label(*args) if label else name
        _armed.hit(f"before {what}")
        result = original(*args, **kwargs)
        _armed.hit(f"after {what}")
        return result

    setattr(owner, name, wrapper)


def arm(kill_at: int | None, report: Path) -> _Checkpoints:
    """In a child process: number every step boundary; SIGKILL this process at event ``kill_at``.

    ``kill_at`` None only records the events. Must never run in the test
    process itself: it patches the library for the rest of the process.
    """
    global _armed
    from locust_kv import snapshot
    from locust_kv.backends.lmdb import backend, engine, generations, growth, locks

    checkpoints = _armed = _Checkpoints(kill_at, report)
    run = engine.Engine._run

    def armed_run(
        self: Any, family: Any, write: bool, checked: bool, op: Callable[..., Any], args: tuple[Any, ...], *more: Any
    ) -> Any:
        name = getattr(op, "__name__", "op").lstrip("_")
        if write:
            inner = op

            def op(txn: Any, view: Any, *rest: Any) -> Any:
                result = inner(txn, view, *rest)
                checkpoints.hit(f"uncommitted {name}")  # the write transaction is open here
                return result

        checkpoints.hit(f"begin {name}")
        result = run(self, family, write, checked, op, args, *more)
        checkpoints.hit(f"done {name}")
        return result

    engine.Engine._run = armed_run  # type: ignore[method-assign]
    _around(growth, "set_mapsize", lambda env, size: f"remap to {size}")
    _around(locks.SideFile, "agree", lambda side, size: f"agree on {size}")
    for module in (backend, generations, snapshot):
        module.pause = lambda: checkpoints.hit("pause")  # type: ignore[attr-defined]
    _around(snapshot._AtomicFile, "__init__", lambda *_: "temp file")
    _around(snapshot.SnapshotWriter, "finish", lambda *_: "snapshot trailer")
    _around(os, "fsync", lambda *_: "fsync")
    _around(os, "replace", lambda *_: "rename into place")
    return checkpoints


# ---------------------------------------------------------------------------
# Children.


@dataclass
class ChildResult:
    """How a child ended: its exit code (negative: the signal), and what it reported."""

    code: int
    report: dict[str, Any] = field(default_factory=dict)
    pid: int = 0

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    def describe(self) -> str:
        if self.code < 0:
            return f"killed by {signal.Signals(-self.code).name} ({self.report})"
        return f"exit {self.code} ({self.report})"


def in_child(target: Callable[..., Any], *args: Any, report: Path, kill_at: int | None = None, arm_it: bool = False) -> ChildResult:
    """Run ``target(*args)`` in a forked child, optionally armed; how it ended.

    The child writes a JSON report to ``report``: ``{"result": ...}`` (what
    ``target`` returned, JSON-able) and, when armed, ``"events"``; on an
    exception ``{"error": name, "catalogued": bool, "message": ...}`` and exit
    3; when killed at a checkpoint, what :class:`_Checkpoints` wrote.
    """
    report.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        out: dict[str, Any] = {}
        faulthandler.disable()  # a death by signal is the parent's finding, not a traceback on stderr
        try:
            checkpoints = arm(kill_at, report) if arm_it else None
            out["result"] = target(*args)
            if checkpoints is not None:
                out["events"] = checkpoints.events
                out["acked"] = checkpoints.acked
        except BaseException as exc:  # noqa: BLE001 - reported to the parent by name
            from locust_kv.errors import KVError, UnknownError

            out = {
                "acked": _armed.acked if _armed is not None else 0,
                "error": type(exc).__name__,
                "catalogued": isinstance(exc, KVError) and not isinstance(exc, UnknownError),
                "message": str(exc),
                "traceback": traceback.format_exc(),
            }
            code = 3
        finally:
            try:
                report.write_text(json.dumps(out, default=repr))
            finally:
                os._exit(code)
    code = wait_exit(pid, CHILD_TIMEOUT)
    try:
        data = json.loads(report.read_text())
    except (FileNotFoundError, ValueError):
        data = {}
    return ChildResult(code, data, pid)


def first_event(events: list[str], name: str, after: str | None = None) -> int:
    """The index of the first event called ``name`` (after the first one called ``after``, if given)."""
    start = events.index(after) + 1 if after is not None else 0
    return events.index(name, start)


def kill_after(setup: Callable[..., Any], operation: Callable[..., Any], args: tuple[Any, ...], delay: float, ready: Path) -> ChildResult:
    """Fork a child that runs ``setup(*args)``, says it is ready, then runs ``operation(*args)``; SIGKILL it ``delay`` s later.

    For points no checkpoint names (inside an LMDB commit, inside a write of
    the snapshot). Where the kill lands varies from run to run; the test
    asserts only the invariants, never a timing.
    """
    ready.unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        faulthandler.disable()
        code = 0
        try:
            setup(*args)
            ready.touch()
            operation(*args)
        except BaseException:  # noqa: BLE001 - the exit code says it failed
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not ready.exists():
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return ChildResult(os.waitstatus_to_exitcode(status), {}, pid)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError("the child never became ready")
        time.sleep(0.001)
    time.sleep(delay)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return ChildResult(wait_exit(pid, CHILD_TIMEOUT), {}, pid)


def kill_points(events: list[str], most: int = 8) -> list[int]:
    """Up to ``most`` event indices spread evenly over ``events``, always the first and the last."""
    count = len(events)
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


# ---------------------------------------------------------------------------
# The invariants, checked in a fresh process.


def read_store(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every entry of the store (key -> value), read before anything writes; and its state record."""
    from locust_kv import open_kv
    from locust_kv.backends.lmdb import layout

    kv = open_kv(backend="disk", path=path, **options)
    try:
        entries = {entry.key: entry.value for entry in kv.scan().entries}
        backend = kv._backend
        with backend._env.begin() as txn:
            state = txn.get(layout.STATE_KEY).decode()
        return {"entries": entries, "size": kv.size(), "state": state}
    finally:
        kv.close()


def prove_usable(path: str, options: dict[str, Any], scratch: str) -> list[str]:
    """Every kind of operation works on the store; the steps that failed, with their error names.

    Leaves the store holding what it held (through a backup, a clear and a
    restore of that backup), plus nothing.
    """
    from locust_kv import open_kv

    failures: list[str] = []
    kv = open_kv(backend="disk", path=path, **options)
    try:
        before = {entry.key: entry.value for entry in kv.scan().entries}
        steps: list[tuple[str, Callable[[], object]]] = [
            ("set", lambda: kv.set("fault:probe", 1)),
            ("increment_by", lambda: kv.increment_by("fault:probe", 1) == 2 or "wrong count"),
            ("delete", lambda: kv.delete("fault:probe")),
            ("backup", lambda: kv.backup(scratch).total_entries == len(before) or "wrong backup count"),
            ("rebuild_key_list", kv.rebuild_key_list),
            ("random_key", lambda: (kv.random_key() in before) if before else kv.random_key() == ""),
            ("clear", lambda: kv.clear() and kv.size() == 0 or "clear left keys"),
            ("restore", lambda: kv.restore(scratch).total_entries == len(before) or "wrong restore count"),
            ("data back", lambda: {e.key: e.value for e in kv.scan().entries} == before or "data differs"),
        ]
        for name, step in steps:
            try:
                outcome = step()
            except Exception as exc:  # noqa: BLE001 - reported by name
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if outcome is False or isinstance(outcome, str):
                failures.append(f"{name}: {outcome}")
    finally:
        kv.close()
    return failures


def check_store(path: str, options: dict[str, Any], scratch: Path, report: Path) -> tuple[dict[str, Any], list[str]]:
    """In fresh processes: what the store holds, then the steps that fail when it is used; asserts both ran."""
    seen = in_child(read_store, path, options, report=report)
    assert seen.code == 0, f"the store does not open or read after the fault: {seen.describe()}"
    used = in_child(prove_usable, path, options, str(scratch), report=report)
    assert used.code == 0, f"using the store after the fault failed: {used.describe()}"
    return seen.report["result"], used.report["result"]


def leftover_temp_files(directory: Path) -> list[str]:
    """Temp files of atomic writes (``.<name>.<hex>.tmp``) left in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------
# A small real filesystem that fills up.


def tmpfs_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    return None


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (created), unmounted on exit whatever happens.

    Raises RuntimeError with mount's reason when it cannot be mounted (the
    caller skips).
    """
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


def fill(directory: Path, leave: int) -> Path:
    """Write a ballast file in ``directory`` until at most ``leave`` bytes stay free; its path."""
    ballast = directory / "ballast"
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    chunk = b"\xff" * (1 << 16)
    with open(ballast, "ab") as file:
        remaining = max(0, free - leave)
        while remaining > 0:
            try:
                remaining -= file.write(chunk[: min(len(chunk), remaining)])
                file.flush()
            except OSError:
                break
    return ballast


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize
