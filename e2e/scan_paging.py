"""Many users paging the same prefix together: each takes the next page of a scan and processes it.

A catalogue of CATALOGUE entries is seeded before the load. Pagers share
one scan of it: the position is a ``scan:state`` entry holding the pass and
the cursor. A pager reads the position, fetches the page at that cursor with
``scan`` and moves the position past the page with ``compare_and_swap``;
only the pager whose swap succeeds processes the page. When a pass ends, one
pager starts the next. Meanwhile editors keep adding and removing draft
entries under the same prefix and rewriting catalogue values, so every page
is read under concurrent writes.

Invariant: in every pass, every catalogue entry was processed exactly once
(no gaps, no duplicates) up to where the pass got, and none beyond; at least
two passes completed.

Deliberate bug (E2E_BREAK=1): one pager drops the first entry of its page.
"""

from __future__ import annotations

import random

import gevent
from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, counter, invariant, sabotage, setup, user_id

CATALOGUE = 2000
PASSES = 10
"""Passes after which the pagers rest (the check needs at least two)."""


def entry_key(number: int) -> str:
    return f"catalogue:{number:05d}"


@setup
def seed(kv) -> None:
    for number in range(CATALOGUE):
        kv.set(entry_key(number), {"sku": number, "revision": 0})
    kv.set("scan:state", {"pass": 0, "cursor": "", "done": False})


class Pager(User):
    weight = 3
    wait_time = between(0.001, 0.01)

    @task
    def take_page(self) -> None:
        kv = self.environment.kv
        state = kv.get("scan:state")
        if state["done"]:
            if state["pass"] + 1 == PASSES:
                return
            kv.compare_and_swap("scan:state", state, {"pass": state["pass"] + 1, "cursor": "", "done": False})
            return
        page = kv.scan(prefix="catalogue:", limit=random.randint(1, 60), cursor=state["cursor"])
        gevent.sleep(0)  # reading the page takes a moment: other pagers read the same position meanwhile
        if not kv.compare_and_swap("scan:state", state, {"pass": state["pass"], "cursor": page.cursor, "done": page.done}):
            kv.increment_by("scan:pages-lost", 1)
            return
        entries = [entry for entry in page.entries if ":draft-" not in entry.key]
        if entries and sabotage(kv):
            del entries[0]
        for entry in entries:
            kv.increment_by(f"seen:{state['pass']}:{entry.key}", 1)
        kv.increment_by("scan:pages", 1)


class Editor(User):
    weight = 1
    wait_time = between(0.001, 0.01)

    def on_start(self) -> None:
        self.uid = user_id(self.environment.kv)

    @task
    def edit(self) -> None:
        kv = self.environment.kv
        number = random.randrange(CATALOGUE)
        draft = f"{entry_key(number)}:draft-{self.uid}"
        if random.random() < 0.5:
            kv.set(draft, {"sku": number, "author": self.uid})
        else:
            kv.delete(draft)
        current = kv.get(entry_key(number))
        kv.compare_and_swap(entry_key(number), current, {**current, "revision": current["revision"] + 1})


@invariant
def check(kv, verdict: Verdict) -> None:
    state = kv.get("scan:state")
    catalogue = [entry_key(n) for n in range(CATALOGUE)]
    seen: dict[int, dict[str, int]] = {}
    for entry in kv.list(prefix="seen:"):
        _, pass_no, key = entry.key.split(":", 2)
        seen.setdefault(int(pass_no), {})[key] = entry.value
    completed = state["pass"] + (1 if state["done"] else 0)
    verdict.fact("passes_completed", completed)
    verdict.fact("pages", kv.get("scan:pages"))
    verdict.fact("pages_lost", counter(kv, "scan:pages-lost"))
    verdict.expect(completed >= 2, f"only {completed} passes over the catalogue completed")
    verdict.expect(set(seen) <= set(range(state["pass"] + 1)), f"entries were processed in passes {sorted(seen)}")
    for pass_no in range(state["pass"] + 1):
        counts = seen.get(pass_no, {})
        finished = pass_no < state["pass"] or state["done"]
        # An unfinished pass got as far as the cursor: every entry up to its last processed key.
        reached = catalogue if finished else [key for key in catalogue if counts and key <= max(counts)]
        for key in reached:
            times = counts.get(key, 0)
            verdict.expect(times == 1, f"pass {pass_no}: {key} was processed {times} times")
        beyond = set(counts) - set(reached)
        verdict.expect(not beyond, f"pass {pass_no}: {len(beyond)} entries processed beyond the cursor")
