"""Test locustfile: each user stores keys that expire at once, then only reads.

Every user writes EXPIRING keys with a ttl of 0.1 s when it starts, then
reads for the rest of the run and never writes again, so no write sheds the
expired keys on its way: only the plugin's background purge
(``--kv-purge-interval``) can remove them before the run ends. Each read
checks that an expired key is absent; a key read back raises, and the run
fails.
"""

import os

from locust import User, constant, task

import locust_kv.plugin  # noqa: F401

EXPIRING = 200


class Writer(User):
    wait_time = constant(0.05)

    def on_start(self):
        self.prefix = f"brief:{os.getpid()}:{id(self)}:"
        self.environment.kv.set_many({f"{self.prefix}{i:04d}": i for i in range(EXPIRING)}, ttl=0.1)
        self.environment.kv.increment_by("written", EXPIRING)

    @task
    def read(self):
        kv = self.environment.kv
        if kv.get(f"{self.prefix}0000", None) is not None and kv.ttl(f"{self.prefix}0000") is None:
            raise AssertionError("a key with a ttl came back without one")
