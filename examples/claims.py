"""Claims (leases): an account pool where no two users ever hold the same account.

    locust -f examples/claims.py --headless -u 30 -r 30 -t 3s --kv-backend memory

``claim_random(prefix, ttl)`` leases one free key of the prefix, chosen
uniformly, and returns a ``Claim(key, value, token, owner, expires_at)``, or
None when every key is held. While the lease lasts no other claim takes the
key, in any process sharing the store. Give it back with
``release_claim(claim)`` (back to the pool) or ``complete_claim(claim)`` (the
work is done; ``delete=True`` also removes the key), and extend a long job
with ``renew_claim(claim, ttl)``. Each of these raises ClaimLostError when
the lease had ended (it expired, or its key was removed).

Under load, 30 customers share a pool of 20 accounts: each visit claims an
account, logs in with it, browses, and returns it; one visit in five is a
long one that renews its lease half-way. A visit that finds every account
held waits for the next one. Users stopped by ``-t`` in the middle of a
visit never return their account themselves: the plugin releases the leases
of every user that stops. After the load: no account was ever held by two
customers at once, the pool is whole (``allocation_stats``: 20 accounts,
none claimed), and visits happened. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random

import gevent
from locust import User, between, task

from locust_kv.errors import ClaimLostError
from locust_kv.plugin import after_load, before_load

ACCOUNTS = 20
logger = logging.getLogger("examples.claims")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    kv.set_many({"seat:1a": "window", "seat:1b": "aisle"})
    first = kv.claim_key("seat:1a", ttl=30)                 # a Claim: key, value, token, owner, expires_at
    assert (first.key, first.value) == ("seat:1a", "window")
    assert kv.claim_key("seat:1a", ttl=30) is None          # held: nobody else gets it
    assert kv.claim_key("seat:9z", ttl=30) is None          # absent keys cannot be claimed
    other = kv.claim_random("seat:", ttl=30)                # the only free one left
    assert other.key == "seat:1b" and other.token > first.token  # tokens grow with every claim
    assert kv.claim_random("seat:", ttl=30) is None         # every seat held
    assert kv.get("seat:1a") == "window"                    # reads (and writes) ignore leases
    assert kv.allocation_stats("seat:") == (2, 0, 2, 0)     # total, claimable, claimed, expired

    renewed = kv.renew_claim(first, ttl=60)                 # same token, later expires_at
    assert renewed.token == first.token and renewed.expires_at > first.expires_at
    kv.release_claim(renewed)                               # back to the pool
    try:
        kv.release_claim(renewed)                           # not held any more
    except ClaimLostError:
        pass
    else:
        raise AssertionError("a second release should raise ClaimLostError")
    kv.complete_claim(other, delete=True)                   # done with it, and the key is removed
    assert not kv.exists("seat:1b")
    assert kv.allocation_stats("seat:") == (1, 1, 0, 0)
    kv.clear()

    kv.set_many({f"account:{n:02d}": {"login": f"user{n:02d}", "password": f"pw-{n:02d}"} for n in range(ACCOUNTS)})


class Customer(User):
    wait_time = between(0.001, 0.005)

    def on_start(self):
        self.kv = self.environment.kv

    @task
    def visit(self):
        kv = self.kv
        claim = kv.claim_random("account:", ttl=10)
        if claim is None:
            kv.increment_by("visits:pool-empty", 1)  # every account in use: try again later
            return
        # At most one customer may be logged in with an account: count who is.
        holders = kv.increment_by(f"holders:{claim.key}", 1)
        try:
            if holders != 1:
                kv.increment_by("overlaps", 1)
            self.browse(claim.value["login"])
            if random.random() < 0.2:
                claim = kv.renew_claim(claim, ttl=10)  # a long visit: keep the lease alive
                self.browse(claim.value["login"])
        finally:
            # Also when Locust stops this user mid-visit; the lease itself the plugin releases then.
            kv.increment_by(f"holders:{claim.key}", -1)
        if random.random() < 0.5:
            kv.complete_claim(claim)  # the visit did what it came for
        else:
            kv.release_claim(claim)  # the visit gave up: the same effect on the pool
        kv.increment_by("visits:done", 1)

    def browse(self, login):
        gevent.sleep(random.uniform(0.005, 0.02))  # the system under test, logged in as `login`


@after_load.add_listener
def check(environment, kv, **_kwargs):
    pool = kv.allocation_stats("account:")
    done = kv.get("visits:done", 0)
    overlaps = kv.get("overlaps", 0)
    checks = {
        f"no account was held by two customers at once ({overlaps} overlaps)": overlaps == 0,
        f"the pool is whole: {pool}": pool.total == ACCOUNTS and pool.claimed == 0,
        f"{done} visits done, {kv.get('visits:pool-empty', 0)} found the pool empty": done >= 100,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
