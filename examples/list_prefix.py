"""list: the first entries of a prefix, in key order.

    locust -f examples/list_prefix.py --headless -u 10 -r 10 -t 3s --kv-backend memory

``list(prefix="", limit=0)`` returns the entries (``Entry(key, value)``)
whose key starts with ``prefix``, ascending by UTF-8 bytes; ``limit`` <= 0
returns all of them. It is the first page of ``scan``: use ``scan`` to go
further. Keys ordered by a zero-padded number or a timestamp make "the
latest N" or "the first N" a single call.

Under load, players post scores to a leaderboard keyed so that the best
score sorts first, and read the top TOP with ``list``. After the load the
check compares the top TOP with the best scores the players recorded. A
failed check exits 1.
"""

from __future__ import annotations

import logging
import random

from locust import User, between, task

from locust_kv.plugin import after_load, before_load

TOP = 10
MAX_SCORE = 1_000_000
logger = logging.getLogger("examples.list_prefix")


def board_key(score: int, player: str) -> str:
    # The best score first: keys ascend, so store the distance from the maximum, zero-padded.
    return f"board:{MAX_SCORE - score:07d}:{player}"


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    for key in ("fruit:apple", "fruit:banana", "fruit:cherry", "fruity", "vegetable:leek"):
        kv.set(key, key.upper())
    assert [e.key for e in kv.list(prefix="fruit:")] == ["fruit:apple", "fruit:banana", "fruit:cherry"]
    assert kv.list(prefix="fruit:", limit=1)[0].value == "FRUIT:APPLE"
    assert len(kv.list(prefix="fruit")) == 4           # a prefix is bytes, not a path segment
    assert kv.list(prefix="none:") == []


class Player(User):
    wait_time = between(0.001, 0.01)

    def on_start(self):
        self.kv = self.environment.kv
        self.me = f"player-{id(self):x}"
        self.best = 0

    @task(3)
    def post_score(self):
        score = random.randint(0, MAX_SCORE)
        self.kv.set(board_key(score, self.me), score)
        self.best = max(self.best, score)
        self.kv.set(f"best:{self.me}", self.best)

    @task(1)
    def read_the_top(self):
        top = self.kv.list(prefix="board:", limit=TOP)
        scores = [entry.value for entry in top]
        if scores != sorted(scores, reverse=True):
            raise AssertionError(f"the top {TOP} are out of order: {scores}")


@after_load.add_listener
def check(environment, kv, **_kwargs):
    top = [entry.value for entry in kv.list(prefix="board:", limit=TOP)]
    every_score = sorted((entry.value for entry in kv.list(prefix="board:")), reverse=True)
    best = max((entry.value for entry in kv.list(prefix="best:")), default=None)
    if top != every_score[:TOP] or (top and top[0] != best):
        logger.error("check failed: top %d %s, expected %s (best recorded %s)", TOP, top, every_score[:TOP], best)
        environment.process_exit_code = 1
    else:
        logger.info("the top %d of %d scores are in order, led by the best one recorded: %s", TOP, len(every_score), top)
