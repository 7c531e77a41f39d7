"""Seeding: 10,000 test accounts restored from a snapshot before the load, each used by one user at a time.

The run starts with ``--kv-restore-from accounts.snapshot``, a snapshot
built from ``e2e/accounts.py``'s JSONL with ``locust-kv snapshot import``
(``e2e/run.py`` does both). The scenario serves a small login service on
loopback from the coordinating process (``target_service.py``) and points
Locust's host at it. Each customer takes an account with ``random_key``,
premium ones half of the time, leases it with ``get_or_set`` (an account
already leased is skipped), logs in with the password the store holds,
browses, logs out and releases the lease with ``compare_and_delete``.

Invariant: all 10,000 accounts were restored and are intact; the service saw
no second session for an account and no wrong password; every visit that
Locust did not interrupt at the stop logged out; and no lease is left.

Deliberate bug (E2E_BREAK=1): one customer logs in twice with its account.
"""

from __future__ import annotations

import random
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import WorkerRunner

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from accounts import ACCOUNTS, PREMIUM
from kit import Verdict, counter, invariant, sabotage, user_id
from target_service import LoginService

service = LoginService()


@events.init.add_listener
def serve(environment, **_kwargs: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):  # workers get the host from the master
        environment.host = service.start()


@events.quit.add_listener
def stop_serving(**_kwargs: Any) -> None:
    service.stop()


class Customer(FastHttpUser):
    wait_time = between(0.005, 0.02)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)

    @task
    def visit(self) -> None:
        kv = self.kv
        account = kv.random_key(prefix="account:premium-" if random.random() < 0.5 else "account:")
        lease = f"lease:{account}"
        if kv.get_or_set(lease, self.uid).loaded:
            kv.increment_by("leases:busy", 1)  # another customer has it: come back later
            return
        finished = False
        try:
            credentials = kv.get(account)
            token = self._login(credentials)
            if sabotage(kv):
                self._login(credentials)  # the deliberate bug: a second session for the account
            if token:
                headers = {"Authorization": f"Bearer {token}"}
                self.client.get("/profile", headers=headers)
                self.client.post("/logout", headers=headers)
            finished = True
        finally:
            # Also when Locust stops the user mid-visit: the lease must not outlive the visit.
            if not finished:
                kv.increment_by("visits:interrupted", 1)
            if not kv.compare_and_delete(lease, self.uid):
                kv.set(f"leases:lost:{account}", self.uid)

    def _login(self, credentials: dict[str, str]) -> str | None:
        response = self.client.post("/login", json={"account": credentials["login"], "password": credentials["password"]})
        return response.json()["token"] if response.status_code == 200 else None


@invariant
def check(kv, verdict: Verdict) -> None:
    accounts = kv.list(prefix="account:")
    premium = sum(1 for entry in accounts if entry.value["tier"] == "premium")
    counts = service.counts
    verdict.fact("logins", counts["logins"])
    verdict.fact("accounts_busy", counter(kv, "leases:busy"))
    verdict.expect(
        len(accounts) == ACCOUNTS and premium == PREMIUM,
        f"the store holds {len(accounts)} accounts ({premium} premium), expected {ACCOUNTS} ({PREMIUM})",
    )
    verdict.expect(counts["logins"] >= 100, f"only {counts['logins']} logins in the run")
    verdict.expect(
        not service.conflicts,
        f"{len(service.conflicts)} logins found the account in use by another session, first {service.conflicts[:1]}",
    )
    verdict.expect(counts["bad_passwords"] == 0, f"{counts['bad_passwords']} logins had a wrong password")
    # Locust may stop a user in the middle of a request, even with --stop-timeout, which can
    # leave that visit's session open; every other visit must have logged out.
    interrupted = counter(kv, "visits:interrupted")
    verdict.expect(
        len(service.active) <= interrupted,
        f"{len(service.active)} sessions were left open, but only {interrupted} visits were interrupted by the stop",
    )
    leases = kv.list(prefix="lease:")
    lost = kv.list(prefix="leases:lost:")
    verdict.expect(not leases, f"{len(leases)} account leases were never released, first {leases[:1]}")
    verdict.expect(not lost, f"{len(lost)} leases were released by someone else, first {lost[:1]}")
