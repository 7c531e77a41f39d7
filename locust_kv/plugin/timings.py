"""KV operation timings in microseconds.

Locust buckets response times to whole milliseconds below 100 ms, so its
percentile columns read 0 for operations that take a few microseconds. When
reporting is on, the plugin also keeps its own histogram per operation with
microsecond buckets, merges the workers' histograms on the master (they
travel with Locust's regular worker reports), and prints a summary at the end
of the run.

Buckets: whole microseconds below 1,000 µs, then three significant digits
(1,230 µs, 45,600 µs...): a percentile is within 0.5 µs of the measured
value below 1 ms and within 0.5 % above, and never more than the maximum.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["COLUMNS", "OperationTimings", "Timings", "bucket_of"]

PERCENTILES: Final = (0.5, 0.9, 0.99)

COLUMNS: Final = (
    ("operation", "Operation"),
    ("count", "# ops"),
    ("failures", "# fails"),
    ("avg", "Avg µs"),
    ("min", "Min µs"),
    ("p50", "Med µs"),
    ("p90", "90% µs"),
    ("p99", "99% µs"),
    ("max", "Max µs"),
)
"""Summary columns: the row key and its title, in the console, CSV and web UI."""


def bucket_of(microseconds: float) -> int:
    """The histogram bucket of a duration: exact below 1,000 µs, then 3 significant digits."""
    value = round(microseconds)
    if value < 1000:
        return value
    drop: int = 10 ** (len(str(value)) - 3)  # value >= 1000: a positive power, an int
    return (value + drop // 2) // drop * drop


@dataclass
class OperationTimings:
    """Counts and a microsecond histogram for one operation."""

    count: int = 0
    failures: int = 0
    total_us: float = 0.0
    min_us: float = math.inf
    max_us: float = 0.0
    buckets: dict[int, int] = field(default_factory=dict)

    def record(self, microseconds: float, failed: bool) -> None:
        self.count += 1
        self.failures += failed
        self.total_us += microseconds
        self.min_us = min(self.min_us, microseconds)
        self.max_us = max(self.max_us, microseconds)
        bucket = bucket_of(microseconds)
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1

    def merge(self, other: OperationTimings) -> None:
        self.count += other.count
        self.failures += other.failures
        self.total_us += other.total_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        for bucket, n in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n

    def percentile(self, fraction: float) -> float:
        """The smallest bucket at or below which ``fraction`` of the operations fall, at most the maximum."""
        wanted = fraction * self.count
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= wanted:
                # A bucket is a rounded duration; never report more than was measured.
                return min(bucket, round(self.max_us, 1))
        return 0

    def row(self, operation: str) -> dict[str, Any]:
        return {
            "operation": operation,
            "count": self.count,
            "failures": self.failures,
            "avg": round(self.total_us / self.count, 1) if self.count else 0,
            "min": round(self.min_us, 1) if self.count else 0,
            "p50": self.percentile(0.5),
            "p90": self.percentile(0.9),
            "p99": self.percentile(0.99),
            "max": round(self.max_us, 1),
        }

    def to_wire(self) -> list[Any]:
        # msgpack-friendly: no int dict keys, no infinities.
        return [self.count, self.failures, self.total_us, self.min_us, self.max_us, list(self.buckets.items())]

    @classmethod
    def from_wire(cls, data: list[Any]) -> OperationTimings:
        count, failures, total_us, min_us, max_us, buckets = data
        return cls(count, failures, total_us, min_us, max_us, {int(b): int(n) for b, n in buckets})


class Timings:
    """Timings of every operation of this process (or, on the master, of every worker)."""

    def __init__(self) -> None:
        self.operations: dict[str, OperationTimings] = {}

    def __bool__(self) -> bool:
        return bool(self.operations)

    def record(self, operation: str, seconds: float, failed: bool) -> None:
        timings = self.operations.get(operation)
        if timings is None:
            timings = self.operations[operation] = OperationTimings()
        timings.record(seconds * 1e6, failed)

    def reset(self) -> None:
        self.operations = {}

    def take(self) -> dict[str, list[Any]]:
        """The timings since the last ``take``, for a worker's report to the master; then reset."""
        wire = {name: timings.to_wire() for name, timings in self.operations.items() if timings.count}
        self.reset()
        return wire

    def merge(self, wire: dict[str, list[Any]]) -> None:
        """Add a worker's report (what its ``take`` returned)."""
        for name, data in wire.items():
            incoming = OperationTimings.from_wire(data)
            timings = self.operations.get(name)
            if timings is None:
                self.operations[name] = incoming
            else:
                timings.merge(incoming)

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per operation, by name, then an aggregated row."""
        rows = [self.operations[name].row(name) for name in sorted(self.operations)]
        if rows:
            total = OperationTimings()
            for timings in self.operations.values():
                total.merge(timings)
            rows.append(total.row("Aggregated"))
        return rows

    def table(self) -> list[str]:
        """The summary as console lines."""
        rows = self.rows()
        lines = ["KV operations (microseconds; locust_kv --kv-report)"]
        widths = [max(18, *(len(r["operation"]) for r in rows))] + [9] * (len(COLUMNS) - 1)
        header = [title for _, title in COLUMNS]
        lines.append(_format_line(header, widths))
        lines.append("-" * (sum(widths) + len(widths) - 1))
        for row in rows:
            if row["operation"] == "Aggregated":
                lines.append("-" * (sum(widths) + len(widths) - 1))
            lines.append(_format_line([row[key] for key, _ in COLUMNS], widths))
        lines.append("")
        return lines

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([title for _, title in COLUMNS])
        for row in self.rows():
            writer.writerow([row[key] for key, _ in COLUMNS])
        return out.getvalue()

    def json_text(self) -> str:
        return json.dumps(self.rows(), indent=2)


def _format_line(cells: Iterable[Any], widths: list[int]) -> str:
    cells = list(cells)
    first = f"{cells[0]!s:<{widths[0]}}"
    rest = " ".join(f"{_number(c):>{w}}" for c, w in zip(cells[1:], widths[1:]))
    return f"{first} {rest}"


def _number(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return str(int(value)) if isinstance(value, float) else str(value)
