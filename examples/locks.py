"""Named locks: a shared ledger that only one user at a time may update, across two processes.

    locust -f examples/locks.py --headless -u 20 -r 20 -t 4s --processes 2 --kv-backend disk --kv-path .locust-kv-examples/locks.lmdb --kv-clear

``with kv.lock(name, ttl, wait=...) as lock:`` takes the named lock, waiting
up to ``wait`` seconds, and releases it when the block ends. One holder at a
time, across every process (and, on redis, every host) sharing the store.
The lock is a lease of ``ttl`` seconds: a holder that dies frees it by then.
``lock.token`` is a fencing token, larger for every later holder. When the
lock cannot be had in time, LockTimeoutError (transient); when the holder's
lease ended before the block did (it outlived ``ttl``: renew with
``lock.renew()`` or ``auto_renew=True``), the block's exit raises
LockLostError. ``lock_status(name)`` says who holds it, until when.

Under load, clerks update one ledger, a plain entry read and written back
(``get`` then ``set``: not atomic by itself, and the "system under test"
takes a few milliseconds between the two), only while holding the lock
"ledger". Each update checks that its token is larger than the last one
written (fencing) and that nobody else is inside. One auditor per run holds
the lock longer than its ttl, kept alive by the background renewer, and
checks that the ledger did not move meanwhile. After the load: every deposit
is in the ledger (no lost update), nobody overlapped, no token went
backwards, the audits saw a still ledger, and the lock is free. A failed
check exits 1.
"""

from __future__ import annotations

import logging
import random
import time

import gevent
from locust import User, between, task

from locust_kv.errors import LockLostError, LockTimeoutError
from locust_kv.plugin import after_load, before_load

logger = logging.getLogger("examples.locks")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    with kv.lock("report", ttl=10, owner="tour") as lock:      # waits up to 30 s by default
        status = kv.lock_status("report")                      # held, owner, token, expires_at
        assert status.held and status.owner == "tour" and status.token == lock.token
        try:
            kv.lock("report", wait=0)                          # one try: it is held
        except LockTimeoutError:
            pass
        else:
            raise AssertionError("a held lock should time out other takers")
        lock.renew(ttl=20)                                     # same token, later expires_at
    assert not kv.lock_status("report").held                   # released at the end of the block

    stale = kv.lock("report", ttl=0.05)                        # a holder that outlives its ttl...
    time.sleep(0.2)
    newer = kv.lock("report", ttl=10, wait=0)                  # ...loses the lock to the next taker
    assert newer.token > stale.token                           # fencing: later holders, larger tokens
    try:
        stale.release()
    except LockLostError:                                      # the stale holder learns it, and can
        pass                                                   # never end the new holder's lease
    else:
        raise AssertionError("a lost lock should raise LockLostError")
    newer.release()

    kv.set("ledger", {"balance": 0, "entries": 0, "last_token": 0})


class Clerk(User):
    wait_time = between(0.001, 0.005)

    @task
    def deposit(self):
        kv = self.environment.kv
        try:
            with kv.lock("ledger", ttl=5, wait=2) as lock:
                if kv.increment_by("ledger:inside", 1) != 1:
                    kv.increment_by("check:overlaps", 1)
                try:
                    ledger = kv.get("ledger")
                    if lock.token <= ledger["last_token"]:
                        kv.increment_by("check:stale-tokens", 1)
                    gevent.sleep(random.uniform(0.001, 0.004))  # the shared resource, slow to update
                    kv.set("ledger", {"balance": ledger["balance"] + 10, "entries": ledger["entries"] + 1,
                                      "last_token": lock.token})  # fmt: skip
                    kv.increment_by("deposits", 1)  # the atomic tally the ledger must match
                finally:
                    kv.increment_by("ledger:inside", -1)
        except LockTimeoutError:
            kv.increment_by("lock:timeouts", 1)  # busy for 2 s: expected under contention, try later


class Auditor(User):
    fixed_count = 1
    wait_time = between(0.2, 0.4)

    @task
    def audit(self):
        kv = self.environment.kv
        # Holds the lock 0.5 s with a ttl of 0.3 s: the renewer extends it every 0.1 s.
        try:
            with kv.lock("ledger", ttl=0.3, wait=2, auto_renew=True):
                before = kv.get("ledger")
                gevent.sleep(0.5)
                if kv.get("ledger") != before:
                    kv.increment_by("check:audit-moved", 1)
                kv.increment_by("audits", 1)
        except LockTimeoutError:
            # Waiters are not queued: a busy lock goes to whoever tries first after a release.
            kv.increment_by("lock:timeouts", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    ledger = kv.get("ledger")
    deposits = kv.get("deposits", 0)
    overlaps, stale = kv.get("check:overlaps", 0), kv.get("check:stale-tokens", 0)
    moved, audits = kv.get("check:audit-moved", 0), kv.get("audits", 0)
    status = kv.lock_status("ledger")
    checks = {
        f"every deposit is in the ledger ({ledger['entries']} entries, {deposits} deposits)":
            ledger["entries"] == deposits and ledger["balance"] == 10 * deposits and deposits >= 20,
        f"nobody was inside at once ({overlaps} overlaps), no token went backwards ({stale})":
            overlaps == 0 and stale == 0,
        f"the ledger moved under {moved} of {audits} audits": moved == 0,
        f"the lock is free after the run: {status}": not status.held,
    }  # fmt: skip
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s (%d lock timeouts)", "; ".join(checks), kv.get("lock:timeouts", 0))
