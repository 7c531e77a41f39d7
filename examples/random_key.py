"""random_key: a key drawn uniformly, from the whole store or from one prefix.

    locust -f examples/random_key.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``random_key(prefix="")`` returns a key chosen uniformly among those that
start with ``prefix``, or ``""`` when none does (never an error). It is how
users pick test data: a random product, a random account of one tier.

Under load, shoppers pick products from the whole catalogue and from one
category, counting how often each product is drawn. After the load the
check verifies that category draws only returned keys of that category,
that an empty prefix returned "" every time, and that draws were spread
uniformly (each product drawn within six standard deviations of the mean). A
failed check exits 1.
"""

from __future__ import annotations

import logging
import math

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

PER_CATEGORY = 20
CATEGORIES = ("books", "games", "music", "tools")
logger = logging.getLogger("examples.random_key")


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    kv.clear()
    assert kv.random_key() == ""                            # an empty store: "", not an error
    kv.set("colour:red", 1)
    kv.set("colour:blue", 2)
    kv.set("size:xl", 3)
    assert kv.random_key(prefix="colour:") in ("colour:red", "colour:blue")
    assert kv.random_key(prefix="shape:") == ""
    assert kv.random_key() in ("colour:red", "colour:blue", "size:xl")
    kv.clear()
    for category in CATEGORIES:
        for n in range(PER_CATEGORY):
            kv.set(f"product:{category}:{n:03d}", {"category": category})


class Shopper(User):
    wait_time = between(0.001, 0.005)

    @task(3)
    def any_product(self):
        kv = self.environment.kv
        key = kv.random_key(prefix="product:")
        kv.increment_by(f"drawn:{key}", 1)

    @task(1)
    def a_book(self):
        kv = self.environment.kv
        key = kv.random_key(prefix="product:books:")
        if not key.startswith("product:books:"):
            kv.increment_by("wrong:category", 1)
        if kv.random_key(prefix="product:toys:") != "":
            kv.increment_by("wrong:empty-prefix", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    draws = {entry.key.removeprefix("drawn:"): entry.value for entry in kv.list(prefix="drawn:product:")}
    total = sum(draws.values())
    products = len(CATEGORIES) * PER_CATEGORY
    mean = total / products
    lowest, highest = min(draws.values(), default=0), max(draws.values(), default=0)
    wrong = sum(entry.value for entry in kv.list(prefix="wrong:"))
    checks = {
        f"every one of {products} products was drawn ({len(draws)})": len(draws) == products,
        # Uniform draws give each product a count within a few standard deviations (sqrt(mean)) of the mean.
        f"draws spread evenly: {lowest}..{highest} around a mean of {mean:.0f}": mean >= 20
        and mean - 6 * math.sqrt(mean) <= lowest
        and highest <= mean + 6 * math.sqrt(mean),
        "prefixed draws stayed in their prefix, an empty prefix gave \"\"": wrong == 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed over %d draws: %s", total, "; ".join(checks))
