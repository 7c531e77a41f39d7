"""backup and restore: snapshot files of the whole store, with safety budgets.

    locust -f examples/backup_and_restore.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``backup(file_name, allow_concurrent_writes=False)`` writes every entry to a
snapshot file, atomically (a failed backup leaves any earlier file intact),
and returns ``BackupSummary(total_entries, bytes_written, best_effort,
warning)``. A strict backup is a point-in-time copy (on the memory backend,
writers get BackupInProgressError meanwhile: see error_handling.py); with
``allow_concurrent_writes=True`` writers never wait and ``best_effort`` says
whether the copy may mix moments. ``restore(file_name, max_entries,
max_bytes)`` replaces the whole dataset, all or nothing, and refuses a
snapshot over budget before touching anything.

The plugin does the same from the command line: ``--kv-restore-from FILE``
before the load, ``--kv-backup-to FILE`` after it (see docs/snapshots.md).

Here: seed data is backed up before the load; users place orders while an
auditor takes backups that never block them; after the load the end state
is backed up, the seed restored and compared, then the end state restored
and compared. A failed check exits 1.
"""

from __future__ import annotations

import logging
import os

from locust import User, between, constant, task

from locust_kv.errors import SnapshotBudgetExceededError, SnapshotNotFoundError
from locust_kv.plugin import after_load, before_load

SNAPSHOTS = ".locust-kv-examples"
"""In the working directory, to look at afterwards (``locust-kv snapshot info FILE``)."""
SEED = os.path.join(SNAPSHOTS, "seed.snapshot")
END = os.path.join(SNAPSHOTS, "end.snapshot")
CUSTOMERS = 500
logger = logging.getLogger("examples.backup_and_restore")


@before_load.add_listener
def seed(environment, kv, **_kwargs):
    kv.clear()
    for n in range(CUSTOMERS):
        kv.set(f"customer:{n:04d}", {"name": f"customer {n}", "orders": 0})
    summary = kv.backup(SEED)
    assert summary.total_entries == CUSTOMERS and not summary.best_effort
    try:
        kv.restore(SEED, max_entries=CUSTOMERS - 1)   # over budget: refused before anything changes
    except SnapshotBudgetExceededError as err:
        logger.info("as expected: %s", err)
    else:
        raise AssertionError("a restore over budget went through")
    try:
        kv.restore(os.path.join(SNAPSHOTS, "missing.snapshot"))
    except SnapshotNotFoundError:
        pass                                          # expected on a first run: start empty
    else:
        raise AssertionError("a missing snapshot was restored")
    assert kv.size() == CUSTOMERS


class Customer(User):
    wait_time = between(0.001, 0.01)

    @task
    def place_order(self):
        kv = self.environment.kv
        order = kv.increment_by("orders:next-id", 1)
        kv.set(f"order:{order:06d}", {"customer": order % CUSTOMERS})


class Auditor(User):
    fixed_count = 1
    wait_time = constant(0.5)

    @task
    def snapshot_without_blocking(self):
        summary = self.environment.kv.backup(os.path.join(SNAPSHOTS, "audit.snapshot"), allow_concurrent_writes=True)
        logger.info("audit backup: %d entries, best effort: %s", summary.total_entries, summary.best_effort)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    end_state = {entry.key: entry.value for entry in kv.list()}
    kv.backup(END)
    seeded = kv.restore(SEED).total_entries
    seed_state = {entry.key: entry.value for entry in kv.list()}
    restored = kv.restore(END).total_entries
    checks = {
        f"the seed came back: {seeded} customers, no orders": seeded == CUSTOMERS
        and all(key.startswith("customer:") for key in seed_state),
        f"the end state came back: {restored} entries": restored == len(end_state)
        and {entry.key: entry.value for entry in kv.list()} == end_state,
        "orders were placed": kv.exists("orders:next-id"),
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s; snapshots in %s", "; ".join(checks), SNAPSHOTS)
