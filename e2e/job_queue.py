"""A job queue: producers add jobs, consumers pick one with random_key and claim it with compare_and_swap.

Producers number jobs with ``increment_by`` and enqueue QUOTA of them as
``queue:<id>`` entries in state "pending". Consumers pick a random queued
job, and, after a pause in which other consumers may pick the same one,
claim it by swapping "pending" for "claimed by me"; only the winner
processes the job, then removes it with ``compare_and_delete`` of its own
claim.

Invariant: every one of the QUOTA jobs was processed exactly once, and the
queue is empty.

Deliberate bug (E2E_BREAK=1): one consumer processes its job twice.
"""

from __future__ import annotations

import gevent
from locust import User, between, task

import locust_kv.plugin  # noqa: F401 - gives every user environment.kv
from kit import Verdict, counter, invariant, sabotage, user_id
from locust_kv.errors import KeyNotFoundError

QUOTA = 800
"""Jobs the producers enqueue over the run."""


def job_key(job_id: int) -> str:
    return f"queue:{job_id:06d}"


class Producer(User):
    weight = 1
    wait_time = between(0.001, 0.005)

    def on_start(self) -> None:
        self.kv = self.environment.kv

    @task
    def enqueue(self) -> None:
        job_id = self.kv.increment_by("jobs:next-id", 1)
        if job_id <= QUOTA:
            self.kv.set(job_key(job_id), {"id": job_id, "state": "pending", "payload": f"resize image {job_id}"})


class Consumer(User):
    weight = 3
    wait_time = between(0.001, 0.005)

    def on_start(self) -> None:
        self.kv = self.environment.kv
        self.uid = user_id(self.kv)

    @task
    def work(self) -> None:
        kv = self.kv
        key = kv.random_key(prefix="queue:")
        if not key:
            return  # nothing queued yet, or everything done
        try:
            job = kv.get(key)
        except KeyNotFoundError:
            kv.increment_by("jobs:picked-gone", 1)  # finished by another consumer since random_key
            return
        if job["state"] != "pending":
            return
        gevent.sleep(0)  # deciding takes a moment: other consumers may pick the same job now
        claim = {**job, "state": "claimed", "by": self.uid}
        if not kv.compare_and_swap(key, job, claim):
            kv.increment_by("jobs:claims-lost", 1)
            return
        times = 2 if sabotage(kv) else 1
        for _ in range(times):
            kv.increment_by(f"processed:{job['id']:06d}", 1)
        if not kv.compare_and_delete(key, claim):
            kv.set(f"jobs:foreign-delete:{job['id']:06d}", self.uid)  # someone else touched a job we held


@invariant
def check(kv, verdict: Verdict) -> None:
    processed = {int(entry.key.split(":")[1]): entry.value for entry in kv.list(prefix="processed:")}
    left = [entry.key for entry in kv.list(prefix="queue:")]
    produced = min(kv.get("jobs:next-id"), QUOTA)
    verdict.fact("jobs", produced)
    verdict.fact("processed", sum(processed.values()))
    verdict.fact("claims_lost", counter(kv, "jobs:claims-lost"))
    verdict.fact("picked_gone", counter(kv, "jobs:picked-gone"))
    verdict.expect(produced == QUOTA, f"the producers enqueued {produced} of {QUOTA} jobs in the run time")
    for job_id in range(1, produced + 1):
        times = processed.get(job_id, 0)
        verdict.expect(times == 1, f"job {job_id} was processed {times} times")
    verdict.expect(not left, f"{len(left)} jobs left in the queue, the first {left[:3]}")
    foreign = kv.list(prefix="jobs:foreign-delete:")
    verdict.expect(not foreign, f"{len(foreign)} claimed jobs were changed by another consumer: {foreign[:3]}")

