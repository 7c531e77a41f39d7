"""A feature-flag rollout: operators move flags' rollout percentages with compare_and_swap retry loops.

Each flag holds ``{"percent", "version"}``, the percentage kept within 0..100. The first operator to reach a
flag creates it with ``compare_and_swap(key, None, ...)`` (only if absent).
A change reads the flag, computes the new percentage (which takes a moment,
so other operators change the flag meanwhile) and writes it with
``compare_and_swap``; on a conflict it reads again and retries. Each
operator keeps a ledger of the changes it applied.

Invariant: for every flag, the final percentage is the sum of the applied
changes, and the version is the number of them; and conflicts did happen,
so the retry loop was exercised.

Deliberate bug (E2E_BREAK=1): one operator records a change it never applied.
"""

from __future__ import annotations

import random

import gevent
from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage, user_id

FLAGS = ("checkout-v2", "search-ranking", "dark-mode")


class Operator(User):
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.ledger = {flag: {"sum": 0, "changes": 0, "retries": 0} for flag in FLAGS}
        for flag in FLAGS:
            self.kv.compare_and_swap(f"flag:{flag}", None, {"percent": 0, "version": 0})

    @task
    def change(self) -> None:
        kv = self.kv
        flag = random.choice(FLAGS)
        delta = random.choice((-3, -2, -1, 1, 2, 3, 5))
        key = f"flag:{flag}"
        if sabotage(kv):
            self._record(flag, delta, retries=0)  # the deliberate bug: recorded, never applied
            return
        retries = 0
        while True:
            current = kv.get(key)
            gevent.sleep(0)  # computing the change takes a moment: other operators go meanwhile
            percent = min(100, max(0, current["percent"] + delta))
            changed = {"percent": percent, "version": current["version"] + 1}
            if kv.compare_and_swap(key, current, changed):
                break
            retries += 1
        self._record(flag, percent - current["percent"], retries)

    def _record(self, flag: str, delta: int, retries: int) -> None:
        entry = self.ledger[flag]
        entry["sum"] += delta
        entry["changes"] += 1
        entry["retries"] += retries
        self.kv.set(f"ledger:{self.uid:04d}", self.ledger)


@invariant
def check(kv, verdict: Verdict) -> None:
    ledgers = [entry.value for entry in kv.list(prefix="ledger:")]
    retries = sum(ledger[flag]["retries"] for ledger in ledgers for flag in FLAGS)
    changes = sum(ledger[flag]["changes"] for ledger in ledgers for flag in FLAGS)
    verdict.fact("changes", changes)
    verdict.fact("cas_retries", retries)
    verdict.expect(changes > 0, "no change was applied")
    verdict.expect(retries > 0, "no compare_and_swap conflict happened: the retry loop was not exercised")
    for flag in FLAGS:
        final = kv.get(f"flag:{flag}")
        applied = sum(ledger[flag]["sum"] for ledger in ledgers)
        count = sum(ledger[flag]["changes"] for ledger in ledgers)
        verdict.expect(
            final["percent"] == applied,
            f"flag {flag}: final percent {final['percent']} is not the sum of the applied changes {applied}",
        )
        verdict.expect(
            final["version"] == count, f"flag {flag}: version {final['version']} after {count} applied changes"
        )
