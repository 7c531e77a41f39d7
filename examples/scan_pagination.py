"""scan: page through the keys of a prefix, or of a key range, with a resumable cursor.

    locust -f examples/scan_pagination.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``scan(prefix, limit, cursor)`` returns a ``ScanPage(entries, cursor, done)``
of at most ``limit`` entries in ascending key order (by UTF-8 bytes). Pass
``""`` for the first page and then each page's ``cursor``; the scan resumes
strictly after the last key of the previous page. The last page has
``done`` True and cursor ``""``. ``limit`` <= 0 returns everything left.
Each page is its own atomic read, so a paged scan under concurrent writes
returns no key twice and skips no key that stayed in the store.

Keyword-only ``start`` (inclusive) and ``end`` (exclusive) narrow a scan,
a listing or a ``count`` to a range of keys, by UTF-8 bytes; ``offset``
skips that many keys of the range before the page (counted from the
cursor's key when a cursor is given). An empty or inverted range is empty.

Under load, readers page through a catalogue of PRODUCTS entries with
random page sizes while writers add and remove draft entries between them
and update prices. Each full scan must see every product exactly once, in
order, and so must each scan of the range of products 200 to 699; after
the load the check counts the full scans and any violation. A failed check
exits 1.
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
    # ranges: start inclusive, end exclusive, by UTF-8 bytes; combined with the prefix
    assert kv.list_keys("tour:", start="tour:1", end="tour:4") == ["tour:1", "tour:2", "tour:3"]
    assert kv.count("tour:", start="tour:1", end="tour:4") == 3
    assert kv.list_keys("tour:", start="tour:1", offset=2, limit=2) == ["tour:3", "tour:4"]  # skip 2 of the range
    page = kv.scan_keys("tour:", limit=1, start="tour:1", end="tour:4", offset=1)
    assert page.keys == ["tour:2"]
    page = kv.scan_keys("tour:", limit=5, cursor=page.cursor, start="tour:1", end="tour:4")  # same range
    assert page.keys == ["tour:3"] and page.done
    assert kv.list_keys(start="tour:4", end="tour:1") == [] and kv.count(start="tour:9", end="tour:0") == 0
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

    @task
    def read_a_range(self):
        kv = self.environment.kv
        start, end = "product:00200", "product:00700"  # products 200 to 699, with their drafts
        seen, cursor = [], ""
        while True:
            page = kv.scan_keys(limit=random.randint(1, 100), cursor=cursor, start=start, end=end)
            seen += [key for key in page.keys if ":draft" not in key]
            if page.done:
                break
            cursor = page.cursor
            gevent.sleep(0)
        kv.increment_by("scans:full", 1)
        if seen != [f"product:{n:05d}" for n in range(200, 700)] or not 500 <= kv.count(start=start, end=end) <= 1_000:
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
