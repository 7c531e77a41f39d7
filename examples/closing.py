"""Closing: handles, close(), StoreClosedError, and the store the plugin closes for you.

    locust -f examples/closing.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``open_kv`` returns a new *handle* on the store each time; handles with
equal options share the data. ``close()`` closes one handle: later calls on
it raise StoreClosedError, other handles keep working, and the store itself
closes with its last handle (a memory store's data is then dropped).
Closing twice does nothing. A handle is also a context manager.

``environment.kv`` belongs to the plugin, which closes it when Locust quits:
never close it yourself. Close the handles you open.

Here each user opens its own handle on a named memory store, a scratchpad
for the run, and closes it in ``on_stop``; the check verifies that the
plugin's store was untouched by all that, and that every handle was closed.
A failed check exits 1.
"""

from __future__ import annotations

import logging

from locust import User, between, task

from locust_kv import open_kv
from locust_kv.errors import StoreClosedError
from locust_kv.plugin import after_load, before_load

logger = logging.getLogger("examples.closing")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    first = open_kv(backend="memory", name="tour")
    second = open_kv(backend="memory", name="tour")      # another handle on the same data
    first.set("note", "kept while a handle is open")
    first.close()
    assert first.closed and not second.closed
    try:
        first.get("note")
    except StoreClosedError as err:
        assert err.name == "StoreClosedError"
    else:
        raise AssertionError("a closed handle answered")
    first.close()                                        # closing twice does nothing
    assert second.get("note") == "kept while a handle is open"
    second.close()                                       # the last handle: the data goes

    with open_kv(backend="memory", name="tour") as third:  # a fresh, empty store
        assert third.size() == 0
    assert third.closed


class Worker(User):
    wait_time = between(0.005, 0.02)

    def on_start(self):
        self.scratch = open_kv(backend="memory", name="scratchpad")
        self.environment.kv.increment_by("handles:opened", 1)

    @task
    def work(self):
        done = self.scratch.increment_by("work:done", 1)
        self.environment.kv.set("work:last-seen", done)

    def on_stop(self):
        self.scratch.close()
        try:
            self.scratch.increment_by("work:done", 1)
        except StoreClosedError:
            self.environment.kv.increment_by("handles:closed", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    opened = kv.get("handles:opened")
    closed = kv.get("handles:closed") if kv.exists("handles:closed") else 0
    with open_kv(backend="memory", name="scratchpad") as scratch:
        left = scratch.size()  # every user's handle is closed: this one opened a new, empty store
    checks = {
        f"{closed} of {opened} user handles closed": closed == opened,
        "the scratchpad went with its last handle": left == 0,
        "the plugin's store is still open": not kv.closed and kv.exists("work:last-seen"),
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
