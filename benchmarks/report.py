"""RESULTS.md and the plots, from the raw results of one run (results.json).

Everything here is derived from the saved samples, so the report can be
regenerated without measuring again: ``python benchmarks/run.py --report-only``.
"""

from __future__ import annotations

import os
from typing import Any

from harness import Stats, ratio, summarise

__all__ = ["LABELS", "evaluate_claims", "evaluate_targets", "write_plots", "write_results_md"]

LABELS = {
    "memory": "locust_kv memory",
    "dict": "dict + lock",
    "disk": "locust_kv disk",
    "lmdb": "bare py-lmdb",
    "redis": "redis-py",
    "diskcache": "diskcache",
    "memory-backend": "memory backend alone",
    "disk-backend": "disk backend alone",
    "lmdb-core": "bare py-lmdb core",
    "lmdb-main": "bare py-lmdb (main database)",
    "format": "snapshot format alone",
    "redis-floor": "bare redis-py",
}

MEMORY_FLOOR_MAX = 4.0
DISK_FLOOR_MAX = 1.3
REDIS_SPEEDUP_MIN = 20.0
RANDOM_KEY_GROWTH_MAX = 2.0
MAIN_DB_OPS = ("get", "exists")
"""Measured against the second disk floor too: bare py-lmdb with its keys in the main database (issue 14)."""
REPORT_COST_MAX = 0.03
"""Issue 13: --kv-report in its default mode, beside an HTTP GET, costs Locust less than this of its iterations/s."""
LOCUST_COST_MAX = 0.05
BACKUP_US_MAX = 2.0
RESTORE_US_MAX = 4.0
SCALING_OF_BARE_MIN = 0.8
"""Issue 14: the disk backend's P-process/1-process ratio is at least this fraction of bare LMDB's."""
STALL_MS_MAX = 10.0
"""Issue 14: no KV call holds a gevent hub longer than this (bench_stalls.py)."""


