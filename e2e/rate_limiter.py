"""A rate limiter: API clients send bursts, a fixed-window counter per client admits LIMIT requests per window.

Several users share each API client, so bursts of one client come from many
users (and, with ``--processes``, from many processes) at once. Each request
takes a ticket with ``increment_by`` on its client's window counter: tickets
1..LIMIT are admitted, the rest rejected.

Invariant: the counters count every request exactly once (their sum equals
the requests the users sent), and in every window exactly min(LIMIT, tickets)
requests were admitted and the rest rejected.

Deliberate bug (E2E_BREAK=1): one request is sent without taking a ticket.
"""

from __future__ import annotations

import random
import time

import gevent
from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage, user_id

LIMIT = 25
"""Requests admitted per client per window."""

WINDOW_SECONDS = 0.5
CLIENTS = 6


class ApiCaller(User):
    wait_time = between(0.05, 0.15)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.client_id = self.uid % CLIENTS
        self.sent = 0

    @task
    def burst(self) -> None:
        kv = self.kv
        for _ in range(random.randint(1, 15)):
            window = int(time.time() / WINDOW_SECONDS)
            if not sabotage(kv):  # the deliberate bug: a request sent without a ticket
                ticket = kv.increment_by(f"rl:tickets:{self.client_id}:{window}", 1)
                outcome = "admitted" if ticket <= LIMIT else "rejected"
                kv.increment_by(f"rl:{outcome}:{self.client_id}:{window}", 1)
            self.sent += 1
            kv.set(f"rl:sent-by:{self.uid}", self.sent)
            # Other users' requests interleave here, as they would during a real request.
            # Only between whole requests: Locust may stop a user at any point where it yields.
            gevent.sleep(0)


def _counters(kv, prefix: str) -> dict[str, int]:
    return {entry.key[len(prefix) :]: entry.value for entry in kv.list(prefix=prefix)}


@invariant
def check(kv, verdict: Verdict) -> None:
    tickets = _counters(kv, "rl:tickets:")
    admitted = _counters(kv, "rl:admitted:")
    rejected = _counters(kv, "rl:rejected:")
    sent = sum(entry.value for entry in kv.list(prefix="rl:sent-by:"))
    counted = sum(tickets.values())
    verdict.fact("requests", sent)
    verdict.fact("windows", len(tickets))
    verdict.fact("windows_over_limit", sum(1 for n in tickets.values() if n > LIMIT))
    verdict.expect(sent > 0, "no request was sent")
    verdict.expect(counted == sent, f"the window counters counted {counted} requests, the users sent {sent}")
    for window, n in sorted(tickets.items()):
        ok, refused = admitted.get(window, 0), rejected.get(window, 0)
        verdict.expect(
            ok == min(n, LIMIT) and refused == n - ok,
            f"window {window}: {n} tickets, {ok} admitted and {refused} rejected (limit {LIMIT})",
        )
    verdict.expect(
        any(n > LIMIT for n in tickets.values()), f"no window exceeded the limit of {LIMIT}: the limiter was not exercised"
    )
