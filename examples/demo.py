"""A flash sale with no server: users share one store and the numbers must add up.

    locust -f examples/demo.py --headless -u 20 -r 20 -t 10s
    locust -f examples/demo.py --headless -u 20 -r 20 -t 10s --processes 2

Every user logs in with an account taken from a shared pool (never two users
on one account), places orders whose ids come from one shared counter, and
buys from a stock of 500 widgets with compare-and-swap, so the sale sells
exactly 500 and not one more, however many users and processes race for the
last one. After the load the demo checks the books and prints them; if
anything does not add up, the run exits 1.

The store is the plugin's (``self.environment.kv``): the disk backend by
default, shared by every process of the run. The demo keeps its keys under
``demo:`` and removes them before it starts, so it can run again and again.
"""

from __future__ import annotations

import logging
import os

from locust import User, between, events, task

from locust_kv.plugin import after_load, before_load  # importing the plugin enables it

STOCK = 500
ACCOUNTS = 30
logger = logging.getLogger("demo")


@events.init_command_line_parser.add_listener
def report_kv_operations_by_default(parser, **_kwargs):
    # This demo makes no HTTP requests, so Locust's own tables stay empty: the KV table
    # (microseconds per operation, failures by error name) that --kv-report prints after them
    # is the demo's. A locustfile may change the plugin's defaults like this; the command line still wins.
    parser.set_defaults(kv_report="kv")


@before_load.add_listener
def open_the_shop(environment, kv, **_kwargs):
    """Once, before any user starts: a fresh stock and a pool of free accounts."""
    stale = [entry.key for entry in kv.list(prefix="demo:")]
    for key in stale:
        kv.delete(key)
    kv.set("demo:stock", STOCK)
    for n in range(ACCOUNTS):
        kv.set(f"demo:account:{n:03d}", "free")


class Shopper(User):
    wait_time = between(0.01, 0.05)

    def on_start(self):
        kv = self.environment.kv
        self.me = f"pid{os.getpid()}-user{id(self):x}"
        # Take a free account: a random one, claimed atomically; retry if another user got it first.
        while True:
            account = kv.random_key(prefix="demo:account:")
            if kv.compare_and_swap(account, "free", self.me):
                self.account = account
                return

    @task(3)
    def buy(self):
        kv = self.environment.kv
        order_id = kv.increment_by("demo:orders:next-id", 1)
        while True:
            stock = kv.get("demo:stock")
            if stock == 0:
                status = "sold out"
                break
            if kv.compare_and_swap("demo:stock", stock, stock - 1):
                status = "paid"
                break
        _, existed = kv.get_or_set(f"demo:order:{order_id:08d}", {"status": status, "account": self.account})
        if existed:
            kv.increment_by("demo:duplicate-ids", 1)

    @task(1)
    def browse(self):
        self.environment.kv.increment_by(f"demo:views:{self.account}", 1)

    def on_stop(self):
        self.environment.kv.compare_and_swap(self.account, self.me, "free")


@after_load.add_listener
def check_the_books(environment, kv, **_kwargs):
    """Once, after every user of every process has stopped."""
    orders = {"paid": 0, "sold out": 0}
    cursor, done = "", False
    while not done:  # page through the orders with the scan cursor
        page = kv.scan(prefix="demo:order:", limit=1000, cursor=cursor)
        for entry in page.entries:
            orders[entry.value["status"]] += 1
        cursor, done = page.cursor, page.done
    placed = kv.get("demo:orders:next-id") if kv.exists("demo:orders:next-id") else 0
    stock = kv.get("demo:stock")
    duplicates = kv.get("demo:duplicate-ids") if kv.exists("demo:duplicate-ids") else 0
    busy = [e.key for e in kv.list(prefix="demo:account:") if e.value != "free"]
    views = sum(e.value for e in kv.list(prefix="demo:views:"))

    checks = {
        "every order id was handed out once": duplicates == 0 and sum(orders.values()) == placed,
        f"exactly {STOCK - stock} widgets were sold and paid for": orders["paid"] == STOCK - stock,
        "the stock never went below zero": stock >= 0,
        "every account went back to the pool": not busy,
    }
    logger.info(
        "demo: %d orders with ids 1..%d, %d paid, %d found the sale sold out; %d of %d widgets left; "
        "%d page views; %d accounts shared by every user, all returned; store: %s %s",
        placed, placed, orders["paid"], orders["sold out"], stock, STOCK, views, ACCOUNTS, kv.backend, kv.location,
    )
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("demo: check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("demo: all %d checks passed: %s", len(checks), "; ".join(checks))
