"""Read-only handles, stats and allocation_stats: watching a store without touching it.

    locust -f examples/read_only_checker.py --headless -u 10 -r 10 -t 3s --kv-backend memory --kv-report

- ``open_kv(..., read_only=True)`` returns a handle on the same store that
  can only read: every operation that could change data or leases (``set``,
  ``claim_key``, ``clear``...) raises ReadOnlyStoreError before the store is
  touched. Other handles on the store keep writing. ``kv.read_only`` says
  which kind a handle is. ``open_kv(**kv.options, read_only=True)`` opens one
  on whatever store ``kv`` is.
- ``stats()`` returns ``(keys, bytes, claims, expired_claims, operations)``:
  the store's size, its live leases, and this process's calls per operation
  while the store reports (``--kv-report``; empty otherwise).
- ``allocation_stats(prefix)`` returns ``(total, claimable, claimed,
  expired)`` for a pool of keys under leases.

Under load, workers claim tasks from a pool and record their progress;
auditors watch through read-only handles, checking that the pool's figures
always add up. After the load: the auditors saw consistent figures, the pool
is whole, and ``stats().operations`` counted exactly the increments the
workers made. A failed check exits 1.
"""

from __future__ import annotations

import logging

import gevent
from locust import User, between, task

from locust_kv import open_kv
from locust_kv.errors import ReadOnlyStoreError
from locust_kv.plugin import after_load, before_load

TASKS = 50
logger = logging.getLogger("examples.read_only_checker")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    kv.set("greeting", "hello")
    with open_kv(**kv.options, read_only=True) as viewer:           # the same store, read-only
        assert viewer.read_only and not kv.read_only
        assert viewer.get("greeting") == "hello"                      # reads work
        for write in (lambda: viewer.set("greeting", "bye"), lambda: viewer.claim_key("greeting"), viewer.clear):
            try:
                write()
            except ReadOnlyStoreError:
                pass
            else:
                raise AssertionError("a read-only handle wrote")
    assert kv.get("greeting") == "hello"                              # nothing was touched
    claim = kv.claim_key("greeting", ttl=30)
    stats = kv.stats()                                                # (keys, bytes, claims, expired_claims, operations)
    assert (stats.keys, stats.claims) == (1, 1) and stats.bytes > 0
    assert stats.operations == {}                                     # nothing reported yet: --kv-report starts with the load
    assert kv.allocation_stats() == (1, 0, 1, 0)                      # total, claimable, claimed, expired
    kv.release_claim(claim)
    kv.clear()

    kv.set_many({f"task:{n:03d}": {"n": n} for n in range(TASKS)})


class Worker(User):
    weight = 3
    wait_time = between(0.001, 0.005)

    @task
    def work(self):
        kv = self.environment.kv
        claim = kv.claim_random("task:", ttl=10)
        if claim is None:
            return
        kv.increment_by(f"progress:{claim.key}", 1)
        gevent.sleep(0.005)  # the work
        kv.release_claim(claim)


class Auditor(User):
    weight = 1
    wait_time = between(0.01, 0.02)

    def on_start(self):
        self.viewer = open_kv(**self.environment.kv.options, read_only=True)

    @task
    def audit(self):
        pool = self.viewer.allocation_stats("task:")  # one atomic read: its figures always agree
        stats = self.viewer.stats()
        if pool.total != TASKS or pool.claimable + pool.claimed != pool.total or stats.claims > TASKS:
            logger.error("check failed: the figures do not add up: %s, %s", pool, stats)
            self.environment.process_exit_code = 1

    def on_stop(self):
        self.viewer.close()


@after_load.add_listener
def check(environment, kv, **_kwargs):
    pool = kv.allocation_stats("task:")
    progress = sum(entry.value for entry in kv.list("progress:"))
    stats = kv.stats()
    increments = stats.operations.get("increment_by", 0)
    checks = {
        f"the pool is whole: {pool}": pool == (TASKS, TASKS, 0, 0),
        f"stats().operations counted the {progress} increments the workers made": increments == progress,
        f"{stats.operations.get('allocation_stats', 0)} audits ran": stats.operations.get("allocation_stats", 0) >= 10,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
