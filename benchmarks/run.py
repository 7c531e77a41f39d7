"""Run every locust_kv benchmark and write benchmarks/RESULTS.md with its plots.

    python benchmarks/run.py            # the full run (about 10 minutes on 2 cores)
    python benchmarks/run.py --quick    # a smoke run (about a minute), written to benchmarks/quick/

Sections (``--only`` picks some):

- ``ops``: every operation on a 10,000-key store: the memory backend against
  a dict under a lock, the disk backend against bare py-lmdb with the same
  environment flags, and redis-py (a redis-server started here on
  127.0.0.1) and diskcache beside them.
- ``processes``: 1, 2 and 4 processes incrementing shared counters on the
  disk backend (and bare py-lmdb, and Redis): throughput and exactness.
- ``locust``: task iterations per CPU second of real headless Locust with and
  without a KV operation per task.
- ``scaling``: get, set, random_key and a scan page at 1,000 to 1,000,000 keys.
- ``backup``: backup and restore of a whole store of 1,000,000 entries.
- ``claims``: the operations of issue 12 (claims, batches, prefixes) on the
  memory, disk and redis backends against their floors; claim_random at
  1,000 and 1,000,000 entries with a fifth of them held, and on a 99% held
  pool (``bench_claims.py``).
- ``reads``: 1, 2 and 4 processes reading one disk store of 100,000 keys
  (get, random_key, random_key(prefix)) for a fixed time, beside bare
  py-lmdb with the same flags: total reads/s and how they scale.
- ``stalls``: every KV operation on 1,000,000 keys (memory, disk, redis)
  in a monkey-patched gevent process, with the longest time each holds the
  hub (``bench_stalls.py``; issue 14's budget is 10 ms). With an earlier ``results.json`` in the output directory,
  ``--only`` updates only its sections and keeps the rest.

A peer that cannot run here (no redis-server and no way to install it, no
disk backend) is reported as SKIPPED with the reason. Nothing here is a test:
the figures are printed and written, never asserted.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_backup  # noqa: E402
import bench_claims  # noqa: E402
import bench_locust  # noqa: E402
import bench_processes  # noqa: E402
import bench_stalls  # noqa: E402
import redis_server  # noqa: E402
import report  # noqa: E402
from bench_ops import OPS, SCALING_OPS, build_cases, profile_case  # noqa: E402
from harness import measure, ratio  # noqa: E402
from peers import (  # noqa: E402
    SAME_WORK,
    BackendAlone,
    DictFloor,
    DiskcachePeer,
    KVImpl,
    LmdbCore,
    LmdbFloor,
    LmdbMainFloor,
    RedisPeer,
    dataset,
)

FULL = dict(
    ops_keys=10_000, ops_rounds=15, ops_ms=10,
    scaling_sizes=[1_000, 10_000, 100_000, 1_000_000], scaling_rounds=11, scaling_ms=8,
    backup_n=1_000_000, backup_rounds=3,
    process_counts=[1, 2, 4], process_rounds=3, process_seconds=1.0,
    locust_rounds=3, locust_seconds=4, locust_users=8,
    claims_keys=10_000, claims_rounds=9, claims_ms=5, claims_redis_rounds=9, claims_redis_ms=25,
    claims_sizes=[1_000, 1_000_000], claims_scale_rounds=15, claims_scale_ms=10, claims_exhausted_keys=10_000,
    reads_keys=100_000, reads_rounds=3, reads_seconds=1.0, stalls_keys=1_000_000,
)
QUICK = dict(
    ops_keys=2_000, ops_rounds=3, ops_ms=3,
    scaling_sizes=[1_000, 10_000], scaling_rounds=3, scaling_ms=3,
    backup_n=20_000, backup_rounds=2,
    process_counts=[1, 2, 4], process_rounds=1, process_seconds=0.2,
    locust_rounds=1, locust_seconds=2, locust_users=4,
    claims_keys=2_000, claims_rounds=3, claims_ms=2, claims_redis_rounds=3, claims_redis_ms=5,
    claims_sizes=[1_000, 20_000], claims_scale_rounds=3, claims_scale_ms=2, claims_exhausted_keys=2_000,
    reads_keys=10_000, reads_rounds=1, reads_seconds=0.2, stalls_keys=20_000,
)
SECTIONS = ["ops", "processes", "reads", "locust", "scaling", "backup", "claims", "stalls"]

# Assumed only when the disk backend cannot be opened: the flags REFERENCE.md measured.
FALLBACK_LMDB_FLAGS = {"subdir": False, "sync": False, "metasync": False, "writemap": True, "map_size": 1 << 34}

_t0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _t0:6.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# What the benchmark needs beyond locust_kv.

REQUIREMENTS = os.path.join(HERE, "requirements.txt")
_MODULES = {"redis": "redis-py (the Redis peer)", "diskcache": "diskcache (a peer)", "matplotlib": "matplotlib (the plots)"}


def ensure_python_packages(allow_install: bool) -> dict[str, str]:
    """Install benchmarks/requirements.txt when one of its modules is missing; what is still missing, and why."""
    import importlib.util

    missing = [m for m in _MODULES if importlib.util.find_spec(m) is None]
    if missing and allow_install:
        log(f"missing {', '.join(missing)}: pip install -r {os.path.relpath(REQUIREMENTS)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", REQUIREMENTS], check=False)
        importlib.invalidate_caches()
        missing = [m for m in missing if importlib.util.find_spec(m) is None]
    how = "pip install failed" if allow_install else "--no-install was given"
    return {m: f"the Python package for {_MODULES[m]} is not installed and {how}" for m in missing}


# ---------------------------------------------------------------------------
# The machine and the versions.


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "locust_kv"], capture_output=True,
                               text=True).stdout.strip()
        return rev + (" with uncommitted changes in locust_kv/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe_machine(workdir: str) -> dict[str, str]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    return {
        "CPU": _cpu_model(),
        "cores usable": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cores (nproc)": str(os.cpu_count()),
        "memory": _mem_total(),
        "OS": f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" if isinstance(x, float) else x for x in load),
        "work directory": workdir,
    }


def describe_versions(redis_version: str | None) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import lmdb

    import locust_kv

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "Python": platform.python_version(),
        "locust_kv": f"{locust_kv.__version__} ({_git_revision()})",
        "locust": v("locust"),
        "lmdb (py-lmdb)": f"{lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})",
        "orjson": v("orjson"),
        "gevent": v("gevent"),
        "sortedcontainers": v("sortedcontainers"),
        "redis-py": v("redis"),
        "redis-server": redis_version or "not run",
        "diskcache": v("diskcache"),
    }


# ---------------------------------------------------------------------------
# Implementations.


def _find_env(obj: Any, depth: int = 3) -> Any:
    """The lmdb.Environment inside a disk backend, wherever it keeps it."""
    import lmdb

    if isinstance(obj, lmdb.Environment):
        return obj
    if depth == 0:
        return None
    values: list[Any] = []
    if hasattr(obj, "__dict__"):
        values += list(vars(obj).values())
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                values.append(getattr(obj, slot))
    for value in values:
        if isinstance(value, (str, bytes, int, float, bool, type(None))):
            continue
        found = _find_env(value, depth - 1)
        if found is not None:
            return found
    return None


def disk_flags(kv: Any) -> dict[str, Any] | None:
    """The disk backend's LMDB environment flags, read from its open environment."""
    env = _find_env(kv._backend)
    if env is None:
        return None
    flags = env.flags()
    info = env.info()
    out = {k: flags[k] for k in ("subdir", "metasync", "sync", "map_async", "readahead", "writemap", "meminit", "lock")}
    out["map_size"] = info["map_size"]
    out["max_readers"] = info["max_readers"]
    return out


