"""A rate limiter on expiring windows: API clients send bursts, each client's window admits LIMIT requests.

Several users share each API client, so bursts of one client come from many
users (and, with ``--processes``, from many processes) at once. Each request
takes a ticket with ``increment_by(window_key, 1, ttl=WINDOW_SECONDS)``: the
first ticket creates the counter and starts a window that the store ends
WINDOW_SECONDS later (the ttl applies only when the counter is created, so
the following tickets count in the same window); tickets 1..LIMIT are
admitted, the rest rejected. Nothing ever deletes a window: its expiry does.

Every request also records its ticket number t in a permanent tally
``rl:seen:<client>:<t>``: how many windows handed out ticket t.

Invariants: the tallies count every request exactly once (their sum equals
the requests the users sent); each client admitted exactly the tickets 1..LIMIT
of its windows and rejected the rest; a window hands out each ticket number
once, so tally t never exceeds tally t-1; windows did expire (a client saw
several) and none ended early (no client saw more windows than the run's
length allows).

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
        self.kv.get_or_set("rl:started", time.time())

    @task
    def burst(self) -> None:
        kv = self.kv
        for _ in range(random.randint(1, 15)):
            if not sabotage(kv):  # the deliberate bug: a request sent without a ticket
                ticket = kv.increment_by(f"rl:window:{self.client_id}", 1, ttl=WINDOW_SECONDS)
                outcome = "admitted" if ticket <= LIMIT else "rejected"
                kv.increment_by(f"rl:{outcome}:{self.client_id}", 1)
                kv.increment_by(f"rl:seen:{self.client_id}:{ticket:06d}", 1)
            self.sent += 1
            kv.set(f"rl:sent-by:{self.uid}", self.sent)
            # Other users' requests interleave here, as they would during a real request.
            # Only between whole requests: Locust may stop a user at any point where it yields.
            gevent.sleep(0)


def _counters(kv, prefix: str) -> dict[str, int]:
    return {entry.key[len(prefix) :]: entry.value for entry in kv.list(prefix=prefix)}


@invariant
def check(kv, verdict: Verdict) -> None:
    elapsed = time.time() - kv.get("rl:started", time.time())
    seen: dict[int, dict[int, int]] = {}
    for name, count in _counters(kv, "rl:seen:").items():
        client, ticket = name.split(":")
        seen.setdefault(int(client), {})[int(ticket)] = count
    admitted = _counters(kv, "rl:admitted:")
    rejected = _counters(kv, "rl:rejected:")
    sent = sum(entry.value for entry in kv.list(prefix="rl:sent-by:"))
    counted = sum(sum(tally.values()) for tally in seen.values())
    windows = {client: tally.get(1, 0) for client, tally in seen.items()}
    verdict.fact("requests", sent)
    verdict.fact("windows", sum(windows.values()))
    verdict.fact("windows_over_limit", sum(tally.get(LIMIT + 1, 0) for tally in seen.values()))
    verdict.expect(sent > 0, "no request was sent")
    verdict.expect(counted == sent, f"the window counters counted {counted} requests, the users sent {sent}")
    for client, tally in sorted(seen.items()):
        ok, refused = admitted.get(str(client), 0), rejected.get(str(client), 0)
        in_limit = sum(n for ticket, n in tally.items() if ticket <= LIMIT)
        verdict.expect(
            ok == in_limit and refused == counted_over(tally),
            f"client {client}: {ok} admitted and {refused} rejected, its windows handed out "
            f"{in_limit} tickets within the limit of {LIMIT} and {counted_over(tally)} past it",
        )
        top = max(tally)
        verdict.expect(
            all(tally.get(t, 0) <= tally.get(t - 1, 0) for t in range(2, top + 1)),
            f"client {client}: some window handed out a ticket number twice, or skipped one: {tally}",
        )
        # A window lasts WINDOW_SECONDS: a run of `elapsed` seconds fits at most elapsed / WINDOW_SECONDS + 1.
        most = int(elapsed / WINDOW_SECONDS) + 2
        verdict.expect(
            windows[client] <= most,
            f"client {client} saw {windows[client]} windows in {elapsed:.1f} s: windows ended early (at most {most})",
        )
    verdict.expect(
        any(n >= 2 for n in windows.values()), f"no client saw a second window: the windows never expired ({windows})"
    )
    verdict.expect(
        any(tally.get(LIMIT + 1, 0) for tally in seen.values()),
        f"no window exceeded the limit of {LIMIT}: the limiter was not exercised",
    )


def counted_over(tally: dict[int, int]) -> int:
    """The tickets past the limit that a client's windows handed out."""
    return sum(n for ticket, n in tally.items() if ticket > LIMIT)
