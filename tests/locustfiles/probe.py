"""Test locustfile: each process writes the plugin's effective settings once its first user starts.

A user's on_start runs after every test_start listener, so on a worker it
shows the options taken over from the master. KV_TEST_OUT: output directory.
"""

import dataclasses
import json
import os

from locust import User, constant, task

import locust_kv.plugin

_written = False


class Probe(User):
    wait_time = constant(0.5)

    def on_start(self):
        global _written
        if _written:
            return
        _written = True
        kv = self.environment.kv
        kv.increment_by("probe-users", 1)
        record = {
            "settings": dataclasses.asdict(locust_kv.plugin.settings_of(self.environment)),
            "store": kv.options,
            "location": kv.location,
        }
        with open(os.path.join(os.environ["KV_TEST_OUT"], f"probe-{os.getpid()}.json"), "w") as out:
            json.dump(record, out)

    @task
    def idle(self):
        pass
