"""The ``locust-kv`` command line: inspect, build and dump snapshots; back up and restore disk stores.

    locust-kv snapshot info FILE
    locust-kv snapshot import SOURCE.jsonl|SOURCE.csv -o FILE [--serialization json|string]
    locust-kv snapshot export FILE --format jsonl|csv [-o OUT]
    locust-kv backup --path STORE [-o FILE] [--allow-concurrent-writes]
    locust-kv restore --path STORE [FILE] [--max-entries N] [--max-bytes N]

On failure the command prints ``<ErrorName>: <message>`` on stderr, the
error's stable catalogue name first, and exits with status 1 (2 for a
command line it cannot parse). See docs/snapshots.md.

This module is over 500 lines: one function per command, each short, and
the parser that names them; the work itself is in :mod:`locust_kv.snapshot`
and the store.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import decimal
import io
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Final, cast

import orjson

from . import snapshot
from ._version import __version__
from ._cooperative import CHUNK
from .errors import (
    DiskPathError,
    KVError,
    SerializerError,
    SnapshotImportError,
    UnknownError,
)
from .options import configure_backend
from .serialization import get_serializer
from .store import encode_key

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["main"]

_MAX_REPORTED_ROWS: Final = 20


# ---------------------------------------------------------------------------
# Progress.


class ProgressBar:
    """A one-line progress bar on a stream. Call it with the number of entries done.

    ``enabled`` None (the default of the command line) draws only on a
    terminal, and only once the work has taken more than a moment; True
    (``--progress``) draws on any stream from the start; False never draws.
    """

    DELAY: Final = 0.5
    INTERVAL: Final = 0.1
    WIDTH: Final = 30

    def __init__(self, label: str, total: int | None, stream: IO[str], enabled: bool | None) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.delay = 0.0 if enabled else self.DELAY
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.done = 0

    def __call__(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started >= self.delay and now - self.drawn_at >= self.INTERVAL:
            self.drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = f"{now - self.started:6.1f}s"
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"{self.label} [{bar}] {fraction:4.0%} {self.done:,}/{self.total:,} entries {elapsed}"
        else:
            line = f"{self.label} {self.done:,} entries {elapsed}"
        self.stream.write("\r" + line)
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line if one was drawn."""
        if self.drawn_at:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# Import: JSONL or CSV to a snapshot.


