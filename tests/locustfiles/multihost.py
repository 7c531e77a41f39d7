"""Test locustfile for runs across "hosts": unique order ids, a restored pool, exact counters.

Every user takes order ids from one shared counter and claims each id with
``get_or_set`` (a second claim of an id is a duplicate), draws accounts from
the pool restored with ``--kv-restore-from`` (an empty draw means the pool is
not visible), and counts its own work. The master's ``after_load`` reads the
store and writes a verdict; a worker that never sees the store cannot add up.

Environment: KV_TEST_OUT, a directory every process can write (outside any
mount a test puts over the store).
"""

import json
import os

from locust import User, constant, events, task

import locust_kv.plugin
from locust_kv.errors import KVError

OUT = os.environ["KV_TEST_OUT"]
PER_USER = 50


class Buyer(User):
    wait_time = constant(0.005)

    def on_start(self):
        self.done = 0
        self.log = open(os.path.join(OUT, f"user-{os.getpid()}-{id(self)}.jsonl"), "a", buffering=1)  # noqa: SIM115 - closed in on_stop

    @task
    def buy(self):
        if self.done >= PER_USER:
            return
        kv = self.environment.kv
        order_id = kv.increment_by("orders:next", 1)
        duplicate = kv.get_or_set(f"order:{order_id:08d}", os.getpid()).loaded
        account = kv.random_key("account:")
        kv.increment_by("tasks", 1)
        self.done += 1
        self.log.write(json.dumps({"id": order_id, "duplicate": duplicate, "account": account}) + "\n")

    def on_stop(self):
        self.log.close()


@locust_kv.plugin.after_load.add_listener
def check(environment, kv, **_kwargs):
    try:
        facts = {
            "orders_next": kv.get("orders:next") if kv.exists("orders:next") else 0,
            "tasks": kv.get("tasks") if kv.exists("tasks") else 0,
            "orders": len(kv.list("order:")),
            "accounts": len(kv.list("account:")),
        }
    except KVError as error:
        facts = {"error": str(error)}
    with open(os.path.join(OUT, "verdict.json"), "w") as out:
        json.dump(facts, out)


@events.test_start.add_listener
def note_start(environment, **_kwargs):
    # Which processes saw the test start (a refusing worker logs its own line).
    with open(os.path.join(OUT, f"started-{os.getpid()}.txt"), "w") as out:
        out.write(type(environment.runner).__name__)
