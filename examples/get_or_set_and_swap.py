"""get_or_set (atomic set-if-absent) and swap (atomic exchange).

    locust -f examples/get_or_set_and_swap.py --headless -u 20 -r 20 -t 3s --kv-backend memory

``get_or_set(key, value)`` returns ``(value, loaded)``: loaded is True when
the key existed (its stored value comes back and nothing is written), False
when this call stored ``value``. It replaces the racy ``if not exists: set``.
``swap(key, value)`` always writes and returns ``(previous, loaded)``.

Under load, users register usernames (the first claim of a name wins, the
others learn who owns it) and take turns holding a baton with ``swap``,
each handing over the holder it replaced. After the load: every name has
exactly one owner, the one its winner recorded; and every baton holder was
replaced exactly once, except the last. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

NAMES = 200
logger = logging.getLogger("examples.get_or_set_and_swap")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.delete("config")
    value, loaded = kv.get_or_set("config", {"theme": "dark"})
    assert (value, loaded) == ({"theme": "dark"}, False)   # absent: stored now
    value, loaded = kv.get_or_set("config", {"theme": "light"})
    assert (value, loaded) == ({"theme": "dark"}, True)    # present: the stored value, nothing written

    kv.delete("baton")
    assert kv.swap("baton", "alice") == (None, False)      # absent: previous is None
    result = kv.swap("baton", "bob")
    assert result.previous == "alice" and result.loaded    # results are named tuples
    kv.delete("baton")


class Member(User):
    wait_time = between(0.001, 0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"member-{id(self):x}"
        self.names: list[int] = []

    @task(3)
    def register_username(self):
        name = random.randrange(NAMES)
        owner, loaded = self.kv.get_or_set(f"username:{name:03d}", self.me)
        if not loaded:
            self.names.append(name)
            self.kv.set(f"won:{self.me}", self.names)
        elif owner == self.me and name not in self.names:
            raise AssertionError(f"name {name} is stored as ours, but we never won it")

    @task(1)
    def take_the_baton(self):
        token = self.kv.increment_by("baton:tokens", 1)
        previous, loaded = self.kv.swap("baton", token)
        if loaded:
            self.kv.increment_by(f"baton:replaced:{previous}", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    owners = {int(entry.key.split(":")[1]): entry.value for entry in kv.list(prefix="username:")}
    winners = {}
    for entry in kv.list(prefix="won:"):
        for name in entry.value:
            winners.setdefault(name, []).append(entry.key.removeprefix("won:"))
    bad_names = [name for name, owner in owners.items() if winners.get(name) != [owner]]
    tokens = kv.get("baton:tokens") if kv.exists("baton:tokens") else 0
    replaced = {int(entry.key.rsplit(":", 1)[1]): entry.value for entry in kv.list(prefix="baton:replaced:")}
    last = kv.get("baton") if tokens else None
    expected = {token: 1 for token in range(1, tokens + 1) if token != last}
    checks = {
        f"each of {len(owners)} claimed names has exactly one owner, its winner": not bad_names and len(winners) == len(owners),
        f"each of {tokens} baton holders was replaced once, except the last": replaced == expected,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
