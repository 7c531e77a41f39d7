"""What a KV operation per task costs the load generator.

Runs ``locustfile_cost.py`` with real headless ``locust`` (one process, users
with no wait) once per variant per round, variants interleaved, and reads
back task iterations per CPU second of the Locust process: the rate one core
sustains. Every task times its KV operation in place (and the variants
without one time a no-op, so that all pay the same timer): the time of the
KV operation in context, over the CPU time of an iteration, is its cost.
The cost is also taken the other way, ``1 - rate / rate of the same task
without the KV operation`` in the same round, which a busy machine makes
noisier.

Three tasks: a *trivial* one (counting itself: the harshest case, where the
KV operation is compared with Locust's bare scheduling loop), and one GET to
a minimal local server through FastHttpUser or through HttpUser (Locust's
default client), timed and recorded in Locust's statistics like any real
request.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

__all__ = ["VARIANTS", "Variant", "run"]

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Variant:
    name: str
    task: str  # KVBENCH_TASK
    op: str  # KVBENCH_OP
    args: tuple[str, ...] = ()

    @property
    def baseline(self) -> str:
        """The variant this one is compared with: the same task without the KV operation."""
        return next(v.name for v in VARIANTS if v.task == self.task and v.op == "none")

    @property
    def unreported(self) -> str | None:
        """For a ``--kv-report`` variant: the same task and operation without it (else None)."""
        if "--kv-report" not in self.args:
            return None
        plain = tuple(a for a in self.args if a not in ("--kv-report", "requests"))
        return next(v.name for v in VARIANTS if (v.task, v.op, v.args) == (self.task, self.op, plain))


VARIANTS = [
    Variant("trivial task", "trivial", "none"),
    Variant("trivial task + get (memory)", "trivial", "get", ("--kv-backend", "memory")),
    Variant("trivial task + increment_by (disk)", "trivial", "increment_by", ("--kv-backend", "disk")),
    Variant("trivial task + increment_by (disk, --kv-report)", "trivial", "increment_by",
            ("--kv-backend", "disk", "--kv-report")),
    Variant("trivial task + increment_by (disk, --kv-report requests)", "trivial", "increment_by",
            ("--kv-backend", "disk", "--kv-report", "requests")),
    Variant("FastHttpUser GET", "fasthttp", "none"),
    Variant("FastHttpUser GET + get (memory)", "fasthttp", "get", ("--kv-backend", "memory")),
    Variant("FastHttpUser GET + get (memory, --kv-report)", "fasthttp", "get", ("--kv-backend", "memory", "--kv-report")),
    Variant("FastHttpUser GET + increment_by (disk)", "fasthttp", "increment_by", ("--kv-backend", "disk")),
    Variant("FastHttpUser GET + increment_by (disk, --kv-report)", "fasthttp", "increment_by",
            ("--kv-backend", "disk", "--kv-report")),
    Variant("FastHttpUser GET + increment_by (disk, --kv-report requests)", "fasthttp", "increment_by",
            ("--kv-backend", "disk", "--kv-report", "requests")),
    Variant("HttpUser GET", "http", "none"),
    Variant("HttpUser GET + get (memory)", "http", "get", ("--kv-backend", "memory")),
    Variant("HttpUser GET + get (memory, --kv-report)", "http", "get", ("--kv-backend", "memory", "--kv-report")),
    Variant("HttpUser GET + increment_by (disk)", "http", "increment_by", ("--kv-backend", "disk")),
    Variant("HttpUser GET + increment_by (disk, --kv-report)", "http", "increment_by",
            ("--kv-backend", "disk", "--kv-report")),
    Variant("HttpUser GET + increment_by (disk, --kv-report requests)", "http", "increment_by",
            ("--kv-backend", "disk", "--kv-report", "requests")),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_http_target() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "http_target.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the local HTTP target did not start")


def _one(variant: Variant, seconds: float, users: int, workdir: str, host: str) -> dict[str, float]:
    out = os.path.join(workdir, "result.json")
    if os.path.exists(out):
        os.remove(out)
    args = list(variant.args)
    if "disk" in args:
        args += ["--kv-path", os.path.join(workdir, "store.lmdb"), "--kv-clear"]
    command = [
        sys.executable, "-m", "locust", "-f", os.path.join(HERE, "locustfile_cost.py"), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary", "--loglevel", "WARNING",
        "--exit-code-on-error", "0", *args,
    ]
    env = dict(os.environ, KVBENCH_TASK=variant.task, KVBENCH_OP=variant.op, KVBENCH_OUT=out,
               KVBENCH_HOST=host, PYTHONUNBUFFERED="1")
    proc = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0 or not os.path.exists(out):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"locust exited {proc.returncode} for {variant.name!r}: " + " | ".join(tail))
    with open(out) as f:
        result = json.load(f)
    mirrored = "requests" in args
    if mirrored and not result["kv_requests"]:
        raise RuntimeError(f"{variant.name!r}: --kv-report requests was on but Locust recorded no KV request")
    if not mirrored and result["kv_requests"]:
        raise RuntimeError(f"{variant.name!r}: Locust recorded KV requests without --kv-report requests")
    return result


def run(rounds: int, seconds: float, users: int, progress=print) -> dict[str, list[dict[str, float]]]:
    """Per variant, one result per round: iterations, cpu_seconds, wall_seconds, requests, kv_requests."""
    results: dict[str, list[dict[str, float]]] = {v.name: [] for v in VARIANTS}
    server, host = _start_http_target()
    try:
        with tempfile.TemporaryDirectory(prefix="kvbench-locust-") as workdir:
            for r in range(rounds):
                shift = r % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    results[variant.name].append(_one(variant, seconds, users, workdir, host))
                progress(f"locust round {r + 1}/{rounds}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results
