"""Leases bound to Locust users, inside one Locust process: which claims bind, and when they come back.

Importing Locust monkey-patches the process with gevent, so this module never
runs in the main test session: tests/test_plugin_claims.py runs it with
pytest in a child process and reports each check as its own test. Run it
directly with ``python -m pytest tests/plugin_leases_checks.py``.

Each check has a memory store of its own (``register`` with a fresh name is
not possible through the plugin's options, so each check clears the default
one) and drives users by hand: ``User.start(group)`` spawns the greenlet
exactly as Locust's runner does (``run_user(user)``).
"""

from __future__ import annotations

import os
import socket

import gevent
import locust  # noqa: F401  (patches this process with gevent before anything else runs)
import pytest
from gevent.pool import Group
from locust import User, constant, task
from locust.env import Environment
from locust.event import Events
from locust.exception import StopUser

from locust_kv import plugin
from locust_kv.errors import ClaimLostError

POOL = 10
TTL = 600.0


def make_env(user_classes=()):
    """A standalone Environment with a memory store holding POOL free accounts."""
    environment = Environment(user_classes=list(user_classes), events=Events())
    environment.create_local_runner()
    kv = plugin.register(environment, backend="memory")
    kv.clear()
    kv.set_many({f"account:{n}": n for n in range(POOL)})
    return environment


def end(environment) -> None:
    plugin.shutdown(environment)
    environment.runner.quit()


@pytest.fixture
def env():
    environment = make_env()
    yield environment
    end(environment)


def leases(environment):
    return getattr(environment, plugin.lifecycle.ATTRIBUTE).leases


def claimed(environment) -> int:
    return environment.kv.allocation_stats("account:").claimed


def settle_hub() -> None:
    """Let gevent run the links of ended greenlets and the releaser."""
    for _ in range(5):
        gevent.sleep(0.01)


class Idle(User):
    """A user that does nothing until stopped; checks drive it through ``run`` replacements."""

    wait_time = constant(60)

    @task
    def nothing(self):
        gevent.sleep(60)


def start(user_class, environment, group=None):
    user = user_class(environment)
    user.start(group or Group())
    gevent.sleep(0)  # let it run its on_start
    return user


# -- what binds ---------------------------------------------------------------------


def test_claims_of_a_killed_user_are_released(env) -> None:  # type: ignore[no-untyped-def]
    class Holder(Idle):
        def on_start(self):
            self.claims = [self.environment.kv.claim_random("account:", ttl=TTL) for _ in range(3)]

    users = [start(Holder, env) for _ in range(2)]
    assert claimed(env) == 6
    users[0].group.killone(users[0].greenlet)  # what a ramp-down does
    settle_hub()
    assert claimed(env) == 3
    users[1].stop(force=True)
    settle_hub()
    assert claimed(env) == 0
    assert leases(env).released == 6


def test_claims_of_a_user_that_raises_stop_user_are_released(env) -> None:  # type: ignore[no-untyped-def]
    class Quitter(User):
        wait_time = constant(0)

        @task
        def quit(self):
            self.environment.kv.claim_keys(["account:1", "account:2"], ttl=TTL)
            raise StopUser()

    user = start(Quitter, env)
    user.greenlet.join(1)
    assert user.greenlet.dead
    settle_hub()
    assert claimed(env) == 0


def test_every_claim_form_binds(env) -> None:  # type: ignore[no-untyped-def]
    class Greedy(Idle):
        def on_start(self):
            kv = self.environment.kv
            kv.claim_key("account:0", ttl=TTL)
            kv.claim_keys(["account:1", "account:2"], ttl=TTL)
            kv.claim_random("account:", ttl=TTL)
            kv.claim_random_many("account:", count=2, ttl=TTL, owner="explicit owner")  # bound all the same

    user = start(Greedy, env)
    assert claimed(env) == 6
    user.stop(force=True)
    settle_hub()
    assert claimed(env) == 0


def test_claims_ended_by_the_user_are_forgotten(env) -> None:  # type: ignore[no-untyped-def]
    class Tidy(Idle):
        def on_start(self):
            kv = self.environment.kv
            kv.release_claim(kv.claim_key("account:0", ttl=TTL))
            kv.complete_claim(kv.claim_key("account:1", ttl=TTL))
            kv.complete_claims([kv.claim_key("account:2", ttl=TTL)], delete=True)
            kv.release_claims(kv.claim_keys(["account:3", "account:4"], ttl=TTL))
            self.kept = kv.claim_key("account:5", ttl=TTL)

    user = start(Tidy, env)
    bound = leases(env)
    assert list(bound._holder_of) == [user.kept.token]
    user.stop(force=True)
    settle_hub()
    assert bound.released == 1  # only the one the user kept
    assert not bound._holder_of and not bound._holders


def test_a_claim_released_by_another_user_is_forgotten_by_its_maker(env) -> None:  # type: ignore[no-untyped-def]
    handed = []

    class Maker(Idle):
        def on_start(self):
            handed.append(self.environment.kv.claim_key("account:0", ttl=TTL))

    class Taker(Idle):
        def on_start(self):
            self.environment.kv.release_claim(handed.pop())
            self.environment.kv.claim_key("account:0", ttl=TTL)  # now the taker's

    maker = start(Maker, env)
    taker = start(Taker, env)
    maker.stop(force=True)
    settle_hub()
    assert claimed(env) == 1  # the maker's end did not release the taker's new lease
    taker.stop(force=True)
    settle_hub()
    assert claimed(env) == 0