class _BadRows:
    """Bad rows of an import source, with their line numbers."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[tuple[int, str]] = []

    def add(self, line: int, why: str) -> None:
        self.rows.append((line, why))

    def report(self, stream: IO[str]) -> None:
        for line, why in self.rows[:_MAX_REPORTED_ROWS]:
            stream.write(f"{self.source}:{line}: {why}\n")
        if len(self.rows) > _MAX_REPORTED_ROWS:
            stream.write(f"... and {len(self.rows) - _MAX_REPORTED_ROWS} more bad row(s)\n")


class _Inexact(ValueError):
    """A JSON number that a store could not hold as written (see :func:`_exact_json`)."""


def _exact_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number) or decimal.Decimal(text) != decimal.Decimal(repr(number)):
        raise _Inexact(f"the number {text[:40]} has no exact float form; an import never changes a value")
    return number


def _no_constant(text: str) -> object:
    raise _Inexact(f"{text} is not a JSON number; an import never changes a value")


def _exact_json(text: str | bytes) -> object:
    """``text`` parsed as JSON, every number exactly as written.

    orjson reads an integer beyond 64 bits as a float, silently; here it
    stays an int, which the serializer then refuses as ``set`` does
    (SerializerError). A float that does not round-trip (``1e400``,
    ``0.1000000000000000055511``) and NaN or Infinity raise :class:`_Inexact`.
    Raises ValueError (json.JSONDecodeError) for text that is not JSON.
    """
    return json.loads(text, parse_float=_exact_float, parse_constant=_no_constant)


def _expires_ms(raw: object) -> int:
    """An ``expires_at`` field or cell (Unix seconds, a number > 0; None or "": none) as Unix milliseconds (0: none).

    Raises ValueError with the reason for anything else.
    """
    if raw is None or raw == "":
        return 0
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise ValueError("expires_at must be Unix seconds (a number), or empty for none") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or not 0 < raw < 2**53 / 1000:
        raise ValueError("expires_at must be Unix seconds (a number more than 0), or empty for none")
    return max(1, round(raw * 1000))


def _expires_text(ms: int) -> str:
    """Unix milliseconds as the Unix seconds an export writes (``_expires_ms`` reads them back exactly)."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def _jsonl_rows(data: bytes, bad: _BadRows) -> Iterator[tuple[int, object, object, object]]:
    if data.startswith(codecs.BOM_UTF8):  # a byte-order mark, as some editors write
        data = data[len(codecs.BOM_UTF8) :]
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = _exact_json(line)
        except _Inexact as exc:
            bad.add(number, str(exc))
            continue
        except json.JSONDecodeError as exc:
            bad.add(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValueError:
            bad.add(number, "not valid UTF-8")
            continue
        if not isinstance(row, dict) or "key" not in row or "value" not in row:
            bad.add(number, 'expected a JSON object with "key" and "value" fields')
            continue
        yield number, row["key"], row["value"], row.get("expires_at")


def _csv_rows(data: bytes, bad: _BadRows, parse_json: bool) -> Iterator[tuple[int, object, object, object]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad.add(_line_of(data, exc.start), "not valid UTF-8")
        return
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or "key" not in header or "value" not in header:
            bad.add(1, 'the header row must name a "key" and a "value" column')
            return
        key_at, value_at = header.index("key"), header.index("value")
        expires_at = header.index("expires_at") if "expires_at" in header else None
        width = len(header)
        start = reader.line_num + 1
        for row in reader:
            number, start = start, reader.line_num + 1
            if not row:
                continue
            if len(row) != width:
                bad.add(number, f"expected {width} fields as in the header, found {len(row)}")
                continue
            cell = row[value_at]
            try:
                value = _parse_cell(cell) if parse_json else cell
            except _Inexact as exc:
                bad.add(number, str(exc))
                continue
            yield number, row[key_at], value, None if expires_at is None else row[expires_at]
    except csv.Error as exc:
        bad.add(start, f"malformed CSV ({exc})")


def _parse_cell(cell: str) -> object:
    """A CSV value cell: the JSON value it spells if it is valid JSON, else the text itself."""
    try:
        orjson.loads(cell)
    except orjson.JSONDecodeError:
        return cell  # not JSON (NaN, 1e400 included): the text
    return _exact_json(cell)


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line number of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def import_source(
    source: str, source_format: str, serialization: str
) -> tuple[list[tuple[bytes, bytes]], list[int] | None, _BadRows]:
    """The entries of a JSONL or CSV source, sorted by key and serialized as a store with ``serialization`` would,
    their expiries (Unix ms, 0: none; None when no row has an ``expires_at``), and the source's bad rows.

    Raises the snapshot errors (SnapshotNotFoundError...) for a source that cannot be read.
    """
    try:
        with open(source, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise snapshot.map_os_error(exc, "cannot read import source", source, writing=False) from exc
    serializer = get_serializer(serialization)
    bad = _BadRows(source)
    rows = _jsonl_rows(data, bad) if source_format == "jsonl" else _csv_rows(data, bad, serialization == "json")
    entries: dict[bytes, bytes] = {}
    first_line: dict[bytes, int] = {}
    expires: dict[bytes, int] = {}
    for number, key, value, expires_at in rows:
        try:
            # The store's own checks, so that every imported entry is one the store could hold.
            raw_key = encode_key(key)
            raw_value = serializer.dumps(value)
        except KVError as exc:
            bad.add(number, f"{exc.name}: {exc.message}")
            continue
        try:
            ms = _expires_ms(expires_at)
        except ValueError as exc:
            bad.add(number, str(exc))
            continue
        if raw_key in entries:
            bad.add(number, f"duplicate key (first on line {first_line[raw_key]})")
            continue
        entries[raw_key] = raw_value
        first_line[raw_key] = number
        if ms:
            expires[raw_key] = ms
    ordered = sorted(entries.items())
    return ordered, [expires.get(key, 0) for key, _ in ordered] if expires else None, bad


# ---------------------------------------------------------------------------
# Export: a snapshot to JSONL or CSV.


def _export_lines(reader: snapshot.SnapshotReader, output_format: str, progress: ProgressBar) -> Iterator[bytes]:
    decode = orjson.loads if reader.info.serialization == "json" else bytes.decode
    # A version-2 snapshot holds expiring entries: the CSV gets an expires_at column (empty: none).
    with_expiry = reader.info.format_version >= 2
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(("key", "value", "expires_at") if with_expiry else ("key", "value"))
    done = 0
    for batch, expiries in reader.blocks():
        out = []
        for at, (raw_key, raw_value) in enumerate(batch):
            try:
                key, value = raw_key.decode(), decode(raw_value)
            except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
                raise SerializerError(
                    f"a value in the snapshot does not decode as {reader.info.serialization}: {exc}"
                ) from exc
            ms = 0 if expiries is None else expiries[at]
            if output_format == "jsonl":
                if ms:
                    row = b'{"key":%s,"value":%s,"expires_at":%s}\n' % (
                        orjson.dumps(key), orjson.dumps(value), _expires_text(ms).encode()
                    )
                    out.append(row)
                else:
                    out.append(orjson.dumps({"key": key, "value": value}) + b"\n")
            elif with_expiry:
                writer.writerow((key, _format_cell(value, reader.info.serialization), _expires_text(ms) if ms else ""))
            else:
                writer.writerow((key, _format_cell(value, reader.info.serialization)))
        if output_format == "csv":
            out.append(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
        done += len(batch)
        progress(done)
        yield b"".join(out)


def _format_cell(value: Any, serialization: str) -> str:
    """A CSV value cell that imports back to ``value`` (see :func:`_parse_cell`)."""
    if serialization == "string":
        return cast(str, value)  # the string serialization's values are str
    if isinstance(value, str) and _parse_cell(value) is value:
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# ---------------------------------------------------------------------------
# Commands.


def _progress(args: argparse.Namespace, label: str, total: int | None) -> ProgressBar:
    return ProgressBar(label, total, sys.stderr, args.progress)


def _verify(args: argparse.Namespace) -> snapshot.SnapshotInfo:
    """Read and verify the whole snapshot ``args.file``, with a progress bar; its figures."""
    with snapshot.SnapshotReader(args.file) as reader:
        bar = _progress(args, "verify", reader.info.entries)
        try:
            for batch, _ in reader.blocks():
                bar(bar.done + len(batch))
        finally:
            bar.close()
        return reader.info


def _cmd_info(args: argparse.Namespace) -> None:
    info = _verify(args)
    created = datetime.fromtimestamp(info.created_at_ns / 1e9, tz=timezone.utc)
    rows = [
        ("file", info.path),
        ("format version", str(info.format_version)),
        ("created at", created.isoformat(timespec="seconds").replace("+00:00", "Z")),
        ("created by", info.created_by),
        ("source backend", info.source_backend),
        ("serialization", info.serialization),
        ("entries", f"{info.entries:,}"),
        ("bytes", f"{info.data_bytes:,} (keys + values)"),
        ("file size", f"{info.file_bytes:,}"),
        ("integrity", "verified (header CRC-32, SHA-256 of the contents)"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        print(f"{name + ':':<{width}} {value}")


def _cmd_import(args: argparse.Namespace) -> None:
    source_format = args.format or _format_from_name(args.source)
    entries, expiries, bad = import_source(args.source, source_format, args.serialization)
    if bad.rows:
        bad.report(sys.stderr)
        raise SnapshotImportError(f"{len(bad.rows)} bad row(s) in {args.source}; nothing was written")
    bar = _progress(args, "write", len(entries))
    try:
        count, size = snapshot.write_snapshot(
            args.output,
            (
                (entries[i : i + CHUNK], None if expiries is None else expiries[i : i + CHUNK])
                for i in range(0, len(entries), CHUNK)
            ),
            "import",
            args.serialization,
            bar,
        )
    finally:
        bar.close()
    print(f"wrote {count:,} entries ({size:,} bytes) to {args.output}")


def _format_from_name(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension in (".jsonl", ".ndjson"):
        return "jsonl"
    if extension == ".csv":
        return "csv"
    raise SnapshotImportError(f"cannot tell the format of {path} from its extension; pass --format jsonl or csv")


def _cmd_export(args: argparse.Namespace) -> None:
    _verify(args)  # first, so that a damaged snapshot never yields a partial export
    with snapshot.SnapshotReader(args.file) as reader:
        bar = _progress(args, "export", reader.info.entries)
        try:
            if args.output in (None, "-"):  # streamed: never a rename over /dev/stdout
                for chunk in _export_lines(reader, args.format, bar):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            else:
                snapshot.write_file(args.output, _export_lines(reader, args.format, bar))
        finally:
            bar.close()


def _open_disk_backend(args: argparse.Namespace, must_exist: bool) -> Backend:
    """The disk store at ``--path``, opened as ``open_kv`` would (DiskPathError if ``must_exist`` and it does not)."""
    if must_exist and not os.path.isfile(args.path):
        raise DiskPathError(f"no disk store at {args.path}")
    return configure_backend("disk", {"path": args.path, "track_keys": args.track_keys}).create()


def _cmd_backup(args: argparse.Namespace) -> None:
    path = snapshot.check_backup_options(args.output, args.allow_concurrent_writes)
    backend = _open_disk_backend(args, must_exist=True)
    try:
        bar = _progress(args, "backup", backend.size())
        try:
            summary = snapshot.backup(backend, path, args.allow_concurrent_writes, args.serialization, bar)
        finally:
            bar.close()
    finally:
        backend.close()
    print(f"backed up {summary.total_entries:,} entries ({summary.bytes_written:,} bytes) to {os.fspath(path)}")
    if summary.warning:
        print(f"warning: {summary.warning}", file=sys.stderr)


def _cmd_restore(args: argparse.Namespace) -> None:
    path = snapshot.check_restore_options(args.file, args.max_entries, args.max_bytes)
    backend = _open_disk_backend(args, must_exist=False)
    try:
        bar = _progress(args, "restore", None)
        try:
            summary = snapshot.restore(backend, path, args.max_entries, args.max_bytes, bar, args.serialization)
        finally:
            bar.close()
    finally:
        backend.close()
    print(f"restored {summary.total_entries:,} entries from {os.fspath(path)} into {args.path}")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``locust-kv`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    shown = common.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="draw a progress bar on stderr from the start, terminal or not "
        "(default: only on a terminal, once the work takes more than a moment)",
    )
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="never draw a progress bar")

    parser = argparse.ArgumentParser(
        prog="locust-kv",
        description="Snapshots of locust_kv stores: inspect, build from test data, dump, back up and restore.",
        epilog="On failure: '<ErrorName>: <message>' on stderr and exit status 1. See docs/snapshots.md.",
    )
    parser.add_argument("--version", action="version", version=f"locust-kv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    snap = commands.add_parser("snapshot", help="inspect, import or export a snapshot file", description="Work on snapshot files.")
    snap_commands = snap.add_subparsers(dest="snapshot_command", required=True, metavar="SUBCOMMAND")

    info = snap_commands.add_parser(
        "info",
        parents=[common],
        help="show a snapshot's figures and verify its integrity",
        description="Show a snapshot's entries, bytes, format version, creation time and source backend, "
        "after verifying every byte of it.",
    )
    info.add_argument("file", metavar="FILE", help="the snapshot file")
    info.set_defaults(run=_cmd_info)

    imp = snap_commands.add_parser(
        "import",
        parents=[common],
        help="build a snapshot from JSONL or CSV test data",
        description="Build a snapshot from test data. JSONL: one JSON object per line with a \"key\" string "
        "and a \"value\" of any JSON type; blank lines are skipped. CSV: a header row naming \"key\" and "
        "\"value\" columns; a value cell that is valid JSON is that JSON value, any other cell is the text itself. "
        "Bad rows are reported with their line numbers and nothing is written.",
    )
    imp.add_argument("source", metavar="SOURCE", help="a .jsonl (or .ndjson) or .csv file")
    imp.add_argument("-o", "--output", required=True, metavar="FILE", help="the snapshot file to write")
    imp.add_argument("--format", choices=("jsonl", "csv"), help="the source's format (default: from its extension)")
    imp.add_argument(
        "--serialization",
        choices=("json", "string"),
        default="json",
        help="how values are stored, as in open_kv (default: json). Under string, values must be strings "
        "and CSV cells are taken as text",
    )
    imp.set_defaults(run=_cmd_import)

    exp = snap_commands.add_parser(
        "export",
        parents=[common],
        help="dump a snapshot as JSONL or CSV",
        description="Dump a snapshot as JSONL or CSV in key order, in the forms 'snapshot import' reads back. "
        "The snapshot is verified before anything is written.",
    )
    exp.add_argument("file", metavar="FILE", help="the snapshot file")
    exp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default: jsonl)")
    exp.add_argument("-o", "--output", metavar="OUT", help="the file to write; - or none: standard output")
    exp.set_defaults(run=_cmd_export)

    back = commands.add_parser(
        "backup",
        parents=[common],
        help="back up a disk store to a snapshot",
        description="Write a point-in-time snapshot of a disk store. Processes using the store keep writing.",
    )
    back.add_argument("--path", required=True, metavar="STORE", help="the disk store's path, as given to open_kv")
    back.add_argument(
        "-o", "--output", metavar="FILE", help=f"the snapshot file (default: {snapshot.DEFAULT_SNAPSHOT_FILE})"
    )
    back.add_argument(
        "--allow-concurrent-writes",
        action="store_true",
        help="as backup(allow_concurrent_writes=True); the disk backend's copy stays point in time either way",
    )
    back.add_argument(
        "--serialization",
        choices=("json", "string"),
        default="json",
        help="the store's serialization, recorded in the snapshot for export (default: json)",
    )
    back.set_defaults(run=_cmd_backup, track_keys=True)

    rest = commands.add_parser(
        "restore",
        parents=[common],
        help="replace a disk store's data with a snapshot",
        description="Replace every entry of a disk store with a snapshot, all or nothing; the store is created "
        "if it does not exist. Writers in other processes fail with RestoreInProgressError meanwhile.",
    )
    rest.add_argument("--path", required=True, metavar="STORE", help="the disk store's path, as given to open_kv")
    rest.add_argument(
        "file", nargs="?", metavar="FILE", help=f"the snapshot file (default: {snapshot.DEFAULT_SNAPSHOT_FILE})"
    )
    rest.add_argument("--max-entries", type=_non_negative, default=0, metavar="N", help="refuse a snapshot of more entries (0: no cap)")
    rest.add_argument(
        "--max-bytes", type=_non_negative, default=0, metavar="N", help="refuse a snapshot of more key+value bytes (0: no cap)"
    )
    rest.add_argument(
        "--no-track-keys",
        dest="track_keys",
        action="store_false",
        help="leave the restored store without the key index random_key uses, as open_kv(track_keys=False); "
        "by default it gets one, as with open_kv's default",
    )
    rest.add_argument(
        "--serialization",
        choices=("json", "string"),
        default=None,
        help="the serialization the store is opened with: a snapshot recorded under another one is refused "
        "(default: the snapshot's)",
    )
    rest.set_defaults(run=_cmd_restore)

    opts = commands.add_parser(
        "options",
        help="list the Locust plugin's --kv-* options",
        description="Every option of the Locust plugin (import locust_kv.plugin) with its environment variable, "
        "locust.conf key, default and meaning: the table the plugin's parser is built from. "
        "(locust --help cannot list a plugin's options.)",
    )
    opts.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format (default: text)"
    )
    opts.set_defaults(run=_cmd_options)
    return parser


def _cmd_options(args: argparse.Namespace) -> None:
    from .plugin.settings import OPTIONS  # imports Locust: only for this command

    rows = [
        {
            "flag": o.flag + ("" if o.kind is bool else f" [{o.metavar}]" if o.bare else f" {o.metavar}"),
            "env_var": o.env_var,
            "config_key": o.flag[2:],
            "default": o.default,
            "help": o.help,
        }
        for o in OPTIONS
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    if args.format == "markdown":
        print("| Option | Environment variable | locust.conf key | Default | Meaning |")
        print("| --- | --- | --- | --- | --- |")
        for row in rows:
            cells = [f"`{row['flag']}`", f"`{row['env_var']}`", f"`{row['config_key']}`", _shown(row["default"]), row["help"]]
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        return
    for row in rows:
        print(row["flag"])
        print(f"    env {row['env_var']}, locust.conf {row['config_key']}, default {_shown(row['default'])}")
        for line in textwrap.wrap(row["help"], 76):
            print(f"    {line}")
        print()


def _shown(default: object) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except KVError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our standard output went away (| head). Point stdout at
        # /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - every failure gets a catalogue name
        error = UnknownError(f"unexpected {type(exc).__name__}: {exc}")
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
