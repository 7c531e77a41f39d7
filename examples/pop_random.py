"""pop_random: a consume-once queue of test data, each entry handed to exactly one user.

    locust -f examples/pop_random.py --headless -u 20 -r 20 -t 3s --kv-backend memory

``pop_random(prefix)`` removes one entry of the prefix, chosen uniformly, and
returns it as an ``Entry(key, value)``, or None when none is left; two
callers never get the same entry, in any process sharing the store.
``pop_random_many(prefix, count)`` takes up to ``count`` in one atomic step.
An entry under a live lease (``claim_*``) is skipped: it is someone's work
in progress. Use it for one-shot test data: coupons, invitation codes, jobs.

Under load, issuers add coupons (numbered by ``increment_by``) to 1,000
seeded ones, and redeemers pop them one at a time or five at once, marking
each redeemed with ``set_if_absent``, which fails if a coupon ever came out
twice. After the load: no coupon was redeemed twice, and every coupon issued
is either redeemed or still in the queue. A failed check exits 1.
"""

from __future__ import annotations

import logging

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

SEEDED = 1_000
logger = logging.getLogger("examples.pop_random")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    kv.set_many({"job:a": 1, "job:b": 2, "job:c": 3, "job:d": 4})
    job = kv.pop_random("job:")                              # an Entry, removed from the store
    assert job.key.startswith("job:") and not kv.exists(job.key)
    held = kv.claim_random("job:", ttl=30)                   # a lease hides its key from pop_random
    rest = kv.pop_random_many("job:", count=10)              # up to 10: the two free ones
    assert len(rest) == 2 and held.key not in {entry.key for entry in rest}
    assert kv.pop_random("job:") is None                     # nothing free left: None, not an error
    kv.release_claim(held)
    assert kv.pop_random("job:").key == held.key             # free again
    assert kv.count("job:") == 0
    kv.clear()

    kv.set_many({f"coupon:{n:06d}": {"n": n, "discount": 5 + n % 20} for n in range(1, SEEDED + 1)})
    kv.set("coupons:issued", SEEDED)


class Issuer(User):
    weight = 1
    wait_time = between(0.001, 0.005)

    @task
    def issue(self):
        kv = self.environment.kv
        n = kv.increment_by("coupons:issued", 1)
        kv.set(f"coupon:{n:06d}", {"n": n, "discount": 5 + n % 20})


class Redeemer(User):
    weight = 3
    wait_time = between(0.001, 0.005)

    @task(4)
    def redeem_one(self):
        entry = self.environment.kv.pop_random("coupon:")
        if entry is None:
            return  # the queue is empty for now
        self.redeem(entry)

    @task(1)
    def redeem_five(self):
        for entry in self.environment.kv.pop_random_many("coupon:", count=5):
            self.redeem(entry)

    def redeem(self, entry):
        kv = self.environment.kv
        if not kv.set_if_absent(f"redeemed:{entry.value['n']:06d}", True):
            kv.increment_by("coupons:redeemed-twice", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    issued = kv.get("coupons:issued")
    redeemed = kv.count("redeemed:")
    queued = kv.count("coupon:")
    twice = kv.get("coupons:redeemed-twice", 0)
    checks = {
        "no coupon redeemed twice": twice == 0,
        f"{issued} issued = {redeemed} redeemed + {queued} still queued": issued == redeemed + queued,
        "coupons were redeemed": redeemed >= 100,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