def test_claims_made_outside_a_user_are_not_bound(env) -> None:  # type: ignore[no-untyped-def]
    kv = env.kv
    outside = kv.claim_key("account:0", ttl=TTL)
    assert outside.owner == f"{socket.gethostname()}:{os.getpid()}"
    spawned = gevent.spawn(kv.claim_key, "account:1", ttl=TTL)  # a plain greenlet, not a user's
    spawned.join()
    settle_hub()
    env.runner.stop()  # test_stop settles
    assert claimed(env) == 2
    kv.release_claim(outside)


def test_default_owner_names_host_process_and_user(env) -> None:  # type: ignore[no-untyped-def]
    owners = []

    class Named(Idle):
        def on_start(self):
            kv = self.environment.kv
            owners.append(kv.claim_random("account:", ttl=TTL).owner)
            owners.append(kv.claim_random("account:", ttl=TTL).owner)
            owners.append(kv.claim_random("account:", ttl=TTL, owner="me").owner)

    first, second = start(Named, env), start(Named, env)
    prefix = f"{socket.gethostname()}:{os.getpid()}:Named#"
    assert all(o.startswith(prefix) for o in owners[:2] + owners[3:5]), owners
    assert owners[0] == owners[1] and owners[3] == owners[4] and owners[0] != owners[3]
    assert owners[2] == owners[5] == "me"
    for user in (first, second):
        user.stop(force=True)


# -- when they come back --------------------------------------------------------------


class Holder(Idle):
    def on_start(self):
        self.environment.kv.claim_random("account:", ttl=TTL)


def test_stopping_the_runner_releases_every_users_claims_before_test_stop_returns() -> None:
    env = make_env([Holder])
    try:
        seen_at_test_stop = []
        env.events.test_stop.add_listener(lambda **_kw: seen_at_test_stop.append(claimed(env)))
        env.runner.start(POOL, spawn_rate=1000)
        for _ in range(100):
            gevent.sleep(0.01)
            if claimed(env) == POOL:
                break
        assert claimed(env) == POOL
        env.runner.stop()  # kills every user; no sleep after it
        assert claimed(env) == 0
        assert seen_at_test_stop == [0]  # the plugin's listener ran first and had finished
    finally:
        end(env)


def test_a_ramp_down_releases_the_claims_of_the_users_it_stops() -> None:
    env = make_env([Holder])
    try:
        env.runner.start(POOL, spawn_rate=1000)
        for _ in range(100):
            gevent.sleep(0.01)
            if claimed(env) == POOL:
                break
        env.runner.start(3, spawn_rate=1000)  # what a LoadTestShape's lower stage does
        for _ in range(100):
            gevent.sleep(0.01)
            if env.runner.user_count == 3:
                break
        settle_hub()
        assert claimed(env) == 3
    finally:
        end(env)


def test_closing_the_store_releases_what_running_users_hold(env) -> None:  # type: ignore[no-untyped-def]
    user = start(Holder, env)
    kv = env.kv
    try:
        # No runner stop: the user is still running when the store is about to close.
        attachment = getattr(env, plugin.lifecycle.ATTRIBUTE)
        attachment.close()
        assert kv.closed
        assert attachment.leases.released == 1
    finally:
        user.stop(force=True)


def test_release_of_a_lease_lost_meanwhile_is_harmless(env) -> None:  # type: ignore[no-untyped-def]
    class Keeper(Idle):
        def on_start(self):
            self.claim = self.environment.kv.claim_key("account:0", ttl=TTL)

    user = start(Keeper, env)
    env.kv.delete("account:0")  # ends the lease: the plugin's release finds it lost
    user.stop(force=True)
    settle_hub()
    assert leases(env).released == 0
    assert not leases(env)._holder_of
    with pytest.raises(ClaimLostError):
        env.kv.release_claim(user.claim)


# -- named locks follow the same rule -------------------------------------------------


def test_a_lock_a_stopped_user_still_holds_is_released(env) -> None:  # type: ignore[no-untyped-def]
    class Locker(Idle):
        def on_start(self):
            self.lock = self.environment.kv.lock("shared", ttl=TTL)  # taken, never released

    user = start(Locker, env)
    status = env.kv.lock_status("shared")
    assert status.held and status.owner.startswith(f"{socket.gethostname()}:{os.getpid()}:Locker#")
    user.stop(force=True)
    settle_hub()
    assert not env.kv.lock_status("shared").held
    assert leases(env).released == 1
    assert env.kv.lock("shared", ttl=TTL, wait=0).token > user.lock.token


def test_a_user_killed_inside_a_with_block_releases_its_lock_on_the_way_out(env) -> None:  # type: ignore[no-untyped-def]
    class Worker(Idle):
        def on_start(self):
            with self.environment.kv.lock("job", ttl=0.9, auto_renew=True) as self.lock:
                gevent.sleep(60)  # killed here; the renewer (a greenlet: threading is patched) keeps it alive till then

    user = start(Worker, env)
    gevent.sleep(2.0)  # past its ttl: held only thanks to the renewer greenlet
    assert env.kv.lock_status("job").token == user.lock.token
    user.stop(force=True)
    settle_hub()
    assert user.lock.released and not user.lock.lost
    assert not env.kv.lock_status("job").held
    assert leases(env).released == 0  # the block's exit released it; nothing was left to the plugin
