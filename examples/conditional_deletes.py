"""compare_and_delete and delete_if_exists: deletes that tell you whether you were the one.

    locust -f examples/conditional_deletes.py --headless -u 20 -r 20 -t 3s --kv-backend memory

``delete_if_exists(key)`` returns True only if the key was there (``delete``
always returns True). ``compare_and_delete(key, old)`` deletes only if the
key still holds ``old``, so a value changed since you read it survives.

Under load, holders take short leases on a pool of resources; each lease
records its holder. Holders give their own lease back with
``compare_and_delete`` (never someone else's), and reapers, racing each
other, remove expired leases with ``compare_and_delete`` of the value they
read, and one-shot coupons with ``delete_if_exists``. After the load: every
coupon was redeemed exactly once, and every lease was ended exactly once (by
its holder or by one reaper) or is still held. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random
import time

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

RESOURCES = 50
COUPONS = 300
logger = logging.getLogger("examples.conditional_deletes")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.set("session", {"user": "ann", "expires": 1})
    assert kv.compare_and_delete("session", {"user": "ann", "expires": 2}) is False  # changed since: kept
    assert kv.compare_and_delete("session", {"user": "ann", "expires": 1}) is True
    assert kv.delete_if_exists("session") is False    # already gone
    assert kv.delete("session") is True               # plain delete cannot tell

    for n in range(COUPONS):
        kv.set(f"coupon:{n:04d}", {"discount": 10})


class Holder(User):
    weight = 3
    wait_time = between(0.001, 0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"holder-{id(self):x}"

    @task
    def use_a_resource(self):
        kv = self.kv
        resource = random.randrange(RESOURCES)
        lease_id = kv.increment_by("leases:next-id", 1)
        lease = {"id": lease_id, "holder": self.me, "expires": time.time() + 0.01}
        if not kv.compare_and_swap(f"lease:{resource:02d}", None, lease):
            return  # someone holds it
        if random.random() < 0.5 and kv.compare_and_delete(f"lease:{resource:02d}", lease):
            kv.increment_by(f"ended:{lease_id}", 1)  # given back by its holder; else left to expire


class Reaper(User):
    weight = 1
    wait_time = between(0.001, 0.01)

    @task
    def reap(self):
        kv = self.environment.kv
        for entry in kv.list(prefix="lease:"):
            if entry.value["expires"] < time.time() and kv.compare_and_delete(entry.key, entry.value):
                kv.increment_by(f"ended:{entry.value['id']}", 1)
        coupon = kv.random_key(prefix="coupon:")
        if coupon and kv.delete_if_exists(coupon):
            kv.increment_by("coupons:redeemed", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    issued = kv.get("leases:next-id") if kv.exists("leases:next-id") else 0
    ended = {int(entry.key.split(":")[1]): entry.value for entry in kv.list(prefix="ended:")}
    held = {entry.value["id"] for entry in kv.list(prefix="lease:")}
    twice = [lease for lease, times in ended.items() if times != 1]
    both = held & set(ended)
    redeemed = kv.get("coupons:redeemed") if kv.exists("coupons:redeemed") else 0
    left = len(kv.list(prefix="coupon:"))
    checks = {
        f"no lease ended twice ({len(ended)} ended of {issued})": not twice,
        f"no lease both held and ended ({len(held)} held)": not both,
        f"{redeemed} coupons redeemed + {left} left = {COUPONS}": redeemed + left == COUPONS,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
