"""Timing side by side: batches of calls, repeated rounds, medians and spread.

Every comparison in the benchmark is a set of *cases* (one implementation
doing one operation) measured in the same rounds: each round runs one batch
of every case, in an order that rotates from round to round, so a noisy
moment of a shared machine hits all of them alike. A batch is timed as a
whole and divided by its length, which keeps the timer's own cost out of
sub-microsecond figures. Each batch is timed on two clocks: the thread's CPU
time (``thread_time_ns``), which a shared machine's other load barely
touches because time spent descheduled is not counted, and the wall clock
(``perf_counter_ns``), the only fair clock for a peer that waits on a server
or on a disk. Each comparison uses a clock that is fair to both of its
sides.

Figures per case: the median, 25th and 75th percentiles of the per-round
ns/op. Ratios are taken round by round (the two cases ran seconds apart in
the same round) and then summarised the same way.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns, thread_time_ns
from typing import Any

__all__ = ["Case", "Stats", "measure", "ratio", "summarise"]


@dataclass
class Case:
    """One implementation doing one operation.

    ``prepare(n)`` returns the argument for ``run`` and is not timed (it
    picks keys, or inserts the keys a delete will remove). ``run(arg)``
    performs exactly ``n`` operations. ``cleanup(arg)``, when given, undoes
    what the batch added (untimed), so that no case changes the store the
    others see.
    """

    key: tuple[str, str]  # (implementation, operation)
    prepare: Callable[[int], Any]
    run: Callable[[Any], Any]
    max_batch: int = 1 << 22
    cleanup: Callable[[Any], Any] | None = None  # untimed, after each batch
    batch: int = 0
    samples: list[float] = field(default_factory=list)  # CPU ns/op of the thread, per round
    wall_samples: list[float] = field(default_factory=list)  # wall-clock ns/op, per round


@dataclass(frozen=True)
class Stats:
    """A summary of per-round figures."""

    median: float
    p25: float
    p75: float
    rounds: int

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median."""
        return (self.p75 - self.p25) / self.median if self.median else 0.0


def summarise(values: list[float]) -> Stats:
    """Median and quartiles (inclusive method, so two rounds still give quartiles)."""
    if not values:
        raise ValueError("no samples")
    if len(values) == 1:
        return Stats(values[0], values[0], values[0], 1)
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Stats(q2, q1, q3, len(values))


def _time_batch(case: Case, n: int) -> tuple[float, float]:
    """(CPU ns/op, wall ns/op) of one batch of ``n``."""
    arg = case.prepare(n)
    gc.collect()
    cpu = thread_time_ns()
    wall = perf_counter_ns()
    case.run(arg)
    wall = perf_counter_ns() - wall
    cpu = thread_time_ns() - cpu
    if case.cleanup is not None:
        case.cleanup(arg)
    return cpu / n, wall / n


def _calibrate(case: Case, target_ns: float) -> int:
    """The batch length that takes about ``target_ns``."""
    n = 16
    while True:
        n = min(n, case.max_batch)
        per_op = _time_batch(case, n)[1]
        elapsed = per_op * n
        if elapsed >= target_ns / 8 or n >= case.max_batch:
            return max(1, min(case.max_batch, int(target_ns / max(per_op, 1.0))))
        n *= 4


def measure(cases: list[Case], rounds: int, target_ms: float, progress: Callable[[str], None] | None = None) -> None:
    """Fill each case's samples with ``rounds`` figures in ns/op, all cases side by side."""
    target_ns = target_ms * 1e6
    # Everything alive now (stores, key pools of a million keys) is set aside from the
    # collector, so the collection before each batch only sees the batches' own garbage.
    gc.collect()
    gc.freeze()
    try:
        for case in cases:
            case.batch = _calibrate(case, target_ns)
            _time_batch(case, case.batch)  # warm-up at full length
        for r in range(rounds):
            shift = r % len(cases)
            for case in cases[shift:] + cases[:shift]:
                cpu, wall = _time_batch(case, case.batch)
                case.samples.append(cpu)
                case.wall_samples.append(wall)
            if progress is not None:
                progress(f"round {r + 1}/{rounds}")
    finally:
        gc.unfreeze()


def ratio(numerator: list[float], denominator: list[float]) -> Stats:
    """Round-by-round ratios of two cases measured in the same rounds."""
    return summarise([a / b for a, b in zip(numerator, denominator) if b > 0])
