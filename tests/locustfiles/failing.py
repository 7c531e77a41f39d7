"""Test locustfile: every task reads a key that is not there (a different key each time).

The KeyNotFoundError must reach Locust's output under one stable name, not
one row per key.
"""

import itertools

from locust import User, constant, task

import locust_kv.plugin  # noqa: F401

_serial = itertools.count()


class Reader(User):
    wait_time = constant(0.05)

    @task
    def read_missing(self):
        self.environment.kv.get(f"missing:{next(_serial)}")
