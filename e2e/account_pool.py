"""Account pool: 1,000 accounts restored before the load, each held by one user for its whole life.

The run starts with ``--kv-restore-from accounts.snapshot``, the first
POOL accounts of ``e2e/accounts.py`` imported with ``locust-kv snapshot
import`` (``e2e/run.py`` does both). The scenario serves the login service
of ``target_service.py`` on loopback from the coordinating process.

Each customer, when it starts, leases an account with ``claim_random`` and
logs in with it, giving the lease's fencing token; it browses its profile
and now and then logs out and in again, for as long as it lives, and logs
out in ``on_stop``. It never releases the lease: the plugin does, when the
user stops. A LoadTestShape spawns and stops the customers in waves,
200 -> 50 -> 200 -> 0, so that most of them stop in the middle of the run
(each stage moves on when its purpose is met; see Waves).

Invariant: the service never saw an account logged in twice at once (a
login refused with 409), no live customer found its session taken over by
a newer lease, the 150 customers stopped at the ramp-down gave their
accounts back while the run went on (the trough of the shape), after the
load all POOL accounts are back (total POOL, none claimed, none expired),
and both waves logged in.

Deliberate bug (E2E_BREAK=1): one customer also logs in with accounts it
draws with ``random_key`` instead of claiming them, until the service
refuses one; if that customer is stopped first, the next one to browse
takes the bug over, so the run cannot end without the bug having shown.
"""

from __future__ import annotations

from typing import Any

import gevent
from locust import LoadTestShape, between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from locust.runners import WorkerRunner

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, counter, invariant, sabotage, user_id
from target_service import LoginService

POOL = 1_000
PEAK = 200
TROUGH = 50
SPAWN_RATE = 400
PATIENCE = 20.0
"""Seconds a stage of the shape waits at most for what it is for (see Waves)."""
TTL = 300.0
"""Far beyond the run: only the plugin's release at a user's stop brings an account back during it."""

service = LoginService()


@events.init.add_listener
def serve(environment, **_kwargs: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):  # workers get the host from the master
        environment.host = service.start()


@events.quit.add_listener
def stop_serving(**_kwargs: Any) -> None:
    service.stop()


class Waves(LoadTestShape):
    """200 customers, then 50, then 200 again, then none.

    Each stage moves on when what it is for has happened, not after a fixed
    time, so that a loaded machine (or workers slow to start) makes the run
    longer rather than vacuous: the first wave ends when its 200 customers
    have logged in, the trough when the stopped customers' accounts are back
    in the pool (at most 2 x TROUGH claimed), the second wave when its 150
    new customers have logged in. A stage waits at most PATIENCE seconds;
    Locust ticks once a second, so the run takes about 4 s when nothing waits.
    """

    stage = 0
    since = 0.0

    def tick(self) -> tuple[int, float] | None:
        kv = self.runner.environment.kv
        now = self.get_run_time()
        waited_enough = now - self.since >= PATIENCE
        if self.stage == 0:
            if counter(kv, "customers:logged-in") < PEAK and not waited_enough:
                return PEAK, self._rate(now)
            self._next(now)
        if self.stage == 1:
            claimed = kv.allocation_stats("account:").claimed
            if claimed > 2 * TROUGH and not waited_enough:
                return TROUGH, SPAWN_RATE
            kv.set("pool:at-trough", claimed)
            self._next(now)
        if self.stage == 2:
            if counter(kv, "customers:logged-in") < PEAK + (PEAK - TROUGH) and not waited_enough:
                return PEAK, self._rate(now)
            kv.set("pool:at-peak", kv.allocation_stats("account:").claimed)
        return None

    def _rate(self, now: float) -> float:
        """SPAWN_RATE, a hair different every other second of a wave that is still filling.

        Locust sends spawn messages only when the shape's tick changes; on a
        loaded machine a worker that was still stopping users (the trough)
        has been seen to end a wave with fewer users than the master counts
        for it (325 customers instead of 350, in CI). A changed tick makes the
        master send every worker its count again, and the worker spawns the
        users it lacks; a full wave moves on at once, so this costs nothing.
        """
        return SPAWN_RATE if (now - self.since) < 2 or int(now) % 2 == 0 else SPAWN_RATE - 1

    def _next(self, now: float) -> None:
        self.stage += 1
        self.since = now


