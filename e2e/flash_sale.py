"""A flash sale: every shopper tries to buy every item, get_or_set decides who gets each one.

ITEMS items go on sale at once. Each shopper walks all of them in its own
random order and claims each with ``get_or_set(item, {"buyer": me})``: the
one call that does not find a buyer already stored (``loaded`` False) wins the
item. A winner notes the item in its own order list.

Invariant: every item was sold, to exactly one shopper, and that shopper is
the buyer the store holds for it.

Deliberate bug (E2E_BREAK=1): one shopper takes an item although get_or_set
said it was already sold.
"""

from __future__ import annotations

import random

import gevent
from locust import User, constant, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, invariant, sabotage, user_id

ITEMS = 300
ITEMS_PER_TASK = 5


def item_key(item: int) -> str:
    return f"sale:item:{item:04d}"


class Shopper(User):
    wait_time = constant(0.01)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)
        self.to_try = random.sample(range(ITEMS), ITEMS)
        self.bought: list[int] = []

    @task
    def buy(self) -> None:
        kv = self.kv
        for item in self.to_try[:ITEMS_PER_TASK]:
            result = kv.get_or_set(item_key(item), {"buyer": self.uid})
            kv.increment_by("sale:attempts", 1)
            if not result.loaded or sabotage(kv):
                self.bought.append(item)
                kv.set(f"sale:orders:{self.uid:04d}", self.bought)
            gevent.sleep(0)  # the next click: other shoppers go meanwhile
        del self.to_try[:ITEMS_PER_TASK]


@invariant
def check(kv, verdict: Verdict) -> None:
    buyers = {int(entry.key.rsplit(":", 1)[1]): entry.value["buyer"] for entry in kv.list(prefix="sale:item:")}
    winners: dict[int, list[int]] = {}
    for entry in kv.list(prefix="sale:orders:"):
        shopper = int(entry.key.rsplit(":", 1)[1])
        for item in entry.value:
            winners.setdefault(item, []).append(shopper)
    verdict.fact("items", ITEMS)
    verdict.fact("attempts", kv.get("sale:attempts"))
    verdict.fact("shoppers", len({b for b in buyers.values()}))
    verdict.expect(len(buyers) == ITEMS, f"{len(buyers)} of {ITEMS} items were sold in the run time")
    for item in range(ITEMS):
        won_by = winners.get(item, [])
        verdict.expect(len(won_by) == 1, f"item {item} was won by {len(won_by)} shoppers {sorted(won_by)}")
        if len(won_by) == 1 and item in buyers:
            verdict.expect(
                won_by[0] == buyers[item], f"item {item} was won by shopper {won_by[0]} but the store holds buyer {buyers[item]}"
            )
