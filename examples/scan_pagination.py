"""scan: page through the keys of a prefix with a resumable cursor.

    locust -f examples/scan_pagination.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``scan(prefix, limit, cursor)`` returns a ``ScanPage(entries, cursor, done)``
of at most ``limit`` entries in ascending key order (by UTF-8 bytes). Pass
``""`` for the first page and then each page's ``cursor``; the scan resumes
strictly after the last key of the previous page. The last page has
``done`` True and cursor ``""``. ``limit`` <= 0 returns everything left.
Each page is its own atomic read, so a paged scan under concurrent writes
returns no key twice and skips no key that stayed in the store.

Under load, readers page through a catalogue of PRODUCTS entries with
random page sizes while writers add and remove draft entries between them
and update prices. Each full scan must see every product exactly once, in
order; after the load the check counts the full scans and any violation. A
failed check exits 1.
"""

from __future__ import annotations

import logging
import random

import gevent
from locust import User, between, task

from locust_kv.plugin import after_load, before_load

PRODUCTS = 1_000
logger = logging.getLogger("examples.scan_pagination")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    for n in range(5):
        kv.set(f"tour:{n}", n)
    page = kv.scan(prefix="tour:", limit=2)
    assert [e.key for e in page.entries] == ["tour:0", "tour:1"] and not page.done
    page = kv.scan(prefix="tour:", limit=2, cursor=page.cursor)     # strictly after tour:1
    assert [e.value for e in page.entries] == [2, 3]
    page = kv.scan(prefix="tour:", limit=2, cursor=page.cursor)
    assert [e.key for e in page.entries] == ["tour:4"] and page.done and page.cursor == ""
    assert len(kv.scan(prefix="tour:", limit=0).entries) == 5         # limit <= 0: everything
    for n in range(PRODUCTS):
        kv.set(f"product:{n:05d}", {"price": 10})


class Reader(User):
    weight = 2
    wait_time = between(0.001, 0.01)

    @task
    def read_the_catalogue(self):
        kv = self.environment.kv
        seen, cursor = [], ""
        while True:
            page = kv.scan(prefix="product:", limit=random.randint(1, 100), cursor=cursor)
            seen += [entry.key for entry in page.entries if ":draft" not in entry.key]
            if page.done:
                break
            cursor = page.cursor
            gevent.sleep(0)  # between pages, writers change the store
        kv.increment_by("scans:full", 1)
        if seen != [f"product:{n:05d}" for n in range(PRODUCTS)]:
            kv.increment_by("scans:wrong", 1)


class Writer(User):
    weight = 1
    wait_time = between(0.001, 0.01)

    @task
    def edit(self):
        kv = self.environment.kv
        n = random.randrange(PRODUCTS)
        draft = f"product:{n:05d}:draft"  # sorts right after product n
        if kv.exists(draft):
            kv.delete(draft)
        else:
            kv.set(draft, {"price": 9})
        kv.set(f"product:{n:05d}", {"price": random.randint(5, 20)})


@after_load.add_listener
def check(environment, kv, **_kwargs):
    full = kv.get("scans:full") if kv.exists("scans:full") else 0
    wrong = kv.get("scans:wrong") if kv.exists("scans:wrong") else 0
    if full == 0 or wrong:
        logger.error("check failed: %d of %d full scans missed or repeated a product", wrong, full)
        environment.process_exit_code = 1
    else:
        logger.info("all %d full scans saw each of the %d products once, in order", full, PRODUCTS)