class Customer(FastHttpUser):
    wait_time = between(0.5, 1.0)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.session: str | None = None
        self.saboteur = False
        self.claim = self.kv.claim_random("account:", ttl=TTL)  # bound to this user by the plugin
        if self.claim is None:
            self.kv.increment_by("pool:found-empty", 1)
            raise StopUser()
        self.session = self._login(self.claim.value)
        self.kv.increment_by("customers:logged-in", 1)

    @task(10)
    def browse(self) -> None:
        if not self.saboteur and sabotage(self.kv):
            self.saboteur = True
        if self.saboteur:
            self._log_in_without_a_lease()
        if self.session is None:
            self.session = self._login(self.claim.value)
            return
        response = self.client.get("/profile", headers=self._auth(), name="/profile")
        if response.status_code == 401 and "taken over" in response.text:
            self.kv.set(f"sessions:taken-over:{self.claim.key}", self.uid)  # while this user still held the lease
            self.session = None
        elif response.status_code != 200 or response.json()["account"] != self.claim.value["login"]:
            self.kv.increment_by("sessions:wrong-profile", 1)

    @task(1)
    def log_in_again(self) -> None:
        self._logout()
        self.session = self._login(self.claim.value)

    def on_stop(self) -> None:
        # The lease stays: the plugin releases it once this greenlet has ended, after this logout.
        if self.saboteur and not self.kv.exists("e2e:sabotage-refused"):
            self.kv.delete("e2e:sabotaged")  # stopped before the bug showed: another customer takes it over
        self._logout()

    def _log_in_without_a_lease(self) -> None:
        """The deliberate bug: log in with accounts drawn by random_key, which other customers may hold.

        At least TROUGH of the POOL accounts are held while customers run,
        so 400 draws find a held one but for a chance of (1 - 50/1000)^400,
        about 1e-9.
        """
        if self.kv.exists("e2e:sabotage-refused"):
            return
        for _ in range(400):
            account = self.kv.get(self.kv.random_key(prefix="account:"))
            token = self._login(account, fenced=False)
            if token is None:
                self.kv.set("e2e:sabotage-refused", True)  # the service saw the account held twice
                return
            self.client.post("/logout", headers={"Authorization": f"Bearer {token}"}, name="/logout")
            gevent.sleep(0)

    def _login(self, account: dict[str, str], fenced: bool = True) -> str | None:
        """Log in with ``account``, giving this user's lease token as the fence unless ``fenced`` is False."""
        body: dict[str, Any] = {"account": account["login"], "password": account["password"]}
        if fenced:
            body["fence"] = self.claim.token
        response = self.client.post("/login", json=body, name="/login")
        return response.json()["token"] if response.status_code == 200 else None

    def _logout(self) -> None:
        if self.session is not None:
            self.client.post("/logout", headers=self._auth(), name="/logout")
            self.session = None

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session}"}


@invariant
def check(kv, verdict: Verdict) -> None:
    counts = service.counts
    pool = kv.allocation_stats("account:")
    trough = kv.get("pool:at-trough", None)
    verdict.fact("customers", counter(kv, "e2e:user-ids"))
    verdict.fact("logins", counts["logins"])
    verdict.fact("takeovers", counts["takeovers"])
    verdict.fact("held_at_trough", trough)
    verdict.fact("held_at_peak", kv.get("pool:at-peak", None))
    verdict.expect(
        not service.conflicts,
        f"{len(service.conflicts)} logins found the account in use by another session, first {service.conflicts[:1]}",
    )
    taken = kv.list_keys("sessions:taken-over:")
    verdict.expect(not taken, f"{len(taken)} live customers lost their session to a newer lease, first {taken[:1]}")
    verdict.expect(
        (pool.total, pool.claimed, pool.expired) == (POOL, 0, 0),
        f"after the load the pool is {pool}, expected {POOL} accounts, none claimed or expired",
    )
    verdict.expect(
        trough is not None and trough <= 2 * TROUGH,
        f"{PATIENCE:.0f} s after the ramp-down to {TROUGH} users, {trough} accounts were still claimed",
    )
    verdict.expect(counts["bad_passwords"] == 0, f"{counts['bad_passwords']} logins had a wrong password")
    verdict.expect(counter(kv, "sessions:wrong-profile") == 0, "a profile answered for another account")
    verdict.expect(counter(kv, "pool:found-empty") == 0, "a customer found the pool empty")
    logged_in = counter(kv, "customers:logged-in")
    verdict.expect(
        logged_in >= PEAK + (PEAK - TROUGH),
        f"only {logged_in} customers logged in, expected {PEAK} in the first wave and {PEAK - TROUGH} more in the second",
    )
    # Locust may stop a user in the middle of a request, leaving that session open; the next
    # holder of its account then takes it over with a newer fence (counted in takeovers).
    verdict.fact("open_sessions", len(service.active))