def _ns(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _stat_ns(s: Stats) -> str:
    return f"{_ns(s.median)} ({_ns(s.p25)}–{_ns(s.p75)})"


def _x(s: Stats) -> str:
    return f"{s.median:.2f}x ({s.p25:.2f}–{s.p75:.2f})"


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "SKIPPED"
    return "PASS" if ok else "**MISS**"


def _samples(results: dict[str, Any], impl: str, op: str, clock: str = "cpu") -> list[float] | None:
    """Per-round ns/op of one case: thread CPU time, or wall-clock time (``clock="wall"``)."""
    key = "wall_samples" if clock == "wall" else "samples"
    return results["ops"].get(key, results["ops"]["samples"]).get(impl, {}).get(op)


# ---------------------------------------------------------------------------
# Targets.


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 7 (and issue 4's snapshot goals) with its measured figure."""
    rows: list[dict[str, Any]] = []
    skipped = results.get("skipped_peers", {})
    for peer, what in (("disk", "every disk backend target"), ("lmdb", "disk backend within 1.3x of bare py-lmdb"),
                       ("redis", f"disk increment_by at least {REDIS_SPEEDUP_MIN:.0f}x faster than redis-py INCRBY")):
        if peer in skipped:
            rows.append(dict(target=what, group=peer, op="", measured=f"not measured: {skipped[peer]}", ok=None,
                             value=None))
    ops = results.get("ops")
    if ops:
        for op in ops["order"]:
            for impl, floor, limit in (("memory", "dict", MEMORY_FLOOR_MAX), ("disk", "lmdb", DISK_FLOOR_MAX)):
                a, b = _samples(results, impl, op), _samples(results, floor, op)
                if a and b:
                    r = ratio(a, b)
                    rows.append(dict(target=f"{LABELS[impl]} {op} within {limit}x of {LABELS[floor]}",
                                     group=impl, op=op, measured=_x(r), ok=r.median <= limit, value=r.median))
        for op in MAIN_DB_OPS:  # issue 14: the second floor, LMDB's cheapest read
            a, b = _samples(results, "disk", op), _samples(results, "lmdb-main", op)
            if a and b:
                r = ratio(a, b)
                rows.append(dict(target=f"{LABELS['disk']} {op} within {DISK_FLOOR_MAX}x of {LABELS['lmdb-main']}",
                                 group="disk", op=op + " (main database)", measured=_x(r), ok=r.median <= DISK_FLOOR_MAX,
                                 value=r.median))
        a, b = _samples(results, "redis", "increment_by", "wall"), _samples(results, "disk", "increment_by", "wall")
        if a and b:
            r = ratio(a, b)
            rows.append(dict(target=f"disk increment_by at least {REDIS_SPEEDUP_MIN:.0f}x faster than redis-py INCRBY",
                             group="redis", op="increment_by", measured=f"{_x(r)} faster", ok=r.median >= REDIS_SPEEDUP_MIN,
                             value=r.median))
    scaling = results.get("scaling")
    if scaling and len(scaling["sizes"]) >= 2:
        small, large = str(scaling["sizes"][0]), str(scaling["sizes"][-1])
        for impl in ("memory", "disk"):
            for op in ("random_key", "random_key (prefix)"):
                a = scaling["samples"].get(large, {}).get(impl, {}).get(op)
                b = scaling["samples"].get(small, {}).get(impl, {}).get(op)
                if a and b:
                    r = ratio(a, b)
                    rows.append(dict(
                        target=f"{LABELS[impl]} {op} at {int(large):,} keys within {RANDOM_KEY_GROWTH_MAX:.0f}x of at {int(small):,}",
                        group="scaling", op=op, measured=_x(r), ok=r.median <= RANDOM_KEY_GROWTH_MAX, value=r.median))
    backup = results.get("backup")
    if backup:
        impls = backup["impls"]
        for impl, floor, limit in (("memory", "dict", MEMORY_FLOOR_MAX), ("disk", "lmdb", DISK_FLOOR_MAX)):
            for what in ("backup", "restore"):
                a, b = impls.get(impl, {}).get(what), impls.get(floor, {}).get(what)
                if a and b:
                    r = ratio(a, b)
                    rows.append(dict(target=f"{LABELS[impl]} {what} within {limit}x of {LABELS[floor]}",
                                     group=impl, op=what, measured=_x(r), ok=r.median <= limit, value=r.median))
        n = backup["n"]
        for what, limit in (("backup", BACKUP_US_MAX), ("restore", RESTORE_US_MAX)):
            a = impls.get("disk", {}).get(what)
            if a:
                s = summarise([t / n * 1e6 for t in a])
                rows.append(dict(target=f"disk {what} of {n:,} entries at most {limit:.0f} µs per entry (issue 4)",
                                 group="snapshot", op=what, measured=f"{s.median:.2f} µs ({s.p25:.2f}–{s.p75:.2f})",
                                 ok=s.median <= limit, value=s.median))
    if results.get("claims"):
        rows += evaluate_claims(results["claims"])
    rows += evaluate_scaling_across_processes(results)
    rows += evaluate_stalls(results)
    locust = results.get("locust")
    if locust:
        for variant in locust["variants"]:
            if variant["op"] == "none":
                continue
            cost = _locust_cost(locust, variant)
            ab = _locust_cost_ab(locust, variant)
            worse = max(cost.median, ab.median)
            rows.append(dict(target=f"{variant['name']}: costs Locust < {LOCUST_COST_MAX:.0%} of its iterations/s",
                             group="locust", op=variant["name"],
                             measured=f"{cost.median:.1%} timed in place, {ab.median:.1%} by rates",
                             ok=worse < LOCUST_COST_MAX, value=worse))
            if variant.get("unreported"):
                # Issue 13: what --kv-report costs, against the same run without it (the same task and
                # operation, unreported), beside an HTTP GET; and, for the record, the whole plugin's cost.
                plain = next(v for v in locust["variants"] if v["name"] == variant["unreported"])
                added = summarise([a - b for a, b in zip(_per_round_cost(locust, variant), _per_round_cost(locust, plain))])
                mode = "requests" if "requests" in variant.get("args", []) else "kv"
                http = variant["task"] != "trivial"
                limit = REPORT_COST_MAX if mode == "kv" and http else None
                target = (f"{variant['name']}: --kv-report costs < {REPORT_COST_MAX:.0%} of Locust's iterations/s over "
                          "the same run without it (issue 13)" if limit else
                          f"{variant['name']}: what reporting adds to the same operation unreported")
                rows.append(dict(target=target, group="locust", op=variant["name"] + " (reporting)",
                                 measured=f"{added.median:+.1%} timed in place ({added.p25:+.1%}–{added.p75:+.1%}); "
                                          f"the plugin and its operation in all: {cost.median:.1%}",
                                 ok=added.median < limit if limit else True, value=added.median))
    return rows


def _cores(results: dict[str, Any]) -> str:
    cores = (results.get("reads") or {}).get("cores") or {}
    if cores:
        return f"{cores.get('os.cpu_count()')} cores (nproc {cores.get('nproc')})"
    return f"{results['meta']['machine'].get('cores usable', '?')} cores"


def _scale(by_p: dict[str, list[dict[str, Any]]], p: str) -> Stats | None:
    """Round by round, P processes' total rate over 1 process's."""
    one, many = by_p.get("1"), by_p.get(p)
    if not one or not many:
        return None
    return summarise([b["per_second"] / a["per_second"] for a, b in zip(one, many)])


def scaling_ratios(by_p_ours: dict[str, list[dict[str, Any]]], by_p_bare: dict[str, list[dict[str, Any]]],
                   p: str) -> tuple[Stats, Stats, Stats] | None:
    """(our P/1 ratio, bare LMDB's P/1 ratio, ours over bare), each summarised over rounds."""
    ours, bare = _scale(by_p_ours, p), _scale(by_p_bare, p)
    if ours is None or bare is None:
        return None
    n = min(len(by_p_ours["1"]), len(by_p_bare["1"]), len(by_p_ours[p]), len(by_p_bare[p]))
    relative = summarise([(by_p_ours[p][i]["per_second"] / by_p_ours["1"][i]["per_second"])
                          / (by_p_bare[p][i]["per_second"] / by_p_bare["1"][i]["per_second"]) for i in range(n)])
    return ours, bare, relative


def evaluate_scaling_across_processes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14: disk reads (and increments) from 2 and 4 processes scale like bare LMDB's with the same flags."""
    rows: list[dict[str, Any]] = []
    cores = _cores(results)
    pairs: list[tuple[str, dict, dict]] = []
    reads = results.get("reads")
    if reads and reads.get("skipped"):
        rows.append(dict(target="disk reads across processes scale like bare LMDB's", group="reads", op="",
                         measured=f"not measured: {reads['skipped']}", ok=None, value=None))
    elif reads:
        pairs += [(op, reads["runs"]["disk"][op], reads["runs"]["lmdb"][op]) for op in reads["ops"]]
    procs = results.get("processes")
    if procs and "disk" in procs["runs"] and "lmdb" in procs["runs"]:
        pairs.append(("increment_by", procs["runs"]["disk"], procs["runs"]["lmdb"]))
    for op, ours, bare in pairs:
        for p in ("2", "4"):
            found = scaling_ratios(ours, bare, p)
            if found is None:
                continue
            mine, theirs, rel = found
            what = "writes" if op == "increment_by" else "reads"
            rows.append(dict(
                target=f"disk {op}: {p}-process {what} scale like bare LMDB's ({p}/1-process ratio at least "
                       f"{SCALING_OF_BARE_MIN}x bare's; {cores})",
                group="processes", op=f"{op} x{p}",
                measured=f"ours {mine.median:.2f}x, bare {theirs.median:.2f}x: {_x(rel)}",
                ok=rel.median >= SCALING_OF_BARE_MIN, value=rel.median))
    return rows


def _own_stall(row: dict[str, Any]) -> float:
    """A stall less the time the process spent waiting for a CPU within it (another process's doing)."""
    return row["stall_ms"] - row.get("cpu_wait_ms", 0.0)


def evaluate_stalls(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14: one row per backend: PASS, or MISS naming every operation over the budget."""
    stalls = results.get("stalls")
    if not stalls:
        return []
    rows: list[dict[str, Any]] = []
    n = stalls["n"]
    for backend, reason in stalls.get("skipped", {}).items():
        rows.append(dict(target=f"{backend}: no KV call holds the gevent hub over {STALL_MS_MAX:.0f} ms at {n:,} keys",
                         group="stalls", op=backend, measured=f"not measured: {reason}", ok=None, value=None))
    for backend, data in stalls["backends"].items():
        ops = data["ops"]
        over = sorted((r for r in ops if _own_stall(r) > STALL_MS_MAX), key=lambda r: -_own_stall(r))
        failed = [r for r in ops if r.get("error")]
        worst = max(ops, key=_own_stall) if ops else None
        if over:
            measured = "over budget: " + ", ".join(
                f"{r['op']} {r['stall_ms']:.0f} ms" + (f" ({r['cpu_wait_ms']:.0f} waiting for a CPU)"
                                                      if r.get("cpu_wait_ms", 0) >= 1 else "") for r in over)
        elif worst:
            measured = f"longest {worst['stall_ms']:.1f} ms ({worst['op']})"
        else:
            measured = "nothing measured"
        if failed:
            measured += "; failed: " + ", ".join(r["op"] for r in failed)
        rows.append(dict(target=f"{backend}: no KV call holds the gevent hub over {STALL_MS_MAX:.0f} ms at {n:,} keys "
                                "(the longest stall less the time the OS kept the process waiting for a CPU in it)",
                         group="stalls", op=backend, measured=measured, ok=not over and not failed,
                         value=worst["stall_ms"] if worst else None))
    return rows


_CLAIMS_BACKENDS = {"memory": "locust_kv memory", "disk": "locust_kv disk", "redis": "locust_kv redis"}


def _claims_samples(claims: dict[str, Any], impl: str, op: str, backend: str, scale: str = "") -> list[float] | None:
    """Per-round ns/op of one claims case, on the clock of ``backend``'s comparison."""
    wall = claims["clocks"].get(backend) == "wall"
    key = ("scale_" if scale else "") + ("wall_samples" if wall else "samples")
    return claims[key].get(f"{impl}{scale}", {}).get(op)


def evaluate_claims(claims: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims section's targets: each operation within GOAL of its floor; claim_random's growth."""
    rows: list[dict[str, Any]] = []
    goal, growth = claims["goal"], claims["growth_goal"]
    for op in claims["order"]:
        for backend, floor in claims["pairs"].items():
            a, b = _claims_samples(claims, backend, op, backend), _claims_samples(claims, floor, op, backend)
            if a and b:
                r = ratio(a, b)
                rows.append(dict(target=f"{_CLAIMS_BACKENDS[backend]} {op} within {goal}x of {LABELS[floor]}",
                                 group="claims", op=op, measured=_x(r), ok=r.median <= goal, value=r.median))
    sizes = claims["sizes"]
    small, large = sizes[0], sizes[-1]
    cycle = "claim_random + release_claim"
    for backend in claims["pairs"]:
        a = _claims_samples(claims, backend, cycle, backend, f"@{large}")
        b = _claims_samples(claims, backend, cycle, backend, f"@{small}")
        if a and b:
            r = ratio(a, b)
            rows.append(dict(
                target=f"{_CLAIMS_BACKENDS[backend]} claim_random + release at {large:,} entries within {growth:.0f}x "
                       f"of at {small:,} ({claims['held_share']:.0%} held)",
                group="claims-scaling", op=cycle, measured=_x(r), ok=r.median <= growth, value=r.median))
    return rows


def _us(ns: float) -> str:
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}" if us >= 10 else f"{us:.2f}"


def _claims_section(results: dict[str, Any], w: Any, notes: str | None = None) -> None:
    claims = results["claims"]
    meta = claims.get("meta", {})
    goal, growth = claims["goal"], claims["growth_goal"]
    w("## Claims, batches and prefixes (issue 12)")
    w("")
    w(f"Measured {meta.get('date', '?')} with `{meta.get('command', '?')}` ({claims['duration_s'] / 60:.1f} minutes, "
      f"locust_kv {meta.get('locust_kv', '?')}, redis-server {meta.get('redis-server', '?')}, load average "
      f"{meta.get('load average at start', '?').split()[0]} at start and {meta.get('load average at end', '?').split()[0]} "
      "at end), by `benchmarks/bench_claims.py`. Each backend against a floor doing the same work (below), side by "
      f"side in the same rounds ({claims['rounds']} rounds of batches of about {claims['target_ms']:g} ms; redis "
      f"{claims.get('redis_rounds', claims['rounds'])} rounds of about {claims.get('redis_target_ms', claims['target_ms']):g} ms), on a "
      f"store of {claims['n_keys']:,} user keys (100-byte JSON values) and 100 counters with nothing held. µs per "
      "operation, median (25th–75th percentile); the ratio is taken round by round. Memory and disk are timed on "
      "the thread's CPU time, redis on the wall clock (it waits on the server). **Goal: within "
      f"{goal}x of the floor**, for every operation and backend (the ops section holds the memory backend to 4.0x "
      "of its floor and `bench_redis.py` the redis backend to 1.15x; this section uses one goal for all). A pair "
      "such as claim_key + release_claim is one operation of the table: the two calls back to back.")
    w("")
    w("| operation | backend | locust_kv µs | floor µs | ratio | |")
    w("| --- | --- | ---: | ---: | ---: | --- |")
    skipped = claims.get("skipped", {})
    for op in claims["order"]:
        for backend, floor in claims["pairs"].items():
            a, b = _claims_samples(claims, backend, op, backend), _claims_samples(claims, floor, op, backend)
            if a and b:
                r = ratio(a, b)
                sa, sb = summarise(a), summarise(b)
                w(f"| {op} | {backend} | {_us(sa.median)} ({_us(sa.p25)}–{_us(sa.p75)}) | {_us(sb.median)} | "
                  f"{_x(r)} | {_verdict(r.median <= goal)} |")
            elif a:
                sa = summarise(a)
                reason = skipped.get(f"{floor}|{op}", "not measured")
                w(f"| {op} | {backend} | {_us(sa.median)} ({_us(sa.p25)}–{_us(sa.p75)}) | — ({reason}) | | |")
            else:
                reason = skipped.get(f"{backend}|{op}", "not measured")
                w(f"| {op} | {backend} | not measured: {reason} | | | SKIPPED |")
    w("")
    w("What each batch does: " + "; ".join(f"*{op}*: {note}" for op, note in claims["notes"].items()) + ".")
    w("")
    for backend, reason in claims.get("skipped_backends", {}).items():
        w(f"- {backend} backend: SKIPPED — {reason}")
    if claims.get("skipped_backends"):
        w("")
    attributed = [b for b in ("memory", "disk") if f"{b}-backend" in claims["samples"]]
    if attributed:
        w("**Where the gap is.** The same operations once more through the backend object alone (same rounds, same "
          "store): keys encoded, values already serialized, no argument checks, result types or error mapping. "
          "*Front-end adds* = locust_kv − backend alone. The floors parse and serialize values, which the backend "
          "alone does not, so *backend alone ÷ floor* understates what the backend itself costs for the operations "
          "that carry values. Medians in µs.")
        w("")
        w("| operation | backend | locust_kv | backend alone | floor | front-end adds | backend alone ÷ floor |")
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for op in claims["order"]:
            for backend in attributed:
                a = _claims_samples(claims, backend, op, backend)
                b = _claims_samples(claims, f"{backend}-backend", op, backend)
                f = _claims_samples(claims, claims["pairs"][backend], op, backend)
                if not (a and b and f):
                    continue
                ma, mb, mf = summarise(a).median, summarise(b).median, summarise(f).median
                w(f"| {op} | {backend} | {_us(ma)} | {_us(mb)} | {_us(mf)} | {(ma - mb) / 1000:+,.2f} | "
                  f"{ratio(b, f).median:.2f}x |")
        w("")
    sizes = claims["sizes"]
    small, large = sizes[0], sizes[-1]
    cycle = "claim_random + release_claim"
    w(f"### claim_random at {large:,} entries against {small:,}")
    w("")
    w(f"claim_random (no prefix) + release_claim cycles on stores of {', '.join(f'{n:,}' for n in sizes)} user keys "
      f"(and 100 counters), {claims['held_share']:.0%} of all keys held by live leases an hour long (taken with "
      f"claim_keys before measuring), every size in the same rounds ({claims['scale_rounds']} rounds). µs per "
      f"cycle. **Goal: at {large:,} within {growth:.0f}x of at {small:,}.**")
    w("")
    w(f"| backend | {small:,} µs | {large:,} µs | ratio | |")
    w("| --- | ---: | ---: | ---: | --- |")
    for backend in claims["pairs"]:
        a = _claims_samples(claims, backend, cycle, backend, f"@{large}")
        b = _claims_samples(claims, backend, cycle, backend, f"@{small}")
        if not (a and b):
            reason = skipped.get(f"{backend}@{large}|{cycle}") or skipped.get(f"{backend}@{small}|{cycle}") or "not measured"
            w(f"| {backend} | | | | SKIPPED: {reason} |")
            continue
        r = ratio(a, b)
        w(f"| {backend} | {_us(summarise(b).median)} | {_us(summarise(a).median)} | {_x(r)} | {_verdict(r.median <= growth)} |")
    w("")
    setup = [(backend, claims.get("setup", {}).get(f"{backend} at {large:,}")) for backend in claims["pairs"]]
    setup = [(b, s) for b, s in setup if s]
    if setup:
        w(f"Set-up of the {large:,}-entry stores (not timed in the table): " + "; ".join(
            f"{b}: {s['keys']:,} entries restored from a snapshot in {s['fill_s']:.1f} s, {s['held']:,} leases taken "
            f"with claim_keys (batches of 10,000) in {s['hold_s']:.1f} s ({s['hold_s'] / max(1, s['held']) * 1e6:.0f} µs "
            "a lease)" for b, s in setup) + ".")
        w("")
    ex = claims["exhausted"]
    w(f"### An exhausted pool: {ex['held_share']:.0%} held")
    w("")
    w(f"The same cycle on a store of {ex['keys']:,} user keys and 100 counters of which {ex['held_share']:.0%} are "
      "held: nearly every uniform draw hits a held key, so each backend falls back to its exact path (memory: ranks "
      "among the sorted held keys; disk: a read of the range and its leases, O(k); redis: the ranks of the held keys, "
      "O(leases × log n)). No goal; the last column compares with the same cycle with nothing held in the table "
      "above (a ratio of medians from different rounds).")
    w("")
    w("| backend | µs per cycle, 99% held | nothing held (table above) | × |")
    w("| --- | ---: | ---: | ---: |")
    for backend in claims["pairs"]:
        a = _claims_samples(claims, backend, cycle, backend, "@exhausted")
        base = _claims_samples(claims, backend, cycle, backend)
        if not a:
            w(f"| {backend} | SKIPPED: {skipped.get(f'{backend}@exhausted|{cycle}', 'not measured')} | | |")
            continue
        sa = summarise(a)
        cells = f"{_us(summarise(base).median)} | {sa.median / summarise(base).median:,.0f}x" if base else "— | —"
        w(f"| {backend} | {_us(sa.median)} ({_us(sa.p25)}–{_us(sa.p75)}) | {cells} |")
    w("")
    w("**Same work.** " + claims.get("same_work", "").rstrip())
    w("")
    w("![claims: ratio to the floor per operation, and claim_random's growth](claims.png)")
    w("")
    if notes:
        w(notes.rstrip())
        w("")


def _claims_plot(claims: dict[str, Any], directory: str) -> str:
    import matplotlib.pyplot as plt

    backends = list(claims["pairs"])
    order = claims["order"]
    colors = {"memory": _COLORS["memory"], "disk": _COLORS["disk"], "redis": _COLORS["redis"]}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 0.5 * len(order) + 2), gridspec_kw={"width_ratios": [3, 1]})
    height = 0.8 / max(1, len(backends))
    for j, backend in enumerate(backends):
        floor = claims["pairs"][backend]
        ys, xs, lo, hi = [], [], [], []
        for i, op in enumerate(order):
            a, b = _claims_samples(claims, backend, op, backend), _claims_samples(claims, floor, op, backend)
            if a and b:
                r = ratio(a, b)
                ys.append(i + j * height)
                xs.append(r.median)
                lo.append(r.median - r.p25)
                hi.append(r.p75 - r.median)
        ax.barh(ys, xs, height=height, xerr=[lo, hi], color=colors[backend], label=_CLAIMS_BACKENDS[backend])
    ax.axvline(claims["goal"], color="black", linestyle="--", linewidth=1, label=f"goal {claims['goal']}x")
    ax.axvline(1.0, color="#888888", linewidth=0.8)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(order))])
    ax.set_yticklabels(order, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("locust_kv ÷ its floor (median, bars: 25th–75th percentile)")
    ax.set_title(f"Each operation against its floor ({claims['n_keys']:,} keys)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=4, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    sizes = claims["sizes"]
    cycle = "claim_random + release_claim"
    for backend in backends:
        points = [(n, _claims_samples(claims, backend, cycle, backend, f"@{n}")) for n in sizes]
        points = [(n, summarise(s)) for n, s in points if s]
        if points:
            ax2.errorbar([n for n, _ in points], [s.median / 1000 for _, s in points],
                         yerr=[[(s.median - s.p25) / 1000 for _, s in points], [(s.p75 - s.median) / 1000 for _, s in points]],
                         marker="o", capsize=3, color=colors[backend], label=_CLAIMS_BACKENDS[backend])
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("entries in the store")
    ax2.set_ylabel("µs per claim_random + release")
    ax2.set_title(f"claim_random, {claims['held_share']:.0%} held", fontsize=10)
    ax2.grid(which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(directory, "claims.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _rates(runs: list[dict[str, float]]) -> list[float]:
    return [r["iterations"] / r["cpu_seconds"] for r in runs]


def _kv_us(runs: list[dict[str, float]]) -> list[float]:
    """Mean µs per timed KV call (calls over 1 ms, where the process was descheduled, left out)."""
    return [r["kv_ns"] / r["kv_calls"] / 1000 if r.get("kv_calls") else 0.0 for r in runs]


def _in_context_us(locust: dict[str, Any], variant: dict[str, Any]) -> list[float]:
    """Per round: the KV operation's time in context, less the timer's own cost (the baseline's no-op)."""
    mine = _kv_us(locust["results"][variant["name"]])
    timer = _kv_us(locust["results"][variant["baseline"]])
    return [a - b for a, b in zip(mine, timer)]


def _locust_cost(locust: dict[str, Any], variant: dict[str, Any]) -> Stats:
    """The KV operation's share of an iteration's CPU time, measured in place, over the rounds."""
    return summarise(_per_round_cost(locust, variant))


def _per_round_cost(locust: dict[str, Any], variant: dict[str, Any]) -> list[float]:
    """The KV operation's share of an iteration's CPU time, timed in place, per round."""
    runs = locust["results"][variant["name"]]
    per_iteration = [r["cpu_seconds"] / r["iterations"] * 1e6 for r in runs]
    return [kv / it for kv, it in zip(_in_context_us(locust, variant), per_iteration)]


def _locust_cost_ab(locust: dict[str, Any], variant: dict[str, Any]) -> Stats:
    """1 - rate / baseline rate, per round."""
    mine = _rates(locust["results"][variant["name"]])
    base = _rates(locust["results"][variant["baseline"]])
    return summarise([1 - a / b for a, b in zip(mine, base)])


# ---------------------------------------------------------------------------
# RESULTS.md


def write_results_md(results: dict[str, Any], path: str, same_work: str, notes: str | None,
                     claims_notes: str | None = None) -> None:
    meta = results["meta"]
    out: list[str] = []
    w = out.append
    w("# locust_kv benchmarks")
    w("")
    w(f"Measured {meta['date']} with `{meta['command']}` ({meta['mode']} mode, {meta['duration_s'] / 60:.1f} minutes). "
      "Every comparison ran side by side in the same rounds (each round runs one batch of every case, in an order "
      "that rotates); figures are the **median over rounds, with the 25th–75th percentile range in brackets**. "
      "Ratios are taken round by round, then summarised the same way. Regenerate with the command above; "
      "`--quick` gives a smoke run in about a minute.")
    w("")
    w("## Machine")
    w("")
    for k, v in meta["machine"].items():
        w(f"- {k}: {v}")
    w("")
    w("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".")
    w("")
    cores = int(meta["machine"].get("cores usable", "1") or 1)
    start = float((meta["machine"].get("load average at start") or "0").split()[0])
    end = float((meta["machine"].get("load average at end") or "0").split()[0])
    busiest = max(start, end)
    # The benchmark itself keeps about one core busy: other load shows as more than that.
    if start > 0.5 * cores or end > cores:
        w(f"The machine is shared: its 1-minute load average reached {busiest:.1f} on {cores} cores during the run, "
          "so other processes competed for the CPU. Side-by-side rounds keep the ratios fair; absolute figures and "
          "spreads are noisier than on an idle machine.")
        w("")
    skipped_peers = results.get("skipped_peers", {})
    if skipped_peers:
        w("**Skipped peers:**")
        w("")
        for name, reason in skipped_peers.items():
            w(f"- {LABELS.get(name, name)}: SKIPPED — {reason}")
        w("")

    targets = evaluate_targets(results)
    w("## Targets")
    w("")
    if targets:
        passed = sum(t["ok"] is True for t in targets)
        judged = sum(t["ok"] is not None for t in targets)
        w(f"{passed} of {judged} targets met" + (f"; {len(targets) - judged} not measured (SKIPPED)." if judged < len(targets)
                                                 else "."))
        w("")
        w("| target | measured | |")
        w("| --- | --- | --- |")
        for t in targets:
            w(f"| {t['target']} | {t['measured']} | {_verdict(t['ok'])} |")
        w("")
    w("## What \"same work\" means")
    w("")
    w(same_work.rstrip())
    w("")

    ops = results.get("ops")
    if ops:
        _ops_section(results, w)
    if ops and "disk-backend" in ops["samples"]:
        _attribution_section(results, w)
    if results.get("profiles"):
        _profiles_section(results, w)
    if results.get("scaling"):
        _scaling_section(results, w)
    if results.get("backup"):
        _backup_section(results, w)
    if results.get("processes"):
        _processes_section(results, w)
    if results.get("reads") and not results["reads"].get("skipped"):
        _reads_section(results, w)
    if results.get("locust"):
        _locust_section(results, w)
    if results.get("claims"):
        _claims_section(results, w, claims_notes)
    if results.get("stalls"):
        _stalls_section(results, w)
    if notes:
        w("## Notes")
        w("")
        w(notes.rstrip())
        w("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def _ops_section(results: dict[str, Any], w: Any) -> None:
    ops = results["ops"]
    w("## Operations")
    w("")
    w(f"A store holding {ops['n_keys']:,} user keys (100-byte JSON values) and 100 counters; one call per operation, "
      f"batches of about {ops['target_ms']:g} ms, {ops['rounds']} rounds. ns per operation. Against the floors, the "
      "clock is the thread's CPU time (the machine's other load barely moves it); against redis-py and diskcache, "
      "which wait on a server or a disk, the wall clock for every column.")
    w("")
    notes = ops.get("notes", {})
    for impl, floor, limit in (("memory", "dict", MEMORY_FLOOR_MAX), ("disk", "lmdb", DISK_FLOOR_MAX)):
        if impl not in ops["samples"]:
            continue
        w(f"### {LABELS[impl]} against {LABELS[floor]} (target: within {limit}x)")
        w("")
        w(f"| operation | {LABELS[impl]} | {LABELS[floor]} | ratio | |")
        w("| --- | ---: | ---: | ---: | --- |")
        for op in ops["order"]:
            a, b = _samples(results, impl, op), _samples(results, floor, op)
            if not a:
                continue
            if b:
                r = ratio(a, b)
                w(f"| {op} | {_stat_ns(summarise(a))} | {_stat_ns(summarise(b))} | {_x(r)} | {_verdict(r.median <= limit)} |")
            else:
                reason = results["skipped_ops"].get(f"{floor}|{op}", "not measured")
                w(f"| {op} | {_stat_ns(summarise(a))} | — ({reason}) | | |")
        w("")
    if "disk" in ops["samples"] and "lmdb-main" in ops["samples"]:
        w(f"### {LABELS['disk']} against {LABELS['lmdb-main']} (target: within {DISK_FLOOR_MAX}x)")
        w("")
        w("The second floor of the reads: bare py-lmdb with its keys in LMDB's main database, one lookup per read "
          "transaction. The disk backend reads a named database of the live generation after its state record "
          "(what makes clear and restore atomic across processes); notes.md gives what each costs.")
        w("")
        w(f"| operation | {LABELS['disk']} | {LABELS['lmdb']} | {LABELS['lmdb-main']} | ratio to the main database | |")
        w("| --- | ---: | ---: | ---: | ---: | --- |")
        for op in MAIN_DB_OPS:
            a, b, c = _samples(results, "disk", op), _samples(results, "lmdb", op), _samples(results, "lmdb-main", op)
            if a and c:
                r = ratio(a, c)
                named = _stat_ns(summarise(b)) if b else "—"
                w(f"| {op} | {_stat_ns(summarise(a))} | {named} | {_stat_ns(summarise(c))} | {_x(r)} | "
                  f"{_verdict(r.median <= DISK_FLOOR_MAX)} |")
        w("")
    present = [i for i in ("memory", "dict", "disk", "lmdb", "redis", "diskcache") if i in ops["samples"]]
    w("### Every implementation")
    w("")
    w("Median wall-clock ns per operation. The last columns are how many times slower than the disk backend each "
      "peer is (round by round, wall clock on both sides).")
    w("")
    head = " | ".join(LABELS[i] for i in present)
    extra = [p for p in ("redis", "diskcache") if p in present and "disk" in present]
    w(f"| operation | {head} | " + " | ".join(f"{LABELS[p]} ÷ disk" for p in extra) + " |")
    w("| --- | " + " | ".join("---:" for _ in present) + " | " + " | ".join("---:" for _ in extra) + " |")
    for op in ops["order"]:
        cells = []
        for impl in present:
            s = _samples(results, impl, op, "wall")
            cells.append(_ns(summarise(s).median) if s else "—")
        ratios = []
        for p in extra:
            a, b = _samples(results, p, op, "wall"), _samples(results, "disk", op, "wall")
            ratios.append(f"{ratio(a, b).median:,.1f}x" if a and b else "—")
        note = f" ({notes[op]})" if notes.get(op) else ""
        w(f"| {op}{note} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    w("")
    skipped = results.get("skipped_ops", {})
    if skipped:
        w("Not measured (no form of the operation): " + "; ".join(
            f"{LABELS.get(k.split('|')[0], k)} {k.split('|')[1]}: {v}" for k, v in sorted(skipped.items())) + ".")
        w("")
    w("![operations](ops.png)")
    w("")


def _median(results: dict[str, Any], impl: str, op: str) -> float | None:
    s = _samples(results, impl, op)
    return summarise(s).median if s else None


def _attribution_section(results: dict[str, Any], w: Any) -> None:
    ops = results["ops"]
    w("## Where each gap is: front-end or backend")
    w("")
    w("The same operations measured once more without locust_kv's front-end (in the same rounds, thread CPU time): "
      "the backend object called directly with "
      "bytes (no argument checks, serialization, error mapping or result types), and the bare py-lmdb floor's "
      "transaction functions called with bytes (its work without serialization). Medians in ns. For the disk backend "
      "the gap to the floor splits exactly into **front-end adds** = (locust_kv − backend alone) − (floor − floor "
      "core), what the front-end costs beyond the floor's own serialization and key encoding, and **backend adds** = "
      "backend alone − floor core.")
    w("")
    w("| operation | locust_kv disk | disk backend alone | bare py-lmdb | bare py-lmdb core | front-end adds | backend adds |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for op in ops["order"]:
        kv, be, fl, core = (_median(results, i, op) for i in ("disk", "disk-backend", "lmdb", "lmdb-core"))
        if None in (kv, be, fl, core):
            continue
        w(f"| {op} | {_ns(kv)} | {_ns(be)} | {_ns(fl)} | {_ns(core)} | {(kv - be) - (fl - core):+,.0f} | "
          f"{be - core:+,.0f} |")
    w("")
    if "memory-backend" in ops["samples"]:
        w("| operation | locust_kv memory | memory backend alone | front-end (with serialization) | dict + lock |")
        w("| --- | ---: | ---: | ---: | ---: |")
        for op in ops["order"]:
            kv, be, fl = (_median(results, i, op) for i in ("memory", "memory-backend", "dict"))
            if None in (kv, be, fl):
                continue
            w(f"| {op} | {_ns(kv)} | {_ns(be)} | {kv - be:+,.0f} | {_ns(fl)} |")
        w("")


def _profiles_section(results: dict[str, Any], w: Any) -> None:
    w("## Where the time goes in the misses")
    w("")
    w("cProfile of one batch of each missed operation (own time per function, largest first; "
      "the profiler inflates every call, so read the shares and the calls per operation, not absolute times).")
    w("")
    for key, lines in results["profiles"].items():
        impl, op = key.split("|")
        w(f"**{LABELS.get(impl, impl)} — {op}**")
        w("")
        w("```")
        for line in lines:
            w(line)
        w("```")
        w("")


def _scaling_section(results: dict[str, Any], w: Any) -> None:
    scaling = results["scaling"]
    sizes = scaling["sizes"]
    w("## Store size")
    w("")
    w(f"The same operations on stores of {', '.join(f'{n:,}' for n in sizes)} user keys, a store of every size and "
      f"implementation open at once and all of them measured in the same rounds ({scaling['rounds']} rounds), so "
      "the ratios between sizes are taken round by round. Each cell: median ns per operation of thread CPU time "
      "(25th–75th percentile), then the median wall-clock time, which also counts waits the CPU clock does not see "
      "(the kernel writing back pages a write dirtied, and other processes holding the CPU).")
    w("")
    impls = [i for i in ("memory", "dict", "disk", "lmdb") if any(i in scaling["samples"][str(n)] for n in sizes)]
    walls = scaling.get("wall_samples", {})
    for op in scaling["ops"]:
        w(f"**{op}**")
        w("")
        w("| keys | " + " | ".join(LABELS[i] for i in impls) + " |")
        w("| ---: | " + " | ".join("---:" for _ in impls) + " |")
        for n in sizes:
            cells = []
            for impl in impls:
                s = scaling["samples"][str(n)].get(impl, {}).get(op)
                wall = walls.get(str(n), {}).get(impl, {}).get(op)
                cell = _stat_ns(summarise(s)) if s else "—"
                if s and wall:
                    cell += f"; wall {_ns(summarise(wall).median)}"
                cells.append(cell)
            w(f"| {n:,} | " + " | ".join(cells) + " |")
        w("")
    w("![latency against store size](scaling.png)")
    w("")


def _backup_section(results: dict[str, Any], w: Any) -> None:
    backup = results["backup"]
    n = backup["n"]
    w("## Backup and restore")
    w("")
    w(f"A whole store of {n:,} user keys (100-byte values) written to a snapshot file and read back "
      f"({backup['rounds']} rounds). µs per entry; MB/s of snapshot file.")
    w("")
    w("| implementation | backup µs/entry | backup MB/s | restore µs/entry | restore MB/s | file MB |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for impl, data in backup["impls"].items():
        size = data.get("bytes", 0)
        cells = []
        for what in ("backup", "restore"):
            times = data.get(what)
            if times:
                per = summarise([t / n * 1e6 for t in times])
                mbs = summarise([size / t / 1e6 for t in times]) if size else None
                cells.append(f"{per.median:.2f} ({per.p25:.2f}–{per.p75:.2f})")
                cells.append(f"{mbs.median:,.0f}" if mbs else "—")
            else:
                cells += [backup.get("unsupported", {}).get(f"{impl}|{what}", "—"), ""]
        w(f"| {LABELS.get(impl, impl)} | " + " | ".join(cells) + f" | {size / 1e6:,.1f} |")
    w("")


def _processes_section(results: dict[str, Any], w: Any) -> None:
    procs = results["processes"]
    w("## Processes sharing counters")
    w("")
    w(f"P processes each increment {procs['counters']} shared counters round-robin; throughput is all increments over the "
      "span from the first start to the last end; the counters are read back and must sum to exactly P × n. "
      f"{procs['rounds']} rounds. The machine has {results['meta']['machine'].get('cores usable', '?')} cores.")
    w("")
    w("| implementation | processes | increments per run | increments/s | exact |")
    w("| --- | ---: | ---: | ---: | --- |")
    for kind, by_p in procs["runs"].items():
        for p, runs in by_p.items():
            rate = summarise([r["per_second"] for r in runs])
            exact = all(r["exact"] for r in runs)
            counted = ", ".join(f"{r['counted']:,}" for r in runs)
            w(f"| {LABELS.get(kind, kind)} | {p} | {runs[0]['increments']:,} | {rate.median:,.0f} "
              f"({rate.p25:,.0f}–{rate.p75:,.0f}) | {'yes' if exact else '**NO**'} ({counted}) |")
    w("")
    w("![throughput against process count](processes.png)")
    w("")


def _reads_section(results: dict[str, Any], w: Any) -> None:
    reads = results["reads"]
    cores = reads["cores"]
    w("## Reads across processes")
    w("")
    w(f"P processes each open one store of {reads['n_keys']:,} keys and call one read for {reads['seconds']:g} s "
      "(`get` of keys drawn uniformly, `random_key()`, `random_key(\"user:3:\")`, a tenth of the keys); throughput is the "
      "sum of each process's calls over its own span. Bare py-lmdb runs beside it in the same rounds with the disk "
      "backend's environment flags. LMDB readers take no lock, so reads can scale up to the number of cores: "
      f"this machine has os.cpu_count() = {cores.get('os.cpu_count()')}, nproc = {cores.get('nproc')} "
      f"({cores.get('usable (sched_getaffinity)')} usable), so 4 processes cannot do better than "
      f"{cores.get('os.cpu_count()')}× one. {reads['rounds']} rounds; "
      "the scaling ratio is P processes' total over one process's, round by round.")
    w("")
    w("| read | implementation | 1 process | 2 processes | 4 processes | 2/1 | 4/1 |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for op in reads["ops"]:
        for kind in ("disk", "lmdb"):
            by_p = reads["runs"][kind][op]
            cells = []
            for p in ("1", "2", "4"):
                if by_p.get(p):
                    rate = summarise([r["per_second"] for r in by_p[p]])
                    cells.append(f"{rate.median:,.0f} ({rate.p25:,.0f}–{rate.p75:,.0f})")
                else:
                    cells.append("—")
            for p in ("2", "4"):
                s = _scale(by_p, p)
                cells.append(f"{s.median:.2f}x" if s else "—")
            w(f"| {op} | {LABELS[kind]} | " + " | ".join(cells) + " |")
    w("")
    if not any("on_cpu" in r for kind in reads["runs"].values() for by_p in kind.values() for runs in by_p.values()
               for r in runs):
        return
    w("Where the readers' time went (medians over rounds; Linux `/proc/self/schedstat`): CPU time per call, and the "
      "share of the readers' wall time spent on a CPU, waiting for one (runnable, other processes ran) and neither "
      "(blocked: a lock, I/O). Reads that stop scaling while *waiting for a CPU* grows ran out of cores; a growing "
      "*blocked* share, or CPU per call growing with processes, would be contention between readers.")
    w("")
    w("| read | implementation | processes | CPU per call (ns) | on a CPU | waiting for a CPU | blocked |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for op in reads["ops"]:
        for kind in ("disk", "lmdb"):
            for p, runs in reads["runs"][kind][op].items():
                runs = [r for r in runs if "on_cpu" in r]
                if not runs:
                    continue
                cpu = summarise([r["cpu_ns_per_call"] for r in runs]).median
                on = summarise([r["on_cpu"] for r in runs]).median
                queue = summarise([r["run_queue"] for r in runs]).median
                blocked = summarise([max(0.0, 1 - r["on_cpu"] - r["run_queue"]) for r in runs]).median
                w(f"| {op} | {LABELS[kind]} | {p} | {cpu:,.0f} | {on:.0%} | {queue:.0%} | {blocked:.0%} |")
    w("")


def _stalls_section(results: dict[str, Any], w: Any) -> None:
    stalls = results["stalls"]
    w("## Stalls: the longest hold of a gevent hub")
    w("")
    w(f"Every public operation on a store of {stalls['n']:,} keys, run from a greenlet of a process monkey-patched "
      f"as Locust does, while a ticker greenlet sleeps {stalls['tick_ms']:g} ms in a loop: the stall is the longest "
      "gap between two of its wake-ups beyond what it slept, the time no other user of that process could run. "
      "Short operations run 5 times (the worst kept), long ones once (`bench_stalls.py`). "
      f"Budget (issue 14): {stalls['budget_ms']:g} ms. On a shared machine the OS can hold the process off a CPU: "
      "*waited* is how long the process, runnable, waited for a CPU during the call with the worst stall (Linux "
      "schedstat); a stall much longer than that wait is the store's own.")
    w("")
    backends = list(stalls["backends"])
    if not backends:
        w("Nothing measured: " + "; ".join(f"{b}: {r}" for b, r in stalls.get("skipped", {}).items()))
        w("")
        return
    w("| operation | " + " | ".join(f"{b} stall (ms) | waited | call (ms)" for b in backends) + " |")
    w("| --- | " + " | ".join("---: | ---: | ---:" for _ in backends) + " |")
    order: list[str] = []
    for b in backends:
        order += [r["op"] for r in stalls["backends"][b]["ops"] if r["op"] not in order]
    for op in order:
        cells = []
        for b in backends:
            row = next((r for r in stalls["backends"][b]["ops"] if r["op"] == op), None)
            if row is None:
                cells += ["—", "—", "—"]
            elif row.get("error"):
                cells += [f"failed: {row['error']}", "", ""]
            else:
                stall = f"{row['stall_ms']:.1f}"
                waited = f"{row['cpu_wait_ms']:.1f}" if "cpu_wait_ms" in row else "?"
                cells += [f"**{stall}**" if row["stall_ms"] > stalls["budget_ms"] else stall, waited,
                          f"{row['wall_ms']:.1f}"]
        w(f"| {op} | " + " | ".join(cells) + " |")
    w("")
    for b in backends:
        missing = stalls["backends"][b].get("not_measured")
        if missing:
            w(f"- {b}: not measured: {', '.join(missing)}")
            w("")
    for b, reason in stalls.get("skipped", {}).items():
        w(f"- {b}: SKIPPED — {reason}")
    if stalls.get("skipped"):
        w("")


def _locust_section(results: dict[str, Any], w: Any) -> None:
    locust = results["locust"]
    w("## Cost to the load generator")
    w("")
    w(f"Real headless `locust` (one process, {locust['users']} users, `constant(0)` wait, {locust['seconds']:g} s per "
      f"run, {locust['rounds']} rounds, variants interleaved), `benchmarks/locustfile_cost.py`. Task iterations per CPU "
      "second of the Locust process, counted from the end of spawning to the stop. The *trivial* task only counts "
      "itself: the harshest case, where a KV operation is set against Locust's bare scheduling loop. The *GET* tasks "
      "make one request to a minimal local server (on the other core) with FastHttpUser or with HttpUser (Locust's "
      "default client), timed and recorded in Locust's statistics like any real request. `--kv-report` (mode `kv`) "
      "times every KV operation into the plugin's own table; `--kv-report requests` also records each one in "
      "Locust's statistics. Each variant is compared with the same task without the KV "
      "operation, in the same round.")
    w("")
    w("| variant | iterations per CPU second | CPU µs per iteration | KV operation in context, µs | cost | cost by rates | |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for variant in locust["variants"]:
        runs = locust["results"][variant["name"]]
        rates = summarise(_rates(runs))
        per_iter = 1e6 / rates.median
        if variant["op"] == "none":
            w(f"| {variant['name']} | {rates.median:,.0f} ({rates.p25:,.0f}–{rates.p75:,.0f}) | {per_iter:.2f} | | | | |")
            continue
        kv = summarise(_in_context_us(locust, variant))
        cost = _locust_cost(locust, variant)
        ab = _locust_cost_ab(locust, variant)
        slow = sum(r.get("kv_slow_calls", 0) for r in runs)
        calls = sum(r.get("kv_calls", 0) for r in runs) + slow
        slow_note = f" ({slow:,} of {calls:,} calls over 1 ms left out)" if slow else ""
        w(f"| {variant['name']} | {rates.median:,.0f} ({rates.p25:,.0f}–{rates.p75:,.0f}) | {per_iter:.2f} | "
          f"{kv.median:.2f} ({kv.p25:.2f}–{kv.p75:.2f}){slow_note} | {cost.median:.1%} ({cost.p25:.1%}–{cost.p75:.1%}) | "
          f"{ab.median:.1%} ({ab.p25:.1%}–{ab.p75:.1%}) | {_verdict(max(cost.median, ab.median) < LOCUST_COST_MAX)} |")
    w("")
    w("*KV operation in context* is the mean time of the KV call timed inside the task (minus the timer's own cost, "
      "measured on the task without KV operation); *cost* is that time over the CPU time of an iteration of the same "
      "run, the share of Locust's iterations per second the KV operation takes directly. *Cost by rates* compares the "
      "iterations per CPU second with those of the task without KV operation in the same round: it also counts "
      "indirect costs (caches and allocator state the operation leaves behind), and other load on the machine "
      "makes it noisier. The verdict takes the larger of the two.")
    w("")


# ---------------------------------------------------------------------------
# Plots.

_COLORS = {"memory": "#1f77b4", "dict": "#7fb3e0", "disk": "#d62728", "lmdb": "#f5a3a3", "redis": "#2ca02c",
           "diskcache": "#9467bd"}
_STYLES = {"memory": "-", "dict": "--", "disk": "-", "lmdb": "--", "redis": "-", "diskcache": "-"}


def write_plots(results: dict[str, Any], directory: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ops = results.get("ops")
    if ops:
        present = [i for i in ("memory", "dict", "disk", "lmdb", "redis", "diskcache") if i in ops["samples"]]
        order = ops["order"]
        fig, ax = plt.subplots(figsize=(10, 0.55 * len(order) + 1.5))
        height = 0.8 / len(present)
        for j, impl in enumerate(present):
            ys, xs, lo, hi = [], [], [], []
            for i, op in enumerate(order):
                s = _samples(results, impl, op, "wall")
                if s:
                    st = summarise(s)
                    ys.append(i + j * height)
                    xs.append(st.median)
                    lo.append(st.median - st.p25)
                    hi.append(st.p75 - st.median)
            ax.barh(ys, xs, height=height, xerr=[lo, hi], color=_COLORS[impl], label=LABELS[impl])
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(order))])
        ax.set_yticklabels(order)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock ns per operation (log scale; median, bars: 25th–75th percentile)")
        ax.set_title(f"One operation, store of {ops['n_keys']:,} keys")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06 - 0.5 / len(order)), ncol=len(present), fontsize=8,
                  frameon=False)
        ax.grid(axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        path = os.path.join(directory, "ops.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    scaling = results.get("scaling")
    if scaling:
        sizes = scaling["sizes"]
        names = scaling["ops"]
        fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 7), squeeze=False)
        for row, (key, clock) in enumerate((("samples", "thread CPU"), ("wall_samples", "wall clock"))):
            for ax, op in zip(axes[row], names):
                for impl in ("memory", "dict", "disk", "lmdb"):
                    points = [(n, scaling.get(key, {}).get(str(n), {}).get(impl, {}).get(op)) for n in sizes]
                    points = [(n, summarise(s)) for n, s in points if s]
                    if not points:
                        continue
                    xs = [n for n, _ in points]
                    ys = [s.median for _, s in points]
                    err = [[s.median - s.p25 for _, s in points], [s.p75 - s.median for _, s in points]]
                    ax.errorbar(xs, ys, yerr=err, label=LABELS[impl], color=_COLORS[impl], linestyle=_STYLES[impl],
                                marker="o", capsize=3)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"{op} ({clock})", fontsize=9)
                ax.grid(which="both", alpha=0.3)
                if row == 1:
                    ax.set_xlabel("keys in the store")
            axes[row][0].set_ylabel(f"ns per operation, {clock}")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
        fig.suptitle("Latency against store size (median, bars: 25th–75th percentile)")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
        path = os.path.join(directory, "scaling.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if results.get("claims"):
        written.append(_claims_plot(results["claims"], directory))
    procs = results.get("processes")
    if procs:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for kind, by_p in procs["runs"].items():
            ps = sorted(int(p) for p in by_p)
            stats = [summarise([r["per_second"] for r in by_p[str(p)]]) for p in ps]
            ax.errorbar(ps, [s.median for s in stats],
                        yerr=[[s.median - s.p25 for s in stats], [s.p75 - s.median for s in stats]],
                        label=LABELS.get(kind, kind), color=_COLORS.get(kind), marker="o", capsize=3)
        ax.set_yscale("log")
        ax.set_xticks(sorted({int(p) for by_p in procs["runs"].values() for p in by_p}))
        ax.set_xlabel("processes incrementing shared counters")
        ax.set_ylabel("increments per second, all processes (log)")
        ax.set_title(f"Throughput against process count ({results['meta']['machine'].get('cores usable', '?')} cores)")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(directory, "processes.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
