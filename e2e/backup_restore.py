"""Backup under concurrent writes, then restore, then the data checked.

Writers each append to their own log: entry ``log:<writer>:<seq>``, then
``head:<writer>`` = seq, so a consistent copy of the store holds, for every
writer, entries 1..head and at most one more. An operator takes a strict
backup (``allow_concurrent_writes=False``) every BACKUP_EVERY seconds while
they write. On the memory backend a strict backup turns writers away with
BackupInProgressError while it reads, and they retry with backoff, as
ERRORS.md prescribes for the transient group; on the disk backend they go on
and the backup reads one LMDB snapshot. 30,000 filler entries make each
backup take long enough to meet writers.

After the load the check restores every backup into the store, in turn,
then a backup of the final data.

Invariant: each restored backup holds as many entries as its backup wrote,
is a consistent copy (every log complete up to its head, at most one entry
ahead), and agrees with the final data on every log entry; the final data
comes back exactly.

Deliberate bug (E2E_BREAK=1): one writer skips an entry of its log.
"""

from __future__ import annotations

import os

import gevent
from locust import User, between, constant, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage, setup, user_id, workdir
from locust_kv.errors import ErrorGroup, KVError

FILLER = 30_000
BACKUP_EVERY = 0.4


@setup
def seed(kv) -> None:
    for number in range(FILLER):
        kv.set(f"filler:{number:06d}", {"n": number, "text": "x" * 20})


def with_retry(operation, *args, retried=None):
    """Run a store operation, retrying transient errors (a backup or restore in progress) with backoff.

    ``retried`` is called once per retry.
    """
    delay = 0.005
    while True:
        try:
            return operation(*args)
        except KVError as err:
            if err.group is not ErrorGroup.TRANSIENT:
                raise  # user errors, configuration and system failures: fail fast
            if retried is not None:
                retried()
            gevent.sleep(delay)
            delay = min(delay * 2, 0.2)


class Writer(User):
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = with_retry(user_id, self.kv)
        self.seq = 0
        self.retries = 0

    def _retried(self) -> None:
        self.retries += 1

    @task
    def append(self) -> None:
        kv, retried = self.kv, self._retried
        self.seq += 1
        if not with_retry(sabotage, kv, retried=retried):  # the deliberate bug: an entry of the log is skipped
            with_retry(kv.set, f"log:{self.uid:04d}:{self.seq:06d}", {"seq": self.seq, "writer": self.uid}, retried=retried)
        with_retry(kv.set, f"head:{self.uid:04d}", self.seq, retried=retried)
        if self.retries:
            with_retry(kv.set, f"retries:{self.uid:04d}", self.retries)


class Operator(User):
    fixed_count = 1
    wait_time = constant(BACKUP_EVERY)

    def on_start(self) -> None:
        self.backups = 0

    @task
    def backup(self) -> None:
        kv = self.environment.kv
        self.backups += 1
        path = os.path.join(workdir(), f"backup-{os.getpid()}-{self.backups:03d}.snapshot")
        summary = kv.backup(path)
        with_retry(kv.set, f"backups:{path}", {"entries": summary.total_entries, "best_effort": summary.best_effort})


def consistency(entries: dict[str, object]) -> list[str]:
    """What makes a copy inconsistent: a log with a gap below its head, or more than one entry past it."""
    problems = []
    heads = {key.split(":")[1]: value for key, value in entries.items() if key.startswith("head:")}
    logs: dict[str, set[int]] = {}
    for key in entries:
        if key.startswith("log:"):
            _, writer, seq = key.split(":")
            logs.setdefault(writer, set()).add(int(seq))
    for writer in sorted(set(heads) | set(logs)):
        head, seqs = heads.get(writer, 0), logs.get(writer, set())
        missing = [seq for seq in range(1, head + 1) if seq not in seqs]
        ahead = [seq for seq in seqs if seq > head]
        if missing:
            problems.append(f"writer {writer}: entries {missing[:3]} missing below its head {head}")
        if len(ahead) > 1 or (ahead and ahead[0] != head + 1):
            problems.append(f"writer {writer}: entries {sorted(ahead)[:3]} past its head {head}")
    return problems


@invariant
def check(kv, verdict: Verdict) -> None:
    final = {entry.key: entry.value for entry in kv.list()}
    final_path = os.path.join(workdir(), "final.snapshot")
    kv.backup(final_path)
    backups = {entry.key[len("backups:") :]: entry.value for entry in kv.list(prefix="backups:")}
    verdict.fact("backups", len(backups))
    verdict.fact("log_entries", sum(1 for key in final if key.startswith("log:")))
    verdict.fact("writes_retried", sum(entry.value for entry in kv.list(prefix="retries:")))
    verdict.expect(len(backups) >= 2, f"only {len(backups)} backups were taken during the load")
    verdict.expect(verdict.facts["log_entries"] >= 100, f"the writers wrote only {verdict.facts['log_entries']} log entries")
    for problem in consistency(final):
        verdict.fail(f"the final data is inconsistent: {problem}")
    for path, taken in sorted(backups.items()):
        name = os.path.basename(path)
        restored = kv.restore(path).total_entries
        copy = {entry.key: entry.value for entry in kv.list()}
        verdict.expect(
            restored == taken["entries"] == len(copy),
            f"{name}: the backup wrote {taken['entries']} entries, restore reported {restored}, the store holds {len(copy)}",
        )
        verdict.expect(not taken["best_effort"], f"{name}: a strict backup reported a best-effort copy")
        for problem in consistency(copy):
            verdict.fail(f"{name} restored an inconsistent copy: {problem}")
        differ = [key for key, value in copy.items() if key.startswith("log:") and final.get(key) != value]
        verdict.expect(not differ, f"{name}: {len(differ)} log entries differ from the final data, first {differ[:1]}")
    kv.restore(final_path)
    verdict.expect(
        {entry.key: entry.value for entry in kv.list()} == final, "the backup of the final data did not restore exactly"
    )
