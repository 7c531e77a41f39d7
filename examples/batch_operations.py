"""Batches and prefixes: get_many, set_many, delete_many, count, scan_keys, delete_prefix.

    locust -f examples/batch_operations.py --headless -u 20 -r 20 -t 3s --kv-backend memory

- ``set_many(items)`` stores a dict (or pairs) all or nothing, in one atomic
  step; ``get_many(keys)`` reads many keys at one moment and returns
  ``Lookup(key, value, found)`` for each, in order; ``delete_many(keys)``
  removes them atomically and says how many existed. At most 100,000 keys.
- ``count(prefix)`` counts keys without reading them; ``scan_keys`` and
  ``list_keys`` are ``scan`` and ``list`` without the values (the same
  cursors); ``random_keys(prefix, count)`` draws several keys at once.
- ``delete_prefix(prefix, limit=0)`` removes the keys of a prefix in short
  atomic steps, so a large prefix never stalls the other users; it returns
  ``(deleted, done)``.

Under load, shoppers fill carts of five items with one ``set_many``, read
them back with one ``get_many``, and check out (``delete_many``) three carts
in four; the others are abandoned. After the load, the check pages through
every cart key with ``scan_keys``: each cart left holds all five items
(a batch is never half applied), ``count`` agrees with the scan, and
``delete_prefix`` removes them all. A failed check exits 1.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

ITEMS = 5
logger = logging.getLogger("examples.batch_operations")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    assert kv.set_many({"fruit:apple": 3, "fruit:kiwi": 5, "veg:leek": 1}) == 3
    found = kv.get_many(["fruit:apple", "fruit:plum", "veg:leek"])     # in the order asked
    assert [(f.key, f.value, f.found) for f in found] == [
        ("fruit:apple", 3, True), ("fruit:plum", None, False), ("veg:leek", 1, True),
    ]
    assert kv.count("fruit:") == 2 and kv.count() == 3                  # no values read
    assert kv.list_keys("fruit:") == ["fruit:apple", "fruit:kiwi"]      # keys only, ascending
    page = kv.scan_keys("", limit=2)                                    # (keys, cursor, done)
    assert page.keys == ["fruit:apple", "fruit:kiwi"] and not page.done
    page = kv.scan_keys("", limit=2, cursor=page.cursor)
    assert page.keys == ["veg:leek"] and page.done and page.cursor == ""
    assert sorted(kv.random_keys("fruit:", count=5)) == ["fruit:apple", "fruit:kiwi"]  # distinct: fewer when fewer match
    assert kv.delete_many(["fruit:apple", "fruit:plum"]) == 1           # only one existed
    kv.set_many((f"log:{n:03d}", n) for n in range(250))                # pairs work too
    assert kv.delete_prefix("log:", limit=100) == (100, False)          # (deleted, done)
    assert kv.delete_prefix("log:") == (150, True)
    kv.clear()


class Shopper(User):
    wait_time = between(0.001, 0.005)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = self.kv.increment_by("shoppers", 1)

    @task
    def fill_a_cart(self):
        kv = self.kv
        cart = f"cart:{self.me:04d}:{kv.increment_by(f'carts-of:{self.me}', 1):05d}:"
        items = {f"{cart}{i}": {"sku": random.randrange(10_000), "qty": random.randint(1, 3)} for i in range(ITEMS)}
        kv.set_many(items)
        lookups = kv.get_many([*items, f"{cart}gift-wrap"])
        if [lookup.found for lookup in lookups] != [True] * ITEMS + [False]:
            kv.increment_by("carts:not-read-back", 1)
        if kv.count(cart) != ITEMS:
            kv.increment_by("carts:miscounted", 1)
        if random.random() < 0.75:
            kv.delete_many(list(items))  # checked out
            kv.increment_by("carts:checked-out", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    per_cart = Counter()
    cursor, pages = "", 0
    while True:
        page = kv.scan_keys("cart:", limit=100, cursor=cursor)
        pages += 1
        per_cart.update(key.rsplit(":", 1)[0] for key in page.keys)
        if page.done:
            break
        cursor = page.cursor
    keys = sum(per_cart.values())
    counted = kv.count("cart:")
    partial = [cart for cart, n in per_cart.items() if n != ITEMS]
    deleted = kv.delete_prefix("cart:")
    checks = {
        f"each of {len(per_cart)} carts left holds all {ITEMS} items": not partial,
        "every cart read back whole, counted right": kv.get("carts:not-read-back", 0) == kv.get("carts:miscounted", 0) == 0,
        f"count('cart:') = {counted} = the {keys} keys scanned in {pages} pages": counted == keys,
        f"delete_prefix removed them all: {deleted}": deleted == (keys, True) and kv.count("cart:") == 0,
        f"{kv.get('carts:checked-out', 0)} carts checked out": kv.get("carts:checked-out", 0) >= 100,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
