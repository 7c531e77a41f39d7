"""Counters shared by every process: exact totals with ``--processes 2`` on the disk backend.

Every user increments a run-wide total, its own counter and its process's
counter with ``increment_by``, and keeps a tally of its increments, written
after each step under a key no one else writes. Users also hand out order
numbers from one sequence. Run with ``--processes N``, the users of N
processes hit the same keys at once through LMDB; run standalone, it is the
same check within one process.

Invariant: the total equals the sum of the tallies, each user's and each
process's counter equals its tallies, and the order numbers handed out are
exactly 1..n with no number given twice. With ``--processes N``, N processes
took part.

Deliberate bug (E2E_BREAK=1): one user tallies an increment it never made.
"""

from __future__ import annotations

import os

from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage, user_id

STEP = 3


class Counting(User):
    wait_time = between(0.001, 0.01)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.pid = os.getpid()
        self.tally = 0
        self.orders: list[int] = []

    @task(3)
    def count(self) -> None:
        kv = self.kv
        if not sabotage(kv):  # the deliberate bug: a tallied increment never made
            kv.increment_by("count:total", STEP)
            kv.increment_by(f"count:user:{self.uid:04d}", STEP)
            kv.increment_by(f"count:process:{self.pid}", STEP)
        self.tally += STEP
        kv.set(f"tally:{self.uid:04d}", {"pid": self.pid, "tally": self.tally, "orders": len(self.orders)})

    @task(1)
    def order(self) -> None:
        kv = self.kv
        number = kv.increment_by("orders:next", 1)
        kv.set(f"order:{number:07d}", self.uid)
        self.orders.append(number)
        kv.set(f"tally:{self.uid:04d}", {"pid": self.pid, "tally": self.tally, "orders": len(self.orders)})


@invariant
def check(kv, verdict: Verdict) -> None:
    tallies = {int(entry.key.split(":")[1]): entry.value for entry in kv.list(prefix="tally:")}
    users = {int(entry.key.rsplit(":", 1)[1]): entry.value for entry in kv.list(prefix="count:user:")}
    processes = {int(entry.key.rsplit(":", 1)[1]): entry.value for entry in kv.list(prefix="count:process:")}
    total = kv.get("count:total")
    tallied = sum(t["tally"] for t in tallies.values())
    pids = {t["pid"] for t in tallies.values()}
    verdict.fact("total", total)
    verdict.fact("users", len(tallies))
    verdict.fact("processes", len(pids))
    verdict.expect(total == tallied, f"the shared total is {total}, the users' tallies add up to {tallied}")
    for uid, tally in sorted(tallies.items()):
        verdict.expect(
            users.get(uid, 0) == tally["tally"], f"user {uid}: its counter is {users.get(uid, 0)}, its tally {tally['tally']}"
        )
    for pid in sorted(pids):
        expected = sum(t["tally"] for t in tallies.values() if t["pid"] == pid)
        verdict.expect(
            processes.get(pid, 0) == expected, f"process {pid}: its counter is {processes.get(pid, 0)}, its users' tallies {expected}"
        )
    verdict.expect(
        len(pids) == verdict.processes, f"{len(pids)} processes ran users, expected {verdict.processes}"
    )
    issued = kv.get("orders:next")
    numbers = sorted(int(entry.key.split(":")[1]) for entry in kv.list(prefix="order:"))
    verdict.fact("orders", issued)
    verdict.expect(numbers == list(range(1, issued + 1)), f"order numbers are not exactly 1..{issued}")
    verdict.expect(
        sum(t["orders"] for t in tallies.values()) == issued,
        f"{issued} order numbers were issued, the users took {sum(t['orders'] for t in tallies.values())}",
    )
