"""Letting other greenlets run during long work.

Locust runs every user as a greenlet on one OS thread. Work that takes more
than a few milliseconds (clearing or restoring a million keys) calls
:func:`pause` between chunks so the process's other greenlets keep running;
a wait (a lock's tries) calls :func:`sleep`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any, TypeVar

_T = TypeVar("_T")

__all__ = ["CHUNK", "greenlet_hub", "offload", "pause", "sleep"]

CHUNK = 10_000
"""Entries handled between two pauses: about a millisecond of work."""

_LOOP_EVERY = 0.002
"""Seconds after which a pause lets the hub run a whole loop iteration (timers, I/O)."""

_last_loop = 0.0


def greenlet_hub() -> Any:
    """The gevent hub of this thread when called from a greenlet other than the hub; else None.

    Never creates a hub (``get_hub()`` would, in a thread that has none), and
    never imports gevent: a program that did not import it has no greenlets.
    """
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return None
    from gevent._hub_local import get_hub_if_exists

    hub = get_hub_if_exists()
    if hub is None or gevent.getcurrent() is hub:
        return None
    return hub


def offload(function: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call (an fsync) in gevent's threadpool when called from a greenlet, so the hub keeps running.

    Runs it inline when there is no usable pool: outside a greenlet, and in
    a process forked (plain ``os.fork``, without gevent's monkey patching or
    ``gevent.reinit()``) from the one that started the pool. Such a pool
    believes its worker threads exist, but fork() kept none of them, so a
    task given to it would never run. A short fsync inline only pauses the
    hub for as long as the disk takes.
    """
    hub = greenlet_hub()
    if hub is not None:
        pool = getattr(hub, "_threadpool", None)  # None until first use: then created in this process
        if pool is None or getattr(pool, "pid", None) == os.getpid():
            result: _T = hub.threadpool.apply(function, args)  # (gevent is untyped)
            return result
    return function(*args)


def pause() -> None:
    """Yield to other greenlets if this thread runs a gevent hub; otherwise do nothing."""
    if greenlet_hub() is None:
        return
    gevent = sys.modules["gevent"]
    global _last_loop
    # sleep(0) only runs greenlets that are already ready, and the hub runs up
    # to 50 such callbacks before it looks at timers and I/O again: a loop of
    # 5 ms chunks ending in sleep(0) kept sleeping greenlets (a heartbeat, a
    # user's wait_time) from running for 250 ms. A timed sleep makes the hub
    # run a whole loop iteration; it costs a few microseconds more than
    # sleep(0) (7 us against 4 us measured), so take it every 2 ms: a stall
    # is then at most 2 ms plus one step of the caller's work.
    now = perf_counter()
    if now - _last_loop >= _LOOP_EVERY:
        gevent.sleep(0.000001)
        _last_loop = perf_counter()
    else:
        gevent.sleep(0)


def sleep(seconds: float) -> None:
    """Wait ``seconds``; the other greenlets of this thread run meanwhile when it has a gevent hub.

    ``time.sleep`` would block a hub that gevent did not monkey-patch in;
    outside greenlets it is what runs.
    """
    if greenlet_hub() is not None:
        sys.modules["gevent"].sleep(seconds)
    else:
        time.sleep(seconds)
