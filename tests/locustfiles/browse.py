"""Test locustfile for the web UI: 120 users' records and a flag, seeded before the load.

The users only read, so the key count stays at 121 while a browser looks.
"""

from locust import User, constant, task

from locust_kv.plugin import before_load  # importing the plugin enables it


@before_load.add_listener
def seed(kv, **_kwargs):
    kv.clear()
    for i in range(1, 121):
        kv.set(f"user:{i:04d}", {"id": i})
    kv.set("flag:checkout", {"enabled": True})


class Reader(User):
    wait_time = constant(0.2)

    @task
    def read(self):
        self.environment.kv.get("flag:checkout")
