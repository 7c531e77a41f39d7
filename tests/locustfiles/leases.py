"""Test locustfile: users that claim accounts and never release them; the plugin must.

Environment:

- KV_TEST_OUT: directory for ``result.json``, written by after_load: the
  pool's allocation_stats after the load, how many claims the users made, and
  what the watchers saw during the run.
- KV_TEST_SCENARIO:
  - ``runtime``: Holders claim an account in on_start (and one more per task,
    released at once by the user's own code) until ``-t`` ends the run.
  - ``rampdown``: the same Holders under a LoadTestShape going 20 -> 5 users
    -> stop; the shape records the pool once it shows the ramp-down (or 15 s after it).
  - ``stopuser``: KV_TEST_QUITTERS Quitters claim two tickets and raise
    StopUser; a Watcher records the tickets' pool once they all did, while
    the test still runs.
"""

import json
import os

import gevent
from locust import LoadTestShape, User, constant, task
from locust.exception import StopUser

from locust_kv.plugin import after_load, before_load

OUT = os.environ["KV_TEST_OUT"]
SCENARIO = os.environ.get("KV_TEST_SCENARIO", "runtime")
QUITTERS = int(os.environ.get("KV_TEST_QUITTERS", "0"))
ACCOUNTS = 100
TICKETS = 20
TTL = 600.0  # far beyond the run: only the plugin's release can bring a lease back


@before_load.add_listener
def seed(environment, kv, **_kwargs):
    kv.clear()
    kv.set_many({f"account:{n:03d}": {"n": n} for n in range(ACCOUNTS)})
    kv.set_many({f"ticket:{n:02d}": {"n": n} for n in range(TICKETS)})
    # Claimed outside any user: never bound, so never released by the plugin.
    assert kv.claim_key("ticket:00", ttl=TTL) is not None


class Holder(User):
    abstract = SCENARIO not in ("runtime", "rampdown")
    wait_time = constant(0.01)

    def on_start(self):
        kv = self.environment.kv
        claim = kv.claim_random("account:", ttl=TTL)
        assert claim is not None, "no account left for a new user"
        assert ":Holder#" in claim.owner, claim.owner  # the plugin's default owner names the user
        kv.increment_by("made", 1)

    @task
    def borrow_and_return(self):
        kv = self.environment.kv
        extra = kv.claim_random("account:", ttl=TTL)
        if extra is not None:
            kv.increment_by("made", 1)
            kv.release_claim(extra)  # released by the user: the plugin must forget it


class Quitter(User):
    abstract = SCENARIO != "stopuser"
    wait_time = constant(0.01)

    def on_start(self):
        assert self.environment.kv.claim_random("ticket:", ttl=TTL) is not None

    @task
    def quit(self):
        assert self.environment.kv.claim_random("ticket:", ttl=TTL) is not None
        self.environment.kv.increment_by("made", 2)
        raise StopUser()


class Watcher(User):
    abstract = SCENARIO != "stopuser"
    fixed_count = 1
    wait_time = constant(10)

    @task
    def watch(self):
        kv = self.environment.kv
        for _ in range(100):  # until every Quitter has claimed its two tickets and raised StopUser
            if kv.get("made", 0) >= 2 * QUITTERS:
                break
            gevent.sleep(0.1)
        gevent.sleep(0.3)  # the test runs on: the Quitters' leases must be back by now
        kv.set("watch:during", kv.allocation_stats("ticket:")._asdict())


class RampDown(LoadTestShape):
    """20 users until each has claimed its account, then 5 until the pool shows the 15 stopped ones' back."""

    abstract = SCENARIO != "rampdown"
    ramped_down_at = None

    def tick(self):
        kv = self.runner.environment.kv
        now = self.get_run_time()
        if self.ramped_down_at is None:
            if kv.get("made", 0) < 20 and now < 30:
                return 20, 100
            self.ramped_down_at = now
        claimed = kv.allocation_stats("account:").claimed
        if claimed > 10 and now - self.ramped_down_at < 15:
            return 5, 100  # each of the 5 left holds one (and, for a moment inside a task, two)
        kv.set("watch:during", {"claimed": claimed, "waited": now - self.ramped_down_at})
        return None


@after_load.add_listener
def report(environment, kv, **_kwargs):
    result = {
        "accounts": kv.allocation_stats("account:")._asdict(),
        "tickets": kv.allocation_stats("ticket:")._asdict(),
        "made": kv.get("made", 0),
        "during": kv.get("watch:during", None),
    }
    with open(os.path.join(OUT, "result.json"), "w") as out:
        json.dump(result, out)
