"""A producer/consumer queue on the store: ordered, each message taken exactly once.

    locust -f examples/producer_consumer.py --headless -u 20 -r 20 -t 3s --processes 2 --kv-backend disk --kv-path .locust-kv-examples/queue.lmdb --kv-clear

Producers append messages under ``queue:<seq>``, numbered by
``increment_by`` so the keys sort in order. Consumers take the oldest one:
``list(prefix="queue:", limit=1)`` finds it, ``compare_and_delete`` takes it,
and only the consumer whose delete succeeded handles it; the others look
again. The command above runs the users in two processes sharing one disk
store; ``--kv-backend memory`` without ``--processes`` runs the same code in
one process.

After the load: every message produced was consumed exactly once or is
still queued, and no consumer saw one message twice. A failed check exits 1.
"""

from __future__ import annotations

import logging

from locust import User, between, task

from locust_kv.plugin import after_load

logger = logging.getLogger("examples.producer_consumer")


class Producer(User):
    weight = 1
    wait_time = between(0.001, 0.005)

    @task
    def produce(self):
        kv = self.environment.kv
        seq = kv.increment_by("producer:next-seq", 1)
        kv.set(f"queue:{seq:09d}", {"seq": seq, "body": f"message {seq}"})


class Consumer(User):
    weight = 2
    wait_time = between(0.001, 0.005)

    @task
    def consume(self):
        kv = self.environment.kv
        for _ in range(10):  # a few attempts when other consumers take the same message first
            oldest = kv.list(prefix="queue:", limit=1)
            if not oldest:
                return  # the queue is empty
            message = oldest[0]
            if kv.compare_and_delete(message.key, message.value):
                handled = kv.increment_by(f"handled:{message.value['seq']:09d}", 1)
                if handled != 1:
                    raise AssertionError(f"message {message.value['seq']} was handled {handled} times")
                return
            kv.increment_by("consumers:lost-races", 1)


@after_load.add_listener
def check(environment, kv, **_kwargs):
    produced = kv.get("producer:next-seq") if kv.exists("producer:next-seq") else 0
    handled = {int(entry.key.split(":")[1]): entry.value for entry in kv.list(prefix="handled:")}
    queued = {entry.value["seq"] for entry in kv.list(prefix="queue:")}
    races = kv.get("consumers:lost-races") if kv.exists("consumers:lost-races") else 0
    twice = [seq for seq, times in handled.items() if times != 1]
    missing = [seq for seq in range(1, produced + 1) if seq not in handled and seq not in queued]
    checks = {
        f"{produced} produced = {len(handled)} consumed + {len(queued)} queued": not missing
        and len(handled) + len(queued) == produced,
        "no message consumed twice": not twice,
        "no message both consumed and queued": not (queued & set(handled)),
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed (%d races lost to other consumers): %s", races, "; ".join(checks))
