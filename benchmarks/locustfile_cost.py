"""The locustfile bench_locust.py runs: users with no wait, one task, counted.

``KVBENCH_TASK`` is the task's own work: ``trivial`` (count the iteration,
nothing else), ``fasthttp`` (one GET through FastHttpUser to the local
server at ``KVBENCH_HOST``, which Locust times and records in its
statistics) or ``http`` (the same GET through HttpUser, Locust's default
client, built on requests).
``KVBENCH_OP`` is what the task adds: ``none`` (plain Locust; the plugin is
not even imported), ``get`` or ``increment_by`` (one operation on
``environment.kv``). ``KVBENCH_OUT`` names the JSON file that receives, for
the window from the end of spawning to the stop of the test, the iterations
and the CPU seconds of this process, and the time spent in the KV operation
itself: every task times its KV call (a no-op function without one, so that
every variant pays the same timer) with ``perf_counter_ns``; calls over 1 ms,
where the process was descheduled, are counted apart.
"""

import json
import os
import resource
import time
from time import perf_counter_ns

from locust import FastHttpUser, HttpUser, User, constant, events, task

TASK = os.environ.get("KVBENCH_TASK", "trivial")
OP = os.environ.get("KVBENCH_OP", "none")
OUT = os.environ["KVBENCH_OUT"]

if OP != "none":
    import locust_kv.plugin  # noqa: F401  (gives every user environment.kv)

ITERATIONS = [0]
KV_NS = [0, 0, 0]  # total ns of calls under 1 ms, their count, calls over 1 ms
WINDOW: dict = {}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kv_none(environment) -> None:
    pass


def _kv_get(environment) -> None:
    environment.kv.get("bench:value")


def _kv_increment_by(environment) -> None:
    environment.kv.increment_by("bench:counter", 1)


KV_OP = {"none": _kv_none, "get": _kv_get, "increment_by": _kv_increment_by}[OP]


def _timed_kv_op(environment, _op=KV_OP, _clock=perf_counter_ns, _kv_ns=KV_NS) -> None:
    start = _clock()
    _op(environment)
    elapsed = _clock() - start
    if elapsed < 1_000_000:
        _kv_ns[0] += elapsed
        _kv_ns[1] += 1
    else:
        _kv_ns[2] += 1


if TASK == "trivial":

    class Trivial(User):
        wait_time = constant(0)

        @task
        def iterate(self) -> None:
            ITERATIONS[0] += 1
            _timed_kv_op(self.environment)

elif TASK in ("fasthttp", "http"):

    class Http(FastHttpUser if TASK == "fasthttp" else HttpUser):
        wait_time = constant(0)
        host = os.environ.get("KVBENCH_HOST", "http://127.0.0.1:8089")

        @task
        def iterate(self) -> None:
            ITERATIONS[0] += 1
            _timed_kv_op(self.environment)
            self.client.get("/")

else:
    raise SystemExit(f"unknown KVBENCH_TASK {TASK!r}")


@events.test_start.add_listener
def _seed(environment, **_kwargs) -> None:
    if OP != "none":
        environment.kv.set("bench:value", {"active": True, "id": 1234, "name": "User 0012345"})


@events.spawning_complete.add_listener
def _open_window(**_kwargs) -> None:
    WINDOW.update(iterations=ITERATIONS[0], cpu=_cpu(), wall=time.perf_counter(), kv=list(KV_NS))


@events.test_stop.add_listener
def _close_window(environment, **_kwargs) -> None:
    if "iterations" not in WINDOW:
        return
    result = {
        "iterations": ITERATIONS[0] - WINDOW["iterations"],
        "cpu_seconds": _cpu() - WINDOW["cpu"],
        "wall_seconds": time.perf_counter() - WINDOW["wall"],
        "requests": environment.stats.total.num_requests,
        "kv_requests": sum(e.num_requests for e in environment.stats.entries.values() if e.method == "KV"),
        "kv_ns": KV_NS[0] - WINDOW["kv"][0],
        "kv_calls": KV_NS[1] - WINDOW["kv"][1],
        "kv_slow_calls": KV_NS[2] - WINDOW["kv"][2],
    }
    with open(OUT, "w") as f:
        json.dump(result, f)
