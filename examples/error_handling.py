"""Handling errors by name: branch on the class, on ``err.name`` or on ``err.group``; retry only what is transient.

    locust -f examples/error_handling.py --headless -u 20 -r 20 -t 3s --kv-backend memory

Every failure is a ``locust_kv.errors.KVError`` with a stable ``name``, a
recovery ``group`` (transient, user error, configuration, system failure),
a ``message`` to log, and the ``key``, ``operation`` and ``backend`` of the
failing call. ERRORS.md lists them all; examples/README.md is the guide.

Here writers record numbered events while two auditors take strict backups of the
memory store. A strict backup turns writers away with BackupInProgressError
for as long as it reads, and refuses a second backup the same way: both are
transient, so writers and auditors retry with backoff. User errors are
handled where they are expected (a missing key, a corrupt counter); anything
else fails fast and Locust counts it. After the load: no event was lost (each
writer's events are numbered without a gap), and every auditor's backups
went through. A failed check exits 1.
"""

from __future__ import annotations

import logging
import os
import random

import gevent
from locust import User, between, constant, task

from locust_kv.errors import BackupInProgressError, ErrorGroup, KeyNotFoundError, KVError
from locust_kv.plugin import after_load, before_load

FILLER = 50_000  # enough for a backup to take a while, so that writers meet it
logger = logging.getLogger("examples.error_handling")


def with_retry(operation, *args, attempts=50):
    """Call a store operation; retry transient errors with exponential backoff, re-raise the rest."""
    delay = 0.002
    for attempt in range(1, attempts + 1):
        try:
            return operation(*args)
        except KVError as err:
            if err.group is not ErrorGroup.TRANSIENT or attempt == attempts:
                raise  # user errors, configuration and system failures: fail fast
            gevent.sleep(delay * random.uniform(0.5, 1.5))  # jitter, so retries do not march in step
            delay = min(delay * 2, 0.1)
    raise AssertionError("unreachable")


@before_load.add_listener
def prepare(environment, kv, **_kwargs):
    kv.clear()
    for n in range(FILLER):
        kv.set(f"filler:{n:06d}", n)
    kv.set("counter:corrupt", "not a number")
    try:
        kv.get("missing")
    except KVError as err:
        # Everything a failure carries. str(err) is "<name>: <message>", without the key.
        assert (err.name, err.group, err.key, err.operation, err.backend) == (
            "KeyNotFoundError", ErrorGroup.USER, "missing", "get", kv.backend)
        assert str(err) == "KeyNotFoundError: key not found"  # fmt: skip


class Writer(User):
    weight = 10
    wait_time = between(0.001, 0.005)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"writer-{id(self):x}"
        self.recorded = 0

    @task(10)
    def record_event(self):
        with_retry(self.kv.set, f"event:{self.me}:{self.recorded:06d}", {"n": self.recorded})
        self.recorded += 1

    @task(1)
    def read_a_profile(self):
        try:
            self.kv.get(f"profile:{self.me}")
        except KeyNotFoundError:  # branch on the class: expected the first time
            with_retry(self.kv.get_or_set, f"profile:{self.me}", {"created_by": self.me})

    @task(1)
    def bump_a_counter(self):
        try:
            with_retry(self.kv.increment_by, "counter:corrupt", 1)
        except KVError as err:
            if err.name != "ValueParseError":  # branch on the name: the one we know how to fix
                raise
            with_retry(self.kv.compare_and_swap, "counter:corrupt", "not a number", 0)  # reset it, once


class Auditor(User):
    fixed_count = 2
    wait_time = constant(0.2)

    def on_start(self):
        self.taken = 0
        self.collisions = 0

    @task
    def back_up(self):
        path = os.path.join(".locust-kv-examples", f"audit-{id(self):x}.snapshot")
        for attempt in range(1, 101):
            try:
                self.environment.kv.backup(path)
                break
            except BackupInProgressError:  # the other auditor's backup is running: wait for it
                self.collisions += 1
                gevent.sleep(0.01 * attempt)
        else:
            raise AssertionError("no backup went through in 100 attempts")
        self.taken += 1
        with_retry(self.environment.kv.set, f"audits:{id(self):x}", {"taken": self.taken, "collisions": self.collisions})


@after_load.add_listener
def check(environment, kv, **_kwargs):
    events: dict[str, list[int]] = {}
    for entry in kv.list(prefix="event:"):
        events.setdefault(entry.key.split(":")[1], []).append(entry.value["n"])
    gaps = [writer for writer, numbers in events.items() if numbers != list(range(len(numbers)))]
    stored = sum(len(numbers) for numbers in events.values())
    audits = [entry.value for entry in kv.list(prefix="audits:")]
    checks = {
        f"no event was lost: {stored} stored, numbered without gaps": stored > 0 and not gaps,
        f"both auditors took backups ({[a['taken'] for a in audits]})": len(audits) == 2,
        "the corrupt counter was reset and counted on": isinstance(kv.get("counter:corrupt"), int),
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed (%d backup collisions retried): %s", sum(a["collisions"] for a in audits), "; ".join(checks))
