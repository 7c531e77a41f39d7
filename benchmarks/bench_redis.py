"""The redis backend against bare redis-py doing the same work, side by side.

    python benchmarks/bench_redis.py [--quick] [--out FILE]

One redis-server, started by this script on a free loopback port with
persistence off, serves both sides. Each side has its own connection pool of
one process (no pipelining: one command or script per call, as a Locust task
makes them).

What "the same work" means for bare redis-py: the cheapest correct way to
get the operation's result from a server, a single command where Redis has
one (GET, SET, EXISTS, INCRBY, DEL, ``SET ... NX GET`` for get-or-set,
``SET ... GET`` for swap, ZCARD for a count, RANDOMKEY for a random key) and
otherwise the same work as one Lua script (compare-and-swap, an ordered
page of a prefix). The bare side keeps no ordered index and no generations,
so the ratio is what the store's guarantees cost (ordered scans, uniform
prefix sampling, all-or-nothing clear and restore) on top of a round trip.
The goal is a ratio of at most 1.15 per operation.

Both sides' batches are interleaved round by round (benchmarks/harness.py)
and timed on the wall clock, the only fair clock for work that waits on a
server. Then throughput: 1, 2 and 4 Locust processes of 100 users each
running ``increment_by`` and ``get`` against one server, beside
``redis-benchmark`` for the same command mix (INCR and GET, 100 clients, no
pipelining). Nothing here asserts; it prints, and ``--out`` writes the
report as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import redis  # noqa: E402

import redis_server  # noqa: E402
from harness import Case, measure, ratio, summarise  # noqa: E402
from locust_kv import open_kv  # noqa: E402

VALUE = {"user": 1234, "name": "alice", "tags": ["a", "b"], "active": True}
ENCODED = orjson.dumps(VALUE, option=orjson.OPT_SORT_KEYS)
KEYS = 1_000
GOAL = 1.15

_CAS_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_PAGE_SCRIPT = """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #keys == 0 then return {} end
local values = redis.call('MGET', unpack(keys))
local out = {}
for i = 1, #keys do out[2 * i - 1] = keys[i]; out[2 * i] = values[i] end
return out
"""


def operations(kv, bare: redis.Redis) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    """name -> (ours, bare): callables doing one operation each, on the same data shapes."""
    cas = bare.register_script(_CAS_SCRIPT)
    page = bare.register_script(_PAGE_SCRIPT)
    a, b = orjson.dumps({"v": 1}), orjson.dumps({"v": 2})
    flip = [0]

    def our_cas() -> bool:
        n = flip[0] % 2
        flip[0] += 1
        return kv.compare_and_swap("cas", {"v": 1 + n}, {"v": 2 - n})  # type: ignore[no-any-return]

    def bare_cas() -> bool:
        n = flip[0] % 2
        flip[0] += 1
        old, new = (a, b) if n == 0 else (b, a)
        return bool(cas(keys=["cas"], args=[old, new]))

    def bare_get() -> object:
        return orjson.loads(bare.get("user:000500"))  # type: ignore[arg-type]

    def bare_get_or_set() -> tuple[object, bool]:
        previous = bare.set("user:000500", ENCODED, nx=True, get=True)
        return (VALUE, False) if previous is None else (orjson.loads(previous), True)

    def bare_swap() -> tuple[object, bool]:
        previous = bare.set("swap", ENCODED, get=True)
        return (None, False) if previous is None else (orjson.loads(previous), True)

    def bare_page() -> list:  # type: ignore[type-arg]
        flat = page(keys=["index"], args=["[user:0001", "(user:0002", 100])
        return [(k.decode(), orjson.loads(v)) for k, v in zip(flat[::2], flat[1::2])]

    def delete_pair(name: str):  # type: ignore[no-untyped-def]
        # set then delete, so that each delete removes a key; both sides pay the set
        def ours() -> None:
            kv.set(name, 1)
            kv.delete(name)

        def theirs() -> None:
            bare.set(name, b"1")
            bare.delete(name)

        return ours, theirs

    return {
        "get": (lambda: kv.get("user:000500"), bare_get),
        "exists": (lambda: kv.exists("user:000500"), lambda: bare.exists("user:000500") == 1),
        "set": (lambda: kv.set("user:000500", VALUE), lambda: bare.set("user:000500", orjson.dumps(VALUE, option=orjson.OPT_SORT_KEYS))),
        "increment_by": (lambda: kv.increment_by("counter", 1), lambda: bare.incrby("counter", 1)),
        "get_or_set (hit)": (lambda: kv.get_or_set("user:000500", VALUE), bare_get_or_set),
        "swap": (lambda: kv.swap("swap", VALUE), bare_swap),
        "compare_and_swap": (our_cas, bare_cas),
        "set + delete": delete_pair("transient"),
        "size": (kv.size, lambda: bare.zcard("index")),
        "random_key": (kv.random_key, bare.randomkey),
        "scan (100 of a prefix)": (lambda: kv.scan("user:0001", limit=100), bare_page),
    }


def fill(kv, bare: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    for i in range(KEYS):
        kv.set("user:%06d" % i, VALUE)
    kv.set("cas", {"v": 1})
    pipe = bare.pipeline(transaction=False)
    for i in range(KEYS):
        key = "user:%06d" % i
        pipe.set(key, ENCODED)
        pipe.zadd("index", {key: 0})
    pipe.set("cas", orjson.dumps({"v": 1}))
    pipe.execute()


def single_process(server: redis_server.RedisServer, rounds: int, target_ms: float) -> list[tuple[str, object, object, object]]:
    url = f"redis://127.0.0.1:{server.port}/0"
    kv = open_kv(backend="redis", url=url, namespace="bench")
    kv.clear()
    bare = redis.Redis(host="127.0.0.1", port=server.port, db=1, protocol=2)
    bare.flushdb()
    fill(kv, bare)
    cases = []
    ops = operations(kv, bare)
    for name, (ours, theirs) in ops.items():
        cases.append(Case(("locust_kv", name), lambda n: n, _loop(ours), max_batch=4096))
        cases.append(Case(("redis-py", name), lambda n: n, _loop(theirs), max_batch=4096))
    measure(cases, rounds, target_ms, progress=lambda text: print("  " + text, file=sys.stderr))
    by_key = {case.key: case for case in cases}
    rows = []
    for name in ops:
        mine, theirs = by_key[("locust_kv", name)], by_key[("redis-py", name)]
        rows.append((name, summarise(mine.wall_samples), summarise(theirs.wall_samples), ratio(mine.wall_samples, theirs.wall_samples)))
    kv.close()
    bare.close()
    return rows


def _loop(work):  # type: ignore[no-untyped-def]
    def run(n: int) -> None:
        for _ in range(n):
            work()

    return run


_LOCUSTFILE = textwrap.dedent(
    """
    import random
    from locust import User, task, events
    import locust_kv.plugin  # noqa: F401

    class Counter(User):
        @task
        def work(self):
            kv = self.environment.kv
            kv.increment_by("hits", 1)
            kv.get("user:%06d" % random.randrange(1000))
    """
)


def throughput(server: redis_server.RedisServer, seconds: int) -> list[tuple[str, float, str]]:
    """Operations per second from 1, 2 and 4 Locust processes of 100 users, and from redis-benchmark."""
    url = f"redis://127.0.0.1:{server.port}/0"
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvbench-redis-locust-") as work:
        locustfile = Path(work) / "locustfile.py"
        locustfile.write_text(_LOCUSTFILE)
        for processes in (1, 2, 4):
            kv = open_kv(backend="redis", url=url, namespace="locust")
            kv.clear()
            for i in range(1000):
                kv.set("user:%06d" % i, VALUE)
            kv.close()
            command = [
                sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(100 * processes),
                "-r", str(100 * processes), "-t", f"{seconds}s", "--kv-backend", "redis", "--kv-redis-url", url,
                "--kv-namespace", "locust", "--only-summary", "--loglevel", "WARNING",
            ]
            if processes > 1:
                command += ["--processes", str(processes)]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            subprocess.run(command, cwd=work, env=env, capture_output=True, timeout=seconds + 120, check=False)
            kv = open_kv(backend="redis", url=url, namespace="locust")
            hits = kv.get("hits") if kv.exists("hits") else 0
            kv.close()
            # two operations per task; the ramp-up is part of the run, so this slightly understates
            rows.append((f"locust_kv, {processes} process(es) x 100 users", 2 * hits / seconds, "increment_by + get"))
    binary = shutil.which("redis-benchmark")
    if binary is None:
        rows.append(("redis-benchmark", float("nan"), "SKIPPED: redis-benchmark not installed"))
        return rows
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(server.port), "-c", "100", "-n", "200000", "-t", "incr,get", "-q", "--csv"],
        capture_output=True, text=True, timeout=300, check=False,
    ).stdout
    rates = [float(m.group(2)) for m in re.finditer(r'"(INCR|GET)","([0-9.]+)"', out)]
    if len(rates) == 2:
        # the mix: one INCR and one GET per pair, run back to back
        mixed = 2 / (1 / rates[0] + 1 / rates[1])
        rows.append(("redis-benchmark, 100 clients (C, no pipelining)", mixed, f"INCR {rates[0]:,.0f}/s, GET {rates[1]:,.0f}/s"))
    else:
        rows.append(("redis-benchmark", float("nan"), f"unexpected output: {out[:200]!r}"))
    return rows


def plot(rows: list, path: Path) -> None:  # type: ignore[type-arg]
    """Per-operation ratios with their quartiles, and the goal, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row[0] for row in rows]
    medians = [row[3].median for row in rows]
    low = [row[3].median - row[3].p25 for row in rows]
    high = [row[3].p75 - row[3].median for row in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(names, medians, xerr=[low, high], color="#4c72b0")
    ax.axvline(GOAL, color="#c44e52", linestyle="--", label=f"goal {GOAL}x")
    ax.axvline(1.0, color="#555555", linewidth=0.8)
    ax.set_xlabel("locust_kv redis backend / bare redis-py (wall clock, median and quartiles)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows: list, tput: list, server: redis_server.RedisServer) -> str:  # type: ignore[type-arg]
    lines = [
        "## Redis backend",
        "",
        "From `python benchmarks/bench_redis.py --out benchmarks/redis.md` (plot: `redis.png`). "
        f"Redis backend against bare redis-py, same server ({server.version.split(' sha')[0]}), loopback, wall clock, "
        f"median of interleaved rounds (p25-p75). Goal: ratio <= {GOAL}.",
        "",
        "| operation | locust_kv µs | redis-py µs | ratio | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, mine, theirs, r in rows:
        verdict = "PASS" if r.median <= GOAL else "MISS"
        lines.append(
            f"| {name} | {mine.median / 1000:.1f} | {theirs.median / 1000:.1f} | {r.median:.2f} ({r.p25:.2f}-{r.p75:.2f}) | {verdict} |"
        )
    lines += ["", "| throughput | ops/s | note |", "| --- | --- | --- |"]
    for name, rate, note in tput:
        lines.append(f"| {name} | {rate:,.0f} | {note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter Locust runs")
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) here, and a plot beside it (.png)")
    parser.add_argument("--no-throughput", action="store_true", help="skip the Locust and redis-benchmark runs")
    args = parser.parse_args()
    random.seed(1)
    server = redis_server.start(allow_install=False)
    try:
        rows = single_process(server, rounds=5 if args.quick else 15, target_ms=50 if args.quick else 150)
        tput = [] if args.no_throughput else throughput(server, 5 if args.quick else 15)
        text = report(rows, tput, server)
    finally:
        server.stop()
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        try:
            plot(rows, args.out.with_suffix(".png"))
        except ImportError as exc:
            print(f"no plot: {exc}", file=sys.stderr)
        print(json.dumps({"written": str(args.out)}), file=sys.stderr)


if __name__ == "__main__":
    main()
