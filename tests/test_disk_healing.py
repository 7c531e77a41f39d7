"""State that never heals: what a killed process, a killed greenlet or a fork leaves behind.

Each test makes the fault for real (kill -9 of a child process that holds a
read transaction or runs a rebuild, gevent.kill of a rebuilding greenlet,
os.fork without gevent's monkey patching) and checks that the store heals by
itself, by its state, never by timing.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from locust_kv import open_kv

from .disk_helpers import python_child, wait_exit

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
