"""Session tracking with garbage collection: visitors open and renew sessions, collectors race to expire them.

Visitors open sessions with a short time to live, renew them with
``compare_and_swap`` and now and then abandon one. Collectors page through
the sessions with ``scan`` and remove each expired one with
``compare_and_delete`` of the value they read, so a session renewed
meanwhile survives, and, when several collectors find the same expired
session, exactly one of them removes it.

Invariant: every session opened is either still stored and never
collected, or gone and collected exactly once.

Deliberate bug (E2E_BREAK=1): one collector counts a session as collected
without removing it.
"""

from __future__ import annotations

import random
import time

import gevent
from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, counter, invariant, sabotage, user_id
from locust_kv.errors import KeyNotFoundError

TTL_SECONDS = 0.2
PAGE = 40


def session_key(session_id: int) -> str:
    return f"session:{session_id:07d}"


class Visitor(User):
    weight = 3
    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.session: str | None = None

    @task
    def browse(self) -> None:
        kv = self.kv
        if self.session is None or random.random() < 0.2:
            # Open a new session; any previous one is abandoned, for the collectors.
            session_id = kv.increment_by("sessions:next-id", 1)
            self.session = session_key(session_id)
            kv.set(self.session, {"user": self.uid, "expires": time.time() + TTL_SECONDS, "renewals": 0})
            return
        try:
            current = kv.get(self.session)
        except KeyNotFoundError:
            self.session = None  # collected: start over
            return
        renewed = {**current, "expires": time.time() + TTL_SECONDS, "renewals": current["renewals"] + 1}
        if not kv.compare_and_swap(self.session, current, renewed):
            self.session = None  # collected (or changed) meanwhile: start over


class Collector(User):
    weight = 1
    wait_time = between(0.01, 0.03)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.cursor = ""

    @task
    def collect(self) -> None:
        kv = self.kv
        page = kv.scan(prefix="session:", limit=PAGE, cursor=self.cursor)
        self.cursor = page.cursor  # "" after the last page: start over
        now = time.time()
        for entry in page.entries:
            if entry.value["expires"] >= now:
                continue
            if sabotage(kv) or kv.compare_and_delete(entry.key, entry.value):
                kv.increment_by(f"collected:{entry.key}", 1)
            else:
                kv.increment_by("sessions:collect-lost", 1)
            gevent.sleep(0)  # the next removal: other collectors on the same page go meanwhile


@invariant
def check(kv, verdict: Verdict) -> None:
    opened = kv.get("sessions:next-id")
    stored = {entry.key for entry in kv.list(prefix="session:")}
    collected = {entry.key[len("collected:") :]: entry.value for entry in kv.list(prefix="collected:")}
    verdict.fact("sessions", opened)
    verdict.fact("collected", sum(collected.values()))
    verdict.fact("collect_races_lost", counter(kv, "sessions:collect-lost"))
    verdict.expect(sum(collected.values()) >= opened // 4, f"only {sum(collected.values())} of {opened} sessions were collected")
    for session_id in range(1, opened + 1):
        key = session_key(session_id)
        times = collected.get(key, 0)
        if key in stored:
            verdict.expect(times == 0, f"{key} is still stored but was counted as collected {times} times")
        else:
            verdict.expect(times == 1, f"{key} is gone and was counted as collected {times} times")
