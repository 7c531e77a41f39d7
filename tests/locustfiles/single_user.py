"""Test script: run_single_user (Locust's debugging entry point) with the plugin.

run_single_user builds its Environment with no runner and fires events.init,
so the plugin opens the store with the options of the command line and the
environment. The user places three orders, then stops.
"""

from locust import User, constant, run_single_user, task
from locust.exception import StopUser

import locust_kv.plugin  # noqa: F401


class Buyer(User):
    wait_time = constant(0)

    @task
    def order(self):
        kv = self.environment.kv
        if kv.increment_by("orders", 1) == 3:
            print(f"single user: orders={kv.get('orders')} backend={kv.backend}", flush=True)
            raise StopUser()


if __name__ == "__main__":
    run_single_user(Buyer)
