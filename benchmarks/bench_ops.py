"""Single operations, every implementation side by side, and the same at growing store sizes.

An *operation spec* says how to call an operation (its loop) and which
arguments each batch gets (keys of the populated store, counter keys, keys
inserted beforehand for a delete, fresh keys for a get_or_set that writes,
cursors at random places for a scan page). :func:`build_cases` turns specs
and implementations into harness cases.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import pstats
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import Case
from peers import COUNTERS, PREFIX, Unsupported, counter_key, cycle, user_key

__all__ = ["OPS", "SCALING_OPS", "OpSpec", "build_cases", "profile_case"]

SCAN_PAGE = 100


@dataclass(frozen=True)
class OpSpec:
    name: str  # as shown in tables
    method: str  # the implementation's method (the KV method, or random_key_prefix)
    args: str  # how batches are fed: keys, counters, fresh, inserted, none, cursors
    loop: Callable[[Callable[..., Any], Any], Callable[[Any], None]]
    note: str = ""


# Loops: ``loop(f, impl)`` returns the timed body. Constants (the value, the
# prefix) are bound as defaults, so the body does nothing but call ``f``.


def _loop_key(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(keys: list[Any]) -> None:
        for k in keys:
            f(k)

    return run


def _loop_key_value(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(keys: list[Any], v: Any = impl.value) -> None:
        for k in keys:
            f(k, v)

    return run


def _loop_cas(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(keys: list[Any], v: Any = impl.value) -> None:
        for k in keys:
            f(k, v, v)

    return run


def _loop_increment(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(keys: list[Any]) -> None:
        for k in keys:
            f(k, 1)

    return run


def _loop_call(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(count: range) -> None:
        for _ in count:
            f()

    return run


def _loop_prefix(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    def run(count: range, p: Any = impl.prefix) -> None:
        for _ in count:
            f(p)

    return run


def _loop_scan(f: Callable[..., Any], impl: Any) -> Callable[[Any], None]:
    if impl.scan_order == "start-before-limit":  # a backend's scan(prefix, start, limit)

        def run(cursors: list[Any], p: Any = impl.scan_prefix, limit: int = SCAN_PAGE) -> None:
            for c in cursors:
                f(p, c, limit)

        return run

    def run_kv(cursors: list[Any], p: Any = impl.scan_prefix, limit: int = SCAN_PAGE) -> None:
        for c in cursors:
            f(p, limit, c)

    return run_kv


OPS: list[OpSpec] = [
    OpSpec("get", "get", "keys", _loop_key),
    OpSpec("set", "set", "keys", _loop_key_value, "overwrites an existing key"),
    OpSpec("exists", "exists", "keys", _loop_key),
    OpSpec("increment_by", "increment_by", "counters", _loop_increment, f"delta 1 on one of {COUNTERS} counters"),
    OpSpec("compare_and_swap", "compare_and_swap", "keys", _loop_cas, "succeeds: old equals the stored value"),
    OpSpec("get_or_set (hit)", "get_or_set", "keys", _loop_key_value, "key exists: reads, writes nothing"),
    OpSpec("get_or_set (miss)", "get_or_set", "fresh", _loop_key_value, "key absent: stores the value"),
    OpSpec("swap", "swap", "keys", _loop_key_value),
    OpSpec("delete_if_exists", "delete_if_exists", "inserted", _loop_key, "the key exists (inserted untimed before)"),
    OpSpec("random_key", "random_key", "none", _loop_call, "no prefix"),
    OpSpec("random_key (prefix)", "random_key_prefix", "none", _loop_prefix, f"prefix {PREFIX!r}: 10% of the keys"),
    OpSpec(f"scan page ({SCAN_PAGE})", "scan", "cursors", _loop_scan, f"{SCAN_PAGE} entries after a random key"),
    OpSpec("size", "size", "none", _loop_call),
]

SCALING_OPS = ["get", "set", "random_key", "random_key (prefix)", f"scan page ({SCAN_PAGE})"]

_fresh = itertools.count()


def _prepare(spec: OpSpec, impl: Any, n_keys: int) -> Callable[[int], Any]:
    """The untimed argument maker of one case."""
    rng = random.Random(hash((spec.name, impl.label)))
    key = impl.key
    if spec.args == "keys":
        pool = [key(user_key(i)) for i in range(n_keys)]
        rng.shuffle(pool)
        return lambda n: cycle(pool, n, rng.randrange(len(pool)))
    if spec.args == "counters":
        counters = [key(counter_key(j)) for j in range(COUNTERS)]
        return lambda n: cycle(counters, n, rng.randrange(COUNTERS))
    if spec.args == "fresh":
        return lambda n: [key(f"fresh:{next(_fresh):09d}") for _ in range(n)]
    if spec.args == "inserted":
        setter = impl.op("set")

        def inserted(n: int) -> list[Any]:
            keys = [key(f"del:{next(_fresh):09d}") for _ in range(n)]
            for k in keys:
                setter(k, impl.value)
            return keys

        return inserted
    if spec.args == "cursors":
        ordered = sorted(user_key(i) for i in range(n_keys))
        last = max(1, len(ordered) - SCAN_PAGE - 1)
        return lambda n: [impl.cursor_after(ordered[rng.randrange(last)]) for _ in range(n)]
    return range


def _delete_all(impl: Any) -> Callable[[list[str]], None]:
    delete = impl.op("delete_if_exists")

    def cleanup(keys: list[str]) -> None:
        for k in keys:
            delete(k)

    return cleanup


def _unsupported(spec: OpSpec, impl: Any) -> str | None:
    """Why ``impl`` cannot do ``spec``, found by trying it once; None when it can."""
    try:
        probe = _prepare(spec, impl, 10)(1)
        spec.loop(impl.op(spec.method), impl)(probe)
    except Unsupported as exc:
        return str(exc)
    if spec.args == "fresh":
        _delete_all(impl)(probe)
    return None


def build_cases(
    impls: dict[str, Any], specs: list[OpSpec], n_keys: int, skipped: dict[tuple[str, str], str]
) -> list[Case]:
    """A case per (implementation, operation) that the implementation supports."""
    cases = []
    for spec in specs:
        for name, impl in impls.items():
            reason = _unsupported(spec, impl)
            if reason is not None:
                skipped[(name, spec.name)] = reason
                continue
            # Batches that add keys stay small, and remove them afterwards: no case changes the store others see.
            max_batch = 2_000 if spec.args in ("fresh", "inserted") else 1 << 22
            cleanup = _delete_all(impl) if spec.args == "fresh" else None
            cases.append(Case((name, spec.name), _prepare(spec, impl, n_keys), spec.loop(impl.op(spec.method), impl),
                              max_batch, cleanup))
    return cases


def profile_case(case: Case, n: int, top: int = 8) -> list[str]:
    """The functions where a batch of ``case`` spends its time (cProfile, by own time).

    Each line: the share of the batch's profiled time spent in the function
    itself, and how many calls it gets per operation. Profiling inflates
    every call, so the shares show where the time goes, not what it costs.
    """
    arg = case.prepare(n)
    profiler = cProfile.Profile()
    profiler.enable()
    case.run(arg)
    profiler.disable()
    if case.cleanup is not None:
        case.cleanup(arg)
    stats = pstats.Stats(profiler, stream=io.StringIO())
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values()) or 1.0
    rows = []
    for (filename, line, func), (_, calls, own, _, _) in sorted(table.items(), key=lambda item: item[1][2],
                                                                 reverse=True)[:top]:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        place = f" ({where}:{line})" if where != "~" else ""
        rows.append(f"{100 * own / total:5.1f}%  {calls / n:5.2f} calls/op  {func}{place}")
    return rows