class Snapshots:
    """Snapshot files holding dataset(n), written once per n in locust_kv's snapshot format."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.paths: dict[int, str] = {}

    def __call__(self, n: int) -> str:
        if n not in self.paths:
            from locust_kv.snapshot import write_snapshot

            path = os.path.join(self.workdir, f"seed-{n}.snapshot")
            rows = [(k.encode(), v) for k, v in dataset(n)]
            write_snapshot(path, (rows[i : i + 10_000] for i in range(0, len(rows), 10_000)), "memory", "json")
            self.paths[n] = path
        return self.paths[n]


SNAPSHOTS: dict[str, Snapshots] = {}


def open_scaling_impls(workdir: str, n: int, lmdb_flags: dict[str, Any]) -> dict[str, Any]:
    """A memory store, a dict floor, a disk store and a bare py-lmdb floor of their own for size ``n``."""
    from locust_kv import open_kv

    snapshots = SNAPSHOTS.setdefault(workdir, Snapshots(workdir))
    impls: dict[str, Any] = {
        "memory": KVImpl("locust_kv memory", open_kv(backend="memory", name=f"kvbench-{n}"), snapshots),
        "dict": DictFloor(),
    }
    try:
        impls["disk"] = KVImpl("locust_kv disk", open_kv(backend="disk", path=os.path.join(workdir, f"disk-{n}.lmdb")),
                               snapshots)
    except Exception as exc:  # reported as skipped by open_impls already
        log(f"scaling: no disk store of {n:,} keys: {exc}")
    # The flags are the disk backend's, read from its 10,000-key store: its map grows on demand, the floor's cannot.
    flags = dict(lmdb_flags, map_size=max(lmdb_flags.get("map_size", 0), 1 << 32))
    impls["lmdb"] = LmdbFloor(os.path.join(workdir, f"bare-{n}.lmdb"), flags)
    return impls


def open_impls(workdir: str, allow_install: bool, skipped: dict[str, str]) -> tuple[dict[str, Any], Any, dict]:
    from locust_kv import open_kv

    snapshots = SNAPSHOTS.setdefault(workdir, Snapshots(workdir))
    impls: dict[str, Any] = {}
    impls["memory"] = KVImpl("locust_kv memory", open_kv(backend="memory", name="kvbench"), snapshots)
    impls["dict"] = DictFloor()
    flags = None
    try:
        disk = open_kv(backend="disk", path=os.path.join(workdir, "disk-store.lmdb"))
        disk.set("probe", 1)
        disk.delete("probe")
        flags = disk_flags(disk)
        impls["disk"] = KVImpl("locust_kv disk", disk, snapshots)
    except Exception as exc:  # any failure to open means the peer is skipped, with the reason
        skipped["disk"] = f"the disk backend cannot be opened here: {type(exc).__name__}: {exc}"
    if flags is None:
        flags = dict(FALLBACK_LMDB_FLAGS)
        if "disk" in impls:
            skipped["lmdb"] = "no LMDB environment found inside the disk backend to copy its flags from"
        flags_source = "assumed (no disk backend to read them from)"
    else:
        flags_source = "read from the disk backend's open environment"
    if "lmdb" not in skipped:
        impls["lmdb"] = LmdbFloor(os.path.join(workdir, "bare.lmdb"), flags)
        # The second floor of get and exists: the data in LMDB's main database (ops section only).
        impls["lmdb-main"] = LmdbMainFloor(os.path.join(workdir, "bare-main.lmdb"), flags)
    # The same stores without their front-ends, to attribute each gap to a layer (ops section only).
    impls["memory-backend"] = BackendAlone("memory backend alone", impls["memory"].kv)
    if "disk" in impls:
        impls["disk-backend"] = BackendAlone("disk backend alone", impls["disk"].kv)
    if "lmdb" in impls:
        impls["lmdb-core"] = LmdbCore(impls["lmdb"])
    server = None
    missing = ensure_python_packages(allow_install)
    if "redis" in missing:
        skipped["redis"] = missing["redis"]
    if "diskcache" in missing:
        skipped["diskcache"] = missing["diskcache"]
    if "matplotlib" in missing:
        skipped["plots"] = missing["matplotlib"]
    try:
        if "redis" in skipped:
            raise redis_server.Skipped(skipped["redis"])
        server = redis_server.start(allow_install, log)
        impls["redis"] = RedisPeer(server.port, server.directory)
    except redis_server.Skipped as exc:
        skipped["redis"] = str(exc)
    except Exception as exc:
        skipped["redis"] = f"{type(exc).__name__}: {exc}"
        if server is not None:
            server.stop()
            server = None
    try:
        if "diskcache" not in skipped:
            impls["diskcache"] = DiskcachePeer(os.path.join(workdir, "diskcache"))
    except Exception as exc:
        skipped["diskcache"] = f"{type(exc).__name__}: {exc}"
    return impls, server, {"flags": flags, "source": flags_source}


def populate(impls: dict[str, Any], n: int) -> None:
    items = dataset(n)
    gc.unfreeze()
    for name, impl in impls.items():
        start = time.monotonic()
        impl.populate(n, items)
        log(f"  {name}: {n:,} keys in {time.monotonic() - start:.1f}s")
    del items
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------
# Sections.


def run_ops(impls: dict[str, Any], cfg: dict[str, Any], results: dict[str, Any]) -> None:
    n = cfg["ops_keys"]
    log(f"ops: populating {n:,} keys")
    populate(impls, n)
    skipped: dict[tuple[str, str], str] = {}
    cases = build_cases(impls, OPS, n, skipped)
    log(f"ops: {len(cases)} cases, {cfg['ops_rounds']} rounds")
    measure(cases, cfg["ops_rounds"], cfg["ops_ms"], lambda m: log(f"ops: {m}"))
    samples: dict[str, dict[str, list[float]]] = {}
    wall: dict[str, dict[str, list[float]]] = {}
    for case in cases:
        impl, op = case.key
        samples.setdefault(impl, {})[op] = case.samples
        wall.setdefault(impl, {})[op] = case.wall_samples
    results["ops"] = {
        "n_keys": n,
        "rounds": cfg["ops_rounds"],
        "target_ms": cfg["ops_ms"],
        "order": [s.name for s in OPS],
        "notes": {s.name: s.note for s in OPS if s.note},
        "samples": samples,
        "wall_samples": wall,
    }
    # The main-database floor measures get and exists only, by design: its other operations are not "skipped".
    results["skipped_ops"] = {f"{i}|{o}": r for (i, o), r in skipped.items() if i != "lmdb-main"}
    # Profile the operations that miss their floor target.
    by_key = {case.key: case for case in cases}
    profiles: dict[str, list[str]] = {}
    for impl, floor, limit in (("memory", "dict", report.MEMORY_FLOOR_MAX), ("disk", "lmdb", report.DISK_FLOOR_MAX)):
        for op in results["ops"]["order"]:
            a, b = by_key.get((impl, op)), by_key.get((floor, op))
            if a and b and ratio(a.samples, b.samples).median > limit:
                profiles[f"{impl}|{op}"] = profile_case(a, a.batch)
                profiles[f"{floor}|{op}"] = profile_case(b, b.batch)
    results["profiles"] = profiles


def run_scaling(impls: dict[str, Any], cfg: dict[str, Any], results: dict[str, Any], workdir: str) -> dict:
    """Every size side by side: a store per size and implementation, all cases in the same rounds.

    Returns the stores by size, so that the backup section can reuse the largest.
    """
    specs = [s for s in OPS if s.name in SCALING_OPS]
    flags = results["meta"]["lmdb_flags"]["flags"]
    wanted = [k for k in ("memory", "dict", "disk", "lmdb") if k in impls]
    by_size: dict[int, dict[str, Any]] = {}
    cases = []
    for n in cfg["scaling_sizes"]:
        log(f"scaling: populating {n:,} keys")
        by_size[n] = {k: v for k, v in open_scaling_impls(workdir, n, flags).items() if k in wanted}
        populate(by_size[n], n)
        for case in build_cases(by_size[n], specs, n, {}):
            case.key = (f"{case.key[0]}@{n}", case.key[1])
            cases.append(case)
    log(f"scaling: {len(cases)} cases, {cfg['scaling_rounds']} rounds")
    measure(cases, cfg["scaling_rounds"], cfg["scaling_ms"], lambda m: log(f"scaling: {m}"))
    samples: dict[str, dict[str, dict[str, list[float]]]] = {str(n): {} for n in cfg["scaling_sizes"]}
    wall: dict[str, dict[str, dict[str, list[float]]]] = {str(n): {} for n in cfg["scaling_sizes"]}
    for case in cases:
        impl, n = case.key[0].split("@")
        samples[n].setdefault(impl, {})[case.key[1]] = case.samples
        wall[n].setdefault(impl, {})[case.key[1]] = case.wall_samples
    results["scaling"] = {"sizes": cfg["scaling_sizes"], "rounds": cfg["scaling_rounds"], "ops": SCALING_OPS,
                          "samples": samples, "wall_samples": wall, "side_by_side": True}
    return by_size


def run_backup(impls: dict[str, Any], cfg: dict[str, Any], results: dict[str, Any], workdir: str,
               by_size: dict[int, dict[str, Any]]) -> None:
    n = cfg["backup_n"]
    if n in by_size:  # the scaling section's stores of this size, already populated
        chosen = dict(by_size[n])
    else:
        chosen = {k: v for k, v in impls.items() if k in ("memory", "dict", "disk", "lmdb")}
        log(f"backup: populating {n:,} keys")
        populate(chosen, n)
    if "redis" in impls:
        chosen["redis"] = impls["redis"]
    items = dataset(n)
    if "redis" in chosen:
        chosen["redis"].populate(n, items)
    chosen["format"] = bench_backup.FormatAlone(items)
    del items
    log(f"backup: {cfg['backup_rounds']} rounds of {n:,} entries")
    data = bench_backup.run(chosen, n, cfg["backup_rounds"], workdir, lambda m: log(f"backup: {m}"))
    results["backup"] = {
        "n": n,
        "rounds": cfg["backup_rounds"],
        "impls": data,
        "unsupported": {"redis|restore": "n/a: no online restore from a file (RDB loads at start-up)"},
    }
    if "redis" in chosen:
        chosen["redis"].r.flushdb()


def run_processes(impls: dict[str, Any], cfg: dict[str, Any], results: dict[str, Any], lmdb_flags: dict) -> None:
    import lmdb

    rounds = cfg["process_rounds"]
    estimates = {"disk": 3e-6, "lmdb": 2.5e-6, "redis": 80e-6}
    ops = results.get("ops", {}).get("samples", {})
    for kind in estimates:
        s = ops.get(kind, {}).get("increment_by")
        if s:
            estimates[kind] = sorted(s)[len(s) // 2] / 1e9
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    configs = []
    for kind in ("disk", "lmdb", "redis"):
        if kind not in impls:
            continue
        impl = impls[kind]
        if kind == "disk":
            target = {"path": impl.kv.location}
            read_total = lambda keys, kv=impl.kv: sum(int(kv.get(k)) for k in keys if kv.exists(k))  # noqa: E731
        elif kind == "lmdb":
            target = {"path": impl.path, "flags": lmdb_flags}

            def read_total(keys: list[str], impl: Any = impl) -> int:
                with impl.env.begin(db=impl.data_db) as txn:
                    return sum(int(txn.get(k.encode()) or 0) for k in keys)
        else:
            target = {"port": impl.r.connection_pool.connection_kwargs["port"]}
            read_total = lambda keys, r=impl.r: sum(int(v or 0) for v in r.mget(keys))  # noqa: E731
        n = max(1000, int(cfg["process_seconds"] / estimates[kind]))
        runs[kind] = {str(p): [] for p in cfg["process_counts"]}
        configs += [(kind, target, read_total, p, n) for p in cfg["process_counts"]]
    # Rounds outermost, so that a noisy moment of the machine hits every configuration alike.
    for r in range(rounds):
        for kind, target, read_total, p, n in configs:
            try:
                result = bench_processes.run_config(kind, target, p, n, read_total)
            except lmdb.Error as exc:
                raise RuntimeError(f"{kind} with {p} processes: {exc}") from exc
            runs[kind][str(p)].append(result)
            log(f"processes round {r + 1}/{rounds}: {kind} x{p}: {result['per_second']:,.0f}/s exact={result['exact']}")
    results["processes"] = {"counters": bench_processes.COUNTERS, "rounds": rounds, "runs": runs}


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_reads(cfg: dict[str, Any], results: dict[str, Any], workdir: str, lmdb_flags: dict,
              skipped: dict[str, str]) -> None:
    """Reads from 1, 2 and 4 processes on a disk store and on bare py-lmdb with the same flags."""
    from locust_kv import open_kv

    cores = {"os.cpu_count()": os.cpu_count(), "nproc": _nproc(),
             "usable (sched_getaffinity)": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    if "disk" in skipped or "lmdb" in skipped:
        results["reads"] = {"skipped": skipped.get("disk") or skipped["lmdb"], "cores": cores}
        return
    n = cfg["reads_keys"]
    # The disk backend grows its map as it fills: the flags read from a small store carry a small map_size.
    lmdb_flags = dict(lmdb_flags, map_size=max(lmdb_flags.get("map_size", 0), 1 << 30))
    snapshots = SNAPSHOTS.setdefault(workdir, Snapshots(workdir))
    impls = {"disk": KVImpl("locust_kv disk", open_kv(backend="disk", path=os.path.join(workdir, "reads-disk.lmdb")),
                            snapshots),
             "lmdb": LmdbFloor(os.path.join(workdir, "reads-bare.lmdb"), lmdb_flags)}
    try:
        log(f"reads: populating {n:,} keys")
        populate(impls, n)
        targets = {"disk": {"path": impls["disk"].kv.location}, "lmdb": {"path": impls["lmdb"].path, "flags": lmdb_flags}}
        counts, rounds, seconds = cfg["process_counts"], cfg["reads_rounds"], cfg["reads_seconds"]
        runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
            kind: {op: {str(p): [] for p in counts} for op in bench_processes.READ_OPS} for kind in targets}
        # Rounds outermost and the two kinds back to back, so that a noisy moment hits both alike.
        for r in range(rounds):
            for op in bench_processes.READ_OPS:
                for p in counts:
                    for kind in targets:
                        result = bench_processes.run_reads(kind, targets[kind], op, p, seconds, n)
                        runs[kind][op][str(p)].append(result)
                        log(f"reads round {r + 1}/{rounds}: {kind} {op} x{p}: {result['per_second']:,.0f}/s")
    finally:
        for impl in impls.values():
            impl.close()
    results["reads"] = {"n_keys": n, "rounds": rounds, "seconds": seconds, "ops": bench_processes.READ_OPS,
                        "cores": cores, "runs": runs}


def run_stalls(cfg: dict[str, Any], results: dict[str, Any], workdir: str, server: Any,
               skipped: dict[str, str]) -> None:
    """Every operation's longest hold of a gevent hub, at 1,000,000 keys, one process per backend."""
    n = cfg["stalls_keys"]
    snapshot = SNAPSHOTS.setdefault(workdir, Snapshots(workdir))(n)
    backends = [b for b in ("memory", "disk", "redis") if b not in skipped]
    data = bench_stalls.run(backends, n, snapshot, workdir, server.port if server is not None else None, log)
    for b in ("disk", "redis"):
        if b in skipped:
            data["skipped"][b] = skipped[b]
    results["stalls"] = data


