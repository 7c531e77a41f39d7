"""The basic operations: set, get, exists, delete, size and clear.

    locust -f examples/basic_operations.py --headless -u 10 -r 10 -t 3s --kv-backend memory

Before the load, a short tour shows what each call returns. Then every user
keeps a profile in the store: it creates it, reads it back, updates it and
now and then signs out (deletes it) and signs in again. After the load the
check reads every profile: each user's profile holds its last update, and
``size()`` counts exactly the stored profiles. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random

from locust import User, between, task

from locust_kv.errors import KeyNotFoundError
from locust_kv.plugin import after_load, before_load  # importing the plugin gives users environment.kv

logger = logging.getLogger("examples.basic_operations")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    """Once, before any user starts (in the master or standalone process)."""
    assert kv.clear() is True                         # removes every key
    assert kv.set("greeting", "hello") == "hello"     # returns the value it stored
    assert kv.get("greeting") == "hello"
    assert kv.exists("greeting") is True
    assert kv.set("cart", {"items": ["book"], "total": 12.5})["total"] == 12.5  # any JSON value
    assert kv.size() == 2
    assert kv.delete("greeting") is True              # True, also when the key is absent
    assert kv.delete("greeting") is True
    assert kv.exists("greeting") is False
    try:
        kv.get("greeting")
    except KeyNotFoundError as err:                   # a missing key is an error with a stable name
        assert err.name == "KeyNotFoundError" and err.key == "greeting"
    else:
        raise AssertionError("get() of a deleted key returned a value")
    kv.clear()


class Member(User):
    wait_time = between(0.01, 0.05)

    def on_start(self):
        self.kv = self.environment.kv
        self.key = f"profile:{id(self):x}"
        self.version = 0
        self.kv.set(self.key, {"version": 0, "signed_in": True})

    @task(5)
    def update_profile(self):
        profile = self.kv.get(self.key)  # our own key: present unless we signed out
        self.version += 1
        self.kv.set(self.key, {**profile, "version": self.version})

    @task(1)
    def sign_out_and_in(self):
        self.kv.delete(self.key)
        if self.kv.exists(self.key):
            raise AssertionError("a deleted profile still exists")
        self.kv.set(self.key, {"version": self.version, "signed_in": random.choice([True, False])})

    def on_stop(self):
        # Record our last version under another prefix for the check.
        self.kv.set(f"expected:{self.key}", self.version)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    """Once, after every user stopped: every profile holds its user's last version."""
    expected = {entry.key.removeprefix("expected:"): entry.value for entry in kv.list(prefix="expected:")}
    profiles = {entry.key: entry.value["version"] for entry in kv.list(prefix="profile:")}
    failures = []
    if profiles != expected:
        failures.append(f"profiles and their last versions differ: {len(profiles)} stored, {len(expected)} expected")
    if kv.size() != len(profiles) + len(expected):
        failures.append(f"size() is {kv.size()}, but {len(profiles)} profiles and {len(expected)} records are stored")
    for failure in failures:
        logger.error("check failed: %s", failure)
    if failures:
        environment.process_exit_code = 1
    else:
        logger.info("checked %d profiles, each at its user's last version", len(profiles))
