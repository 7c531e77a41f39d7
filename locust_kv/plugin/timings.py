"""KV operation statistics: timings in microseconds and failures by error name.

Locust buckets response times to whole milliseconds below 100 ms, so its
percentile columns read 0 for operations that take a few microseconds, and
every request event it gets counts in the load's own figures. When
``--kv-report`` is on, the plugin keeps statistics of its own instead: one
histogram per operation with microsecond buckets and a count per catalogued
error name, added up in the process as calls happen (no event per call).
Workers send what they gathered with Locust's regular worker reports (every
few seconds), the master merges it; the web UI's tab shows it live, and the
end of the run prints it (console, CSV, JSON, a section of the HTML report).

Buckets: whole microseconds below 1,000 µs, then three significant digits
(1,230 µs, 45,600 µs...): a percentile is within 0.5 µs of the measured
value below 1 ms and within 0.5 % above, and never more than the maximum.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["COLUMNS", "FAILURE_COLUMNS", "OperationTimings", "Timings", "bucket_of"]

PERCENTILES: Final = (0.5, 0.9, 0.99)

COLUMNS: Final = (
    ("operation", "Operation"),
    ("count", "# ops"),
    ("failures", "# fails"),
    ("rate", "ops/s"),
    ("avg", "Avg µs"),
    ("min", "Min µs"),
    ("p50", "Med µs"),
    ("p90", "90% µs"),
    ("p99", "99% µs"),
    ("max", "Max µs"),
)
"""Summary columns: the row key and its title, in the console, CSV and web UI."""

FAILURE_COLUMNS: Final = (
    ("operation", "Operation"),
    ("error", "Error"),
    ("occurrences", "Occurrences"),
)
"""Failure columns: one row per operation and catalogued error name."""


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
    errors: dict[str, int] = field(default_factory=dict)
    """Failures by catalogued error name (the exception's class name for others)."""

    def merge(self, other: OperationTimings) -> None:
        self.count += other.count
        self.failures += other.failures
        self.total_us += other.total_us
        self.min_us = min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        for bucket, n in other.buckets.items():
            self.buckets[bucket] = self.buckets.get(bucket, 0) + n
        for name, n in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + n

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

    def row(self, operation: str, seconds: float) -> dict[str, Any]:
        """The summary row of ``operation`` over ``seconds`` of run."""
        return {
            "operation": operation,
            "count": self.count,
            "failures": self.failures,
            "rate": round(self.count / seconds, 1) if seconds > 0 else 0,
            "avg": round(self.total_us / self.count, 1) if self.count else 0,
            "min": round(self.min_us, 1) if self.count else 0,
            "p50": self.percentile(0.5),
            "p90": self.percentile(0.9),
            "p99": self.percentile(0.99),
            "max": round(self.max_us, 1),
        }

    def to_wire(self) -> list[Any]:
        # msgpack-friendly: no int dict keys, no infinities.
        return [
            self.count, self.failures, self.total_us, self.min_us, self.max_us,
            list(self.buckets.items()), list(self.errors.items()),
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, data: list[Any]) -> OperationTimings:
        count, failures, total_us, min_us, max_us, buckets, *rest = data
        errors = {str(name): int(n) for name, n in rest[0]} if rest else {}
        return cls(count, failures, total_us, min_us, max_us, {int(b): int(n) for b, n in buckets}, errors)


class Timings:
    """Timings of every operation of this process (or, on the master, of every worker)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.operations: dict[str, OperationTimings] = {}
        self._clock = clock
        self.started = clock()
        """When these statistics began (Unix seconds): the rates are over the time since."""
        self.ended: float | None = None
        """When the load ended (``finish``), else None: the rates are then over the time until."""

    def __bool__(self) -> bool:
        return bool(self.operations)

    def record(self, operation: str, seconds: float, error: BaseException | str | None = None) -> None:
        """Count one call of ``operation`` that took ``seconds``; ``error``, if it failed: the error or its name.

        An error's name is its catalogued name (``KVError.name``), else its
        class's. Inlined: this runs once per reported KV call.
        """
        timings = self.operations.get(operation)
        if timings is None:
            timings = self.operations[operation] = OperationTimings()
        us = seconds * 1e6
        timings.count += 1
        timings.total_us += us
        if us < timings.min_us:
            timings.min_us = us
        if us > timings.max_us:
            timings.max_us = us
        bucket = int(us + 0.5) if us < 999.5 else bucket_of(us)
        buckets = timings.buckets
        buckets[bucket] = buckets.get(bucket, 0) + 1
        if error is not None:
            name = error if isinstance(error, str) else getattr(error, "name", None) or type(error).__name__
            timings.failures += 1
            timings.errors[name] = timings.errors.get(name, 0) + 1

    def reset(self) -> None:
        """Start over (a new test, or Locust's reset of its statistics)."""
        self.operations = {}
        self.started = self._clock()
        self.ended = None

    def finish(self) -> None:
        """The load ended: later rates are over the time until now, not until they are read."""
        if self.ended is None:
            self.ended = self._clock()

    def take(self) -> dict[str, list[Any]]:
        """The timings since the last ``take``, for a worker's report to the master; then empty."""
        wire = {name: timings.to_wire() for name, timings in self.operations.items() if timings.count}
        self.operations = {}
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

    def seconds(self) -> float:
        """The time the rates are over: from the start to the end of the load, or to now."""
        end = self.ended if self.ended is not None else self._clock()
        return max(0.0, end - self.started)

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per operation, by name, then an aggregated row."""
        seconds = self.seconds()
        rows = [self.operations[name].row(name, seconds) for name in sorted(self.operations)]
        if rows:
            total = OperationTimings()
            for timings in self.operations.values():
                total.merge(timings)
            rows.append(total.row("Aggregated", seconds))
        return rows

    def failure_rows(self) -> list[dict[str, Any]]:
        """One row per operation and error name, the most frequent first."""
        rows = [
            {"operation": operation, "error": error, "occurrences": n}
            for operation, timings in self.operations.items()
            for error, n in timings.errors.items()
        ]
        return sorted(rows, key=lambda r: (-r["occurrences"], r["operation"], r["error"]))

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
        failures = self.failure_rows()
        if failures:
            lines.append("KV failures (by error name)")
            op_width = max(18, *(len(r["operation"]) for r in failures))
            error_width = max(24, *(len(r["error"]) for r in failures))
            lines.append(f"{'Operation':<{op_width}} {'Error':<{error_width}} {'Occurrences':>11}")
            lines.append("-" * (op_width + error_width + 13))
            for row in failures:
                lines.append(f"{row['operation']:<{op_width}} {row['error']:<{error_width}} {row['occurrences']:>11}")
            lines.append("")
        return lines

    def csv_text(self) -> str:
        """The summary table as CSV (``<--csv>_kv_stats.csv``)."""
        return _csv(COLUMNS, self.rows())

    def failures_csv_text(self) -> str:
        """The failures by error name as CSV (``<--csv>_kv_failures.csv``)."""
        return _csv(FAILURE_COLUMNS, self.failure_rows())

    def json_text(self) -> str:
        """``{"seconds", "operations": [rows], "failures": [rows]}`` (``<--json-file>_kv.json``)."""
        document = {"seconds": round(self.seconds(), 3), "operations": self.rows(), "failures": self.failure_rows()}
        return json.dumps(document, indent=2)

    def html_section(self) -> str:
        """The statistics as a self-contained HTML section, for Locust's ``--html`` report."""
        parts = [
            '<section id="locust-kv-statistics" style="font-family: sans-serif; margin: 24px;">',
            "<h2>KV operations (microseconds; locust_kv --kv-report)</h2>",
            _html_table(COLUMNS, self.rows()) if self.operations else "<p>No KV operation was reported.</p>",
        ]
        failures = self.failure_rows()
        if failures:
            parts += ["<h3>KV failures (by error name)</h3>", _html_table(FAILURE_COLUMNS, failures)]
        parts.append("</section>")
        return "\n".join(parts)


def _csv(columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([title for _, title in columns])
    for row in rows:
        writer.writerow([row[key] for key, _ in columns])
    return out.getvalue()


def _html_table(columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> str:
    cell = 'style="border: 1px solid #ccc; padding: 4px 8px; text-align: {}"'
    head = "".join(f"<th {cell.format('left')}>{html.escape(title)}</th>" for _, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            align = "left" if isinstance(value, str) else "right"
            shown = value if isinstance(value, str) else _number(value)
            cells.append(f"<td {cell.format(align)}>{html.escape(str(shown))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table style="border-collapse: collapse;"><tr>{head}</tr>{"".join(body)}</table>'


def _format_line(cells: Iterable[Any], widths: list[int]) -> str:
    cells = list(cells)
    first = f"{cells[0]!s:<{widths[0]}}"
    rest = " ".join(f"{_number(c):>{w}}" for c, w in zip(cells[1:], widths[1:]))
    return f"{first} {rest}"


def _number(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return str(int(value)) if isinstance(value, float) else str(value)
