"""Test locustfile: every user increments one shared counter and logs each value it got.

The values of a run must be distinct and contiguous, and the last one must
equal the counter in the store: no increment lost or doubled, whichever
process ran it. Environment:

- KV_TEST_OUT: directory for the logs (one file per user, named by pid).
- KV_TEST_PER_USER: increments per user (default 200).
- KV_TEST_MODULE_PATH: use a module-level ``open_kv(backend="disk", path=...)``
  handle, opened at import (before any fork), instead of ``environment.kv``.
- KV_TEST_EXPECT_SEED: log "missing-seed" if the key "seed" is absent when a user starts.
"""

import os

from locust import User, constant, task

import locust_kv.plugin  # noqa: F401
from locust_kv import open_kv

OUT = os.environ["KV_TEST_OUT"]
PER_USER = int(os.environ.get("KV_TEST_PER_USER", "200"))
MODULE_PATH = os.environ.get("KV_TEST_MODULE_PATH")

module_kv = open_kv(backend="disk", path=MODULE_PATH) if MODULE_PATH else None


class Counter(User):
    wait_time = constant(0.002)

    def on_start(self):
        self.kv = module_kv if module_kv is not None else self.environment.kv
        self.done = 0
        self.log = open(os.path.join(OUT, f"values-{os.getpid()}-{id(self)}.txt"), "a", buffering=1)  # noqa: SIM115 - closed in on_stop
        if os.environ.get("KV_TEST_EXPECT_SEED") and not self.kv.exists("seed"):
            self.log.write("missing-seed\n")

    @task
    def hit(self):
        if self.done < PER_USER:
            self.log.write(f"{self.kv.increment_by('hits', 1)}\n")
            self.done += 1

    def on_stop(self):
        self.log.close()
