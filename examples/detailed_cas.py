"""set_if_absent, compare_and_swap_detailed, and get with a default: writes that say why.

    locust -f examples/detailed_cas.py --headless -u 20 -r 20 -t 3s --kv-backend memory

- ``set_if_absent(key, value)`` stores only when the key is absent and
  returns whether it did: a one-call "first writer wins".
- ``compare_and_swap_detailed(key, old, new)`` is ``compare_and_swap``
  returning ``(swapped, reason, existed, current)``: when the swap fails,
  ``current`` is the value that beat you, so no second read is needed (and
  none can race). ``compare_and_delete_detailed(key, old)`` is the same for
  deletes.
- ``get(key, default)`` returns ``default`` for an absent key instead of
  raising KeyNotFoundError, in one atomic read.

Under load, fans book seats at a concert: each picks a seat and swaps it
from "free" to its own id; a fan that loses learns who took it from
``current``. One booking in five is cancelled by swapping the seat back.
Each fan registers once with ``set_if_absent`` and reads preferences with a
default. After the load: every seat is free or held by the fan whose
bookings say so, the bookings add up, and every lost swap named another
fan. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

SEATS = 300
logger = logging.getLogger("examples.detailed_cas")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    assert kv.set_if_absent("config", {"theme": "dark"}) is True       # stored
    assert kv.set_if_absent("config", {"theme": "light"}) is False     # already there: unchanged
    assert kv.get("config") == {"theme": "dark"}
    assert kv.get("missing", None) is None                             # a default instead of KeyNotFoundError
    assert kv.get("missing", {"theme": "auto"}) == {"theme": "auto"}

    kv.set("seat:A1", "free")
    result = kv.compare_and_swap_detailed("seat:A1", "free", "fan-1")
    assert result == (True, "swapped", True, None)                     # (swapped, reason, existed, current)
    result = kv.compare_and_swap_detailed("seat:A1", "free", "fan-2")
    assert (result.swapped, result.reason, result.current) == (False, "mismatch", "fan-1")  # who beat you
    result = kv.compare_and_swap_detailed("seat:B7", "free", "fan-2")
    assert (result.swapped, result.existed, result.current) == (False, False, None)        # no such seat
    assert kv.compare_and_swap_detailed("seat:B7", None, "fan-2").swapped                   # None: only if absent
    result = kv.compare_and_delete_detailed("seat:A1", "fan-2")
    assert (result.deleted, result.current) == (False, "fan-1")
    assert kv.compare_and_delete_detailed("seat:A1", "fan-1") == (True, "deleted", True, None)
    kv.clear()

    kv.set_many({f"seat:{n:03d}": "free" for n in range(SEATS)})


class Fan(User):
    wait_time = between(0.001, 0.005)

    def on_start(self):
        kv = self.environment.kv
        self.me = f"fan-{kv.increment_by('fans', 1)}"
        if not kv.set_if_absent(f"profile:{self.me}", {"joined": True}):
            kv.increment_by("profiles:registered-twice", 1)
        self.prefs = kv.get(f"prefs:{self.me}", {"row": "any"})  # nobody set them: the default

    @task
    def book(self):
        kv = self.environment.kv
        seat = f"seat:{random.randrange(SEATS):03d}"
        result = kv.compare_and_swap_detailed(seat, "free", self.me)
        if not result.swapped:
            # Taken: `current` says by whom, with no second read.
            if result.current == "free" or not result.existed:
                kv.increment_by("swaps:lost-without-a-winner", 1)
            kv.increment_by("swaps:lost", 1)
            return
        kv.increment_by(f"booked:{self.me}", 1)
        if random.random() < 0.2:
            cancel = kv.compare_and_swap_detailed(seat, self.me, "free")
            if cancel.swapped:
                kv.increment_by(f"booked:{self.me}", -1)
            else:
                kv.increment_by("cancels:failed", 1)  # someone changed a seat this fan held


@after_load.add_listener
def check(environment, kv, **_kwargs):
    holders = [entry.value for entry in kv.list("seat:") if entry.value != "free"]
    held_by = {}
    for fan in holders:
        held_by[fan] = held_by.get(fan, 0) + 1
    booked = {entry.key.removeprefix("booked:"): entry.value for entry in kv.list("booked:")}
    mismatched = [fan for fan in set(booked) | set(held_by) if booked.get(fan, 0) != held_by.get(fan, 0)]
    fans = kv.get("fans", 0)
    checks = {
        f"every fan holds the seats its bookings say ({len(holders)} of {SEATS} seats held)": not mismatched,
        "every lost swap named the fan that won": kv.get("swaps:lost-without-a-winner", 0) == 0,
        "no cancel failed": kv.get("cancels:failed", 0) == 0,
        f"each of {fans} fans registered once": kv.count("profile:") == fans and kv.get("profiles:registered-twice", 0) == 0,
        f"{kv.get('swaps:lost', 0)} swaps lost to another fan": len(holders) >= 50,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