def run_locust(cfg: dict[str, Any], results: dict[str, Any]) -> None:
    data = bench_locust.run(cfg["locust_rounds"], cfg["locust_seconds"], cfg["locust_users"],
                            lambda m: log(f"locust: {m}"))
    results["locust"] = {
        "rounds": cfg["locust_rounds"],
        "seconds": cfg["locust_seconds"],
        "users": cfg["locust_users"],
        "variants": [{"name": v.name, "op": v.op, "task": v.task, "baseline": v.baseline, "unreported": v.unreported,
                      "args": list(v.args)} for v in bench_locust.VARIANTS],
        "results": data,
    }


def run_claims(cfg: dict[str, Any], results: dict[str, Any], workdir: str, server: Any,
               skipped: dict[str, str]) -> None:
    snapshots = SNAPSHOTS.setdefault(workdir, Snapshots(workdir))
    backends_skipped = {k: v for k, v in skipped.items() if k in ("disk", "redis")}
    data = bench_claims.run(cfg, workdir, results["meta"]["lmdb_flags"]["flags"],
                            server.port if server is not None else None, snapshots, backends_skipped, log)
    data["meta"] = {
        "date": results["meta"]["date"],
        "command": results["meta"]["command"],
        "mode": results["meta"]["mode"],
        "locust_kv": _git_revision(),
        "redis-server": (server.version.split(" sha=")[0].replace("Redis server v=", "") if server is not None
                         else "not run"),
        "load average at start": results["meta"]["machine"]["load average at start"],
        "load average at end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    results["claims"] = data
    for t in report.evaluate_claims(data):
        log(f"claims: {'PASS' if t['ok'] else 'MISS':4} {t['target']}: {t['measured']}")


# ---------------------------------------------------------------------------


def write_outputs(results: dict[str, Any], out_dir: str, include_notes: bool) -> None:
    notes = None
    notes_path = os.path.join(HERE, "notes.md")
    if include_notes and os.path.exists(notes_path):
        with open(notes_path) as f:
            notes = f.read()
    # The redis backend's own run (bench_redis.py --out redis.md) is a section of its own.
    redis_path = os.path.join(HERE, "redis.md")
    if include_notes and os.path.exists(redis_path):
        with open(redis_path) as f:
            notes = f.read().rstrip() + "\n\n" + (notes or "")
    same_work = SAME_WORK
    lmdb_meta = results["meta"].get("lmdb_flags")
    if lmdb_meta:
        same_work += (f"\nLMDB flags of both the disk backend and the bare py-lmdb floor ({lmdb_meta['source']}): "
                      + ", ".join(f"`{k}={v}`" for k, v in lmdb_meta["flags"].items()) + ".\n")
    claims_notes = None
    claims_notes_path = os.path.join(HERE, "claims_notes.md")
    if include_notes and results.get("claims") and os.path.exists(claims_notes_path):
        with open(claims_notes_path) as f:
            claims_notes = f.read()
    report.write_results_md(results, os.path.join(out_dir, "RESULTS.md"), same_work, notes, claims_notes)
    try:
        report.write_plots(results, out_dir)
    except ImportError as exc:
        log(f"no plots: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small stores, few rounds (about a minute)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--out", help="where RESULTS.md, results.json and the PNGs go "
                        "(default: benchmarks/, or benchmarks/quick/ with --quick)")
    parser.add_argument("--workdir", help="where stores and snapshots live while measuring (default: a temp "
                        "directory under /var/tmp, on disk rather than tmpfs)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install redis-server")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md and plots from results.json")
    args = parser.parse_args(argv)

    out_dir = args.out or (os.path.join(HERE, "quick") if args.quick else HERE)
    os.makedirs(out_dir, exist_ok=True)
    if args.report_only:
        with open(os.path.join(out_dir, "results.json")) as f:
            results = json.load(f)
        write_outputs(results, out_dir, include_notes=results["meta"]["mode"] == "full")
        log(f"rewrote {out_dir}/RESULTS.md")
        return 0

    cfg = QUICK if args.quick else FULL
    sections = args.only or SECTIONS
    base = args.workdir or ("/var/tmp" if os.path.isdir("/var/tmp") else None)
    workdir = tempfile.mkdtemp(prefix="kvbench-", dir=base)
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    results: dict[str, Any] = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "mode": "quick" if args.quick else "full",
        "config": cfg,
        "machine": describe_machine(workdir),
    }}
    skipped: dict[str, str] = {}
    server = None
    impls: dict[str, Any] = {}
    by_size: dict[int, dict[str, Any]] = {}
    try:
        impls, server, lmdb_meta = open_impls(workdir, not args.no_install, skipped)
        results["meta"]["lmdb_flags"] = lmdb_meta
        results["skipped_peers"] = skipped
        for name, reason in skipped.items():
            log(f"SKIPPED {name}: {reason}")
        if "ops" in sections:
            run_ops(impls, cfg, results)
        if "processes" in sections:
            run_processes(impls, cfg, results, lmdb_meta["flags"])
        if "reads" in sections:
            run_reads(cfg, results, workdir, lmdb_meta["flags"], skipped)
        if "locust" in sections:
            run_locust(cfg, results)
        if "scaling" in sections:
            by_size = run_scaling(impls, cfg, results, workdir)
        if "backup" in sections:
            run_backup(impls, cfg, results, workdir, by_size)
        if "claims" in sections:
            run_claims(cfg, results, workdir, server, skipped)
        if "stalls" in sections:
            run_stalls(cfg, results, workdir, server, skipped)
    finally:
        for impl in [*impls.values(), *(i for group in by_size.values() for i in group.values())]:
            try:
                impl.close()
            except Exception as exc:  # closing is best effort; the figures are already taken
                log(f"closing {impl.label}: {exc}")
        if server is not None:
            results["meta"]["versions_redis"] = server.version
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    redis_version = results["meta"].pop("versions_redis", None)
    if redis_version:
        redis_version = redis_version.split(" sha=")[0].replace("Redis server v=", "")
    results["meta"]["versions"] = describe_versions(redis_version)
    results["meta"]["duration_s"] = time.monotonic() - _t0
    results["meta"]["machine"]["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    previous_path = os.path.join(out_dir, "results.json")
    if args.only and os.path.exists(previous_path):
        # Only some sections ran: they replace those sections of the earlier run, and the rest stays.
        with open(previous_path) as f:
            previous = json.load(f)
        if previous.get("meta", {}).get("mode") == results["meta"]["mode"]:
            for section in sections:
                if section in results:
                    previous[section] = results[section]
            results = previous
            log(f"{', '.join(sections)}: merged into the earlier run of {previous_path}")
    with open(previous_path, "w") as f:
        json.dump(results, f, indent=1)
    write_outputs(results, out_dir, include_notes=results["meta"]["mode"] == "full")
    for t in report.evaluate_targets(results):
        verdict = "SKIPPED" if t["ok"] is None else "PASS" if t["ok"] else "MISS"
        print(f"{verdict:7} {t['measured']:>32}  {t['target']}")
    log(f"wrote {out_dir}/RESULTS.md, results.json and plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
