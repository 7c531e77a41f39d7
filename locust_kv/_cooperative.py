"""Letting other greenlets run during long work.

Locust runs every user as a greenlet on one OS thread. Work that takes more
than a few milliseconds (clearing or restoring a million keys) calls
:func:`pause` between chunks so the process's other greenlets keep running.
"""

from __future__ import annotations

import sys

__all__ = ["CHUNK", "pause"]

CHUNK = 10_000
"""Entries handled between two pauses: about a millisecond of work."""


def pause() -> None:
    """Yield to other greenlets if this thread runs a gevent hub; otherwise do nothing."""
    gevent = sys.modules.get("gevent")
    if gevent is None:
        return
    # get_hub() would create a hub in a thread that has none; this only looks.
    from gevent._hub_local import get_hub_if_exists

    hub = get_hub_if_exists()
    if hub is not None and gevent.getcurrent() is not hub:
        gevent.sleep(0)
