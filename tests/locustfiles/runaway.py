"""Test locustfile: a runaway task that writes a new key on every iteration, as a bug would.

With ``--kv-max-keys`` the store refuses the first key too many with
QuotaExceededError, which the task lets through (one stable text, whatever
the key), instead of filling the disk.
"""

import itertools
import os

from locust import User, constant, task

import locust_kv.plugin  # noqa: F401

_serial = itertools.count()


class Runaway(User):
    wait_time = constant(0.01)

    @task
    def write_a_key_per_request(self):
        self.environment.kv.set(f"request:{os.getpid()}:{next(_serial)}", {"payload": "x" * 100})
