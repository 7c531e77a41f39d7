"""compare_and_swap: write only if the stored value is still the one you read.

    locust -f examples/compare_and_swap.py --headless -u 20 -r 20 -t 3s --kv-backend memory

``compare_and_swap(key, old, new)`` stores ``new`` and returns True only if
the key holds ``old``; ``old=None`` means "only if the key is absent".
Values compare by their serialized form, so under json two dicts with the
same items compare equal whatever their key order.

Under load, users reserve seats in an inventory record with the classic
read, compute, compare-and-swap loop, retrying when another user changed
the record in between. After the load: seats reserved plus seats left equal
the capacity, and the record's version counts every reservation. A failed
check exits 1.
"""

from __future__ import annotations

import logging

import gevent
from locust import User, between, task

from locust_kv.plugin import after_load, before_load

CAPACITY = 500
logger = logging.getLogger("examples.compare_and_swap")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.delete("lock")
    assert kv.compare_and_swap("lock", None, "worker-1") is True    # None: only if absent
    assert kv.compare_and_swap("lock", None, "worker-2") is False   # present now
    assert kv.compare_and_swap("lock", "worker-1", "worker-2") is True
    kv.delete("lock")
    assert kv.compare_and_swap("lock", "worker-2", "x") is False    # a missing key matches no old value

    kv.set("doc", {"a": 1, "b": 2})
    assert kv.compare_and_swap("doc", {"b": 2, "a": 1}, {"a": 3}) is True  # key order does not matter

    kv.set("inventory", {"left": CAPACITY, "version": 0})


class Buyer(User):
    wait_time = between(0.001, 0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"buyer-{id(self):x}"
        self.seats = 0
        self.retries = 0

    @task
    def reserve_seat(self):
        while True:
            current = self.kv.get("inventory")
            if current["left"] == 0:
                return  # sold out
            gevent.sleep(0)  # computing the change takes a moment: other buyers may write meanwhile
            updated = {"left": current["left"] - 1, "version": current["version"] + 1}
            if self.kv.compare_and_swap("inventory", current, updated):
                break
            self.retries += 1  # someone else changed it first: read again
        self.seats += 1
        self.kv.set(f"reserved:{self.me}", {"seats": self.seats, "retries": self.retries})


@after_load.add_listener
def check(environment, kv, **_kwargs):
    inventory = kv.get("inventory")
    ledgers = [entry.value for entry in kv.list(prefix="reserved:")]
    reserved = sum(ledger["seats"] for ledger in ledgers)
    retries = sum(ledger["retries"] for ledger in ledgers)
    checks = {
        f"{reserved} reserved + {inventory['left']} left = {CAPACITY} seats": reserved + inventory["left"] == CAPACITY,
        f"version {inventory['version']} counts every reservation": inventory["version"] == reserved,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed (%d conflicts retried): %s", retries, "; ".join(checks))
