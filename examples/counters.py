"""Counters with increment_by: missing keys, negative deltas, 64-bit bounds and the two counter errors.

    locust -f examples/counters.py --headless -u 20 -r 20 -t 3s --kv-backend memory

Before the load, a tour of ``increment_by``'s rules. Then users count page
views (one shared total and one counter per page) and buy tickets from a
stock of TICKETS with a negative delta, giving a ticket back when the stock
went below zero. After the load: the total equals the sum of the page
counters and of what the users counted themselves, and exactly TICKETS
tickets were sold, never more. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random

from locust import User, between, task

from locust_kv.errors import KVError
from locust_kv.plugin import after_load, before_load

INT64_MAX = 2**63 - 1
TICKETS = 1_000
PAGES = ("home", "search", "product", "checkout")
logger = logging.getLogger("examples.counters")


def error_name(call, *args):
    """The catalogue name of the error ``call(*args)`` raises, or None if it raises none."""
    try:
        call(*args)
    except KVError as err:
        return err.name
    return None


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.delete("tour:counter")
    assert kv.increment_by("tour:counter", 5) == 5     # a missing key counts as 0
    assert kv.increment_by("tour:counter", -8) == -3   # deltas may be negative
    assert kv.get("tour:counter") == -3                # stored as decimal text; json reads an int back
    kv.set("tour:quoted", "41")
    assert kv.increment_by("tour:quoted", 1) == 42     # a JSON string holding a decimal counts too

    kv.set("tour:max", INT64_MAX)
    assert error_name(kv.increment_by, "tour:max", 1) == "ValueParseError"  # past signed 64-bit: refused
    assert kv.get("tour:max") == INT64_MAX                                     # ...and nothing written
    kv.set("tour:min", -INT64_MAX - 1)
    assert error_name(kv.increment_by, "tour:min", -1) == "ValueParseError"
    kv.set("tour:text", "ten")
    assert error_name(kv.increment_by, "tour:text", 1) == "ValueParseError"   # not an integer
    for delta in (1.5, True, "1", None):                                       # the delta must be an int,
        assert error_name(kv.increment_by, "tour:counter", delta) == "ValueNumberRequiredError"
    assert kv.get("tour:counter") == -3                                        # checked before the store

    kv.set("tickets:left", TICKETS)


class Visitor(User):
    wait_time = between(0.001, 0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"visitor:{id(self):x}"
        self.views = 0

    @task(4)
    def view_page(self):
        page = random.choice(PAGES)
        self.kv.increment_by(f"views:page:{page}", 1)
        self.kv.increment_by("views:total", 1)
        self.views += 1
        self.kv.set(f"counted:{self.me}", self.views)  # our own tally, for the check

    @task(1)
    def buy_ticket(self):
        left = self.kv.increment_by("tickets:left", -1)
        if left < 0:
            self.kv.increment_by("tickets:left", 1)  # sold out: give it back
            return
        self.kv.increment_by("tickets:sold", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    total = kv.get("views:total") if kv.exists("views:total") else 0
    pages = sum(entry.value for entry in kv.list(prefix="views:page:"))
    counted = sum(entry.value for entry in kv.list(prefix="counted:"))
    sold = kv.get("tickets:sold") if kv.exists("tickets:sold") else 0
    left = kv.get("tickets:left")
    checks = {
        f"the total ({total}) equals the page counters ({pages})": total == pages,
        f"the total ({total}) equals what the visitors counted ({counted})": total == counted,
        f"{sold} sold + {left} left = {TICKETS} tickets": sold + left == TICKETS and left >= 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
