"""Letting other greenlets run during long work.

Locust runs every user as a greenlet on one OS thread. Work that takes more
than a few milliseconds (clearing or restoring a million keys) calls
:func:`pause` between chunks so the process's other greenlets keep running.
"""

from __future__ import annotations

import sys
from time import perf_counter

__all__ = ["CHUNK", "pause"]

CHUNK = 10_000
"""Entries handled between two pauses: about a millisecond of work."""

_LOOP_EVERY = 0.005
"""Seconds after which a pause lets the hub run a whole loop iteration (timers, I/O)."""

_last_loop = 0.0


def pause() -> None:
    """Yield to other greenlets if this thread runs a gevent hub; otherwise do nothing."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return
    # get_hub() would create a hub in a thread that has none; this only looks.
    from gevent._hub_local import get_hub_if_exists

    hub = get_hub_if_exists()
    if hub is None or gevent.getcurrent() is hub:
        return
    global _last_loop
    # sleep(0) only runs greenlets that are already ready, and the hub runs up
    # to 50 such callbacks before it looks at timers and I/O again: a loop of
    # 5 ms chunks ending in sleep(0) kept sleeping greenlets (a heartbeat, a
    # user's wait_time) from running for 250 ms. A timed sleep makes the hub
    # run a whole loop iteration; it costs ~0.2 ms, so take it every 5 ms.
    now = perf_counter()
    if now - _last_loop >= _LOOP_EVERY:
        gevent.sleep(0.000001)
        _last_loop = perf_counter()
    else:
        gevent.sleep(0)
