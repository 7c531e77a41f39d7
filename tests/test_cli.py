"""The ``locust-kv`` command line, end to end in child processes."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomllib

from locust_kv import open_kv
from locust_kv.cli import ProgressBar
from locust_kv.snapshot import inspect, write_snapshot

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path, check_status: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run ``locust-kv ARGS`` (as ``python -m locust_kv.cli``, which the console script calls) in ``cwd``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "locust_kv.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check_status is not None:
        assert done.returncode == check_status, done.stderr
    return done


def failure_name(done: subprocess.CompletedProcess[str]) -> str:
    """The catalogue name on the last line of stderr."""
    assert done.returncode == 1, done.stderr
    return done.stderr.strip().splitlines()[-1].split(":", 1)[0]


def jsonl(*rows: Any) -> str:
    return "".join(orjson.dumps(row).decode() + "\n" for row in rows)


def exported(path: Path, cwd: Path, output_format: str = "jsonl") -> str:
    return run("snapshot", "export", path, "--format", output_format, cwd=cwd).stdout


# ---------------------------------------------------------------------------
# Help and packaging.


@pytest.mark.parametrize(
    "command",
    [[], ["snapshot"], ["snapshot", "info"], ["snapshot", "import"], ["snapshot", "export"], ["backup"], ["restore"]],
)
def test_help_everywhere(command: list[str], tmp_path: Path) -> None:
    done = run(*command, "--help", cwd=tmp_path)
    assert done.stdout.startswith("usage: locust-kv")


def test_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["locust-kv"] == "locust_kv.cli:main"


@pytest.mark.skipif(shutil.which("locust-kv") is None, reason="the package is not installed with its scripts")
def test_installed_console_script_runs(tmp_path: Path) -> None:
    done = subprocess.run(["locust-kv", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "snapshot" in done.stdout


def test_a_command_line_it_cannot_parse_exits_2(tmp_path: Path) -> None:
    assert run("restore", "--path", "x", "--max-entries", "-1", cwd=tmp_path, check_status=2).stderr
    assert run("frobnicate", cwd=tmp_path, check_status=2).stderr


# ---------------------------------------------------------------------------
# import / info / export.


def test_jsonl_import_info_export_round_trip(tmp_path: Path) -> None:
    rows = [
        {"key": "user:2", "value": {"name": "Bob", "tags": ["a", "b"], "z": 1, "a": 2}},
        {"key": "user:1", "value": {"name": "Ada"}},
        {"key": "counter", "value": 7},
        {"key": "flag", "value": False},
        {"key": "nothing", "value": None},
        {"key": "text", "value": "42"},
        {"key": "ключ", "value": 1.25, "comment": "extra fields are ignored"},
    ]
    (tmp_path / "seed.jsonl").write_text(jsonl(*rows) + "\n   \n")

    done = run("snapshot", "import", "seed.jsonl", "-o", "seed.kv", cwd=tmp_path)
    assert "7 entries" in done.stdout

    info = run("snapshot", "info", "seed.kv", cwd=tmp_path).stdout
    assert "entries:        7" in info
    assert "format version: 1" in info
    assert "source backend: import" in info
    assert "serialization:  json" in info
    assert "integrity:      verified" in info
    assert "created at:" in info

    lines = [orjson.loads(line) for line in exported(tmp_path / "seed.kv", tmp_path).splitlines()]
    expected = sorted(({"key": r["key"], "value": r["value"]} for r in rows), key=lambda r: r["key"].encode())
    assert lines == expected

    kv = open_kv(backend="memory")
    try:
        kv.restore(tmp_path / "seed.kv")
        assert kv.get("user:2") == rows[0]["value"]
        assert kv.get("text") == "42"
        # Values are stored as the json serialization stores them: object keys sorted.
        assert kv.compare_and_swap("user:2", {"a": 2, "z": 1, "tags": ["a", "b"], "name": "Bob"}, 0)
    finally:
        kv.close()


def test_csv_cells_are_json_when_they_parse_and_text_otherwise(tmp_path: Path) -> None:
    (tmp_path / "seed.csv").write_text(
        "id,key,value\n"
        '1,int,42\n'
        '2,quoted,"""42"""\n'
        '3,text,hello world\n'
        '4,object,"{""b"": 1, ""a"": [true, null]}"\n'
        '5,empty,\n'
        '6,bool,true\n'
        '7,multi,"line one\nline two"\n'
        '8,float,1.5\n'
    )
    run("snapshot", "import", "seed.csv", "-o", "seed.kv", cwd=tmp_path)
    values = {row["key"]: row["value"] for row in map(orjson.loads, exported(tmp_path / "seed.kv", tmp_path).splitlines())}
    assert values == {
        "int": 42,
        "quoted": "42",
        "text": "hello world",
        "object": {"a": [True, None], "b": 1},
        "empty": "",
        "bool": True,
        "multi": "line one\nline two",
        "float": 1.5,
    }

    # export --format csv writes cells that import back to the same values.
    run("snapshot", "export", "seed.kv", "--format", "csv", "-o", "again.csv", cwd=tmp_path)
    assert (tmp_path / "again.csv").read_text().startswith("key,value\n")
    run("snapshot", "import", "again.csv", "-o", "again.kv", cwd=tmp_path)
    assert exported(tmp_path / "again.kv", tmp_path) == exported(tmp_path / "seed.kv", tmp_path)


def test_string_serialization_import(tmp_path: Path) -> None:
    (tmp_path / "seed.csv").write_text('key,value\na,42\nb,"{""x"": 1}"\n')
    run("snapshot", "import", "seed.csv", "-o", "s.kv", "--serialization", "string", cwd=tmp_path)
    assert inspect(tmp_path / "s.kv").serialization == "string"
    kv = open_kv(backend="memory", serialization="string")
    try:
        kv.restore(tmp_path / "s.kv")
        assert (kv.get("a"), kv.get("b")) == ("42", '{"x": 1}')
    finally:
        kv.close()
    (tmp_path / "bad.jsonl").write_text(jsonl({"key": "a", "value": 1}))
    done = run("snapshot", "import", "bad.jsonl", "-o", "b.kv", "--serialization", "string", cwd=tmp_path, check_status=1)
    assert "bad.jsonl:1: " in done.stderr


def test_bad_jsonl_rows_are_reported_by_line_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "old.kv").write_bytes(b"")  # an unrelated file must not be touched either
    (tmp_path / "seed.jsonl").write_text(
        jsonl({"key": "a", "value": 1})  # 1 fine
        + "{not json\n"  # 2
        + jsonl({"key": "b"})  # 3 no value
        + "\n"  # 4 blank: skipped
        + jsonl({"key": "", "value": 1})  # 5 empty key
        + jsonl({"key": "a", "value": 2})  # 6 duplicate of line 1
        + jsonl({"key": 5, "value": 1})  # 7 key not a string
        + jsonl({"key": "k" * 512, "value": 1})  # 8 key too long
        + jsonl([1, 2])  # 9 not an object
        + jsonl({"key": "fine", "value": {"deep": [1]}})  # 10 fine
    )
    done = run("snapshot", "import", "seed.jsonl", "-o", "seed.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotImportError"
    reported = [line.split(":")[1] for line in done.stderr.splitlines() if line.startswith("seed.jsonl:")]
    assert reported == ["2", "3", "5", "6", "7", "8", "9"]
    assert "first on line 1" in done.stderr
    assert "7 bad row(s)" in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["old.kv", "seed.jsonl"]


def test_bad_csv_rows_are_reported_by_line(tmp_path: Path) -> None:
    (tmp_path / "no-header.csv").write_text("name,data\nx,1\n")
    done = run("snapshot", "import", "no-header.csv", "-o", "x.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotImportError"
    assert "no-header.csv:1: " in done.stderr

    (tmp_path / "rows.csv").write_text(
        "key,value\n"  # 1
        "a,1\n"  # 2
        'b,"two\nlines"\n'  # 3-4
        "c\n"  # 5: too few fields
        ",5\n"  # 6: empty key
        "d,1,extra\n"  # 7: too many fields
        "\n"  # 8: blank, skipped
        "a,3\n"  # 9: duplicate
    )
    done = run("snapshot", "import", "rows.csv", "-o", "x.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotImportError"
    reported = [line.split(":")[1] for line in done.stderr.splitlines() if line.startswith("rows.csv:")]
    assert reported == ["5", "6", "7", "9"]
    assert not (tmp_path / "x.kv").exists()


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    (tmp_path / "seed.jsonl").write_text("oops\n" * 50)
    done = run("snapshot", "import", "seed.jsonl", "-o", "x.kv", cwd=tmp_path, check_status=None)
    assert sum(line.startswith("seed.jsonl:") for line in done.stderr.splitlines()) == 20
    assert "and 30 more bad row(s)" in done.stderr


def test_unknown_source_format_needs_format_option(tmp_path: Path) -> None:
    (tmp_path / "seed.txt").write_text(jsonl({"key": "a", "value": 1}))
    done = run("snapshot", "import", "seed.txt", "-o", "x.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotImportError"
    run("snapshot", "import", "seed.txt", "-o", "x.kv", "--format", "jsonl", cwd=tmp_path)


def test_failures_print_their_stable_name(tmp_path: Path) -> None:
    assert failure_name(run("snapshot", "info", "missing.kv", cwd=tmp_path, check_status=None)) == "SnapshotNotFoundError"
    assert failure_name(run("snapshot", "import", "missing.csv", "-o", "x.kv", cwd=tmp_path, check_status=None)) == (
        "SnapshotNotFoundError"
    )
    write_snapshot(tmp_path / "good.kv", [[(b"a", b"1"), (b"b", b"2")]], "memory", "json")
    data = (tmp_path / "good.kv").read_bytes()
    (tmp_path / "bad.kv").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    done = run("snapshot", "info", "bad.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotReadError"
    assert done.stdout == ""
    done = run("snapshot", "export", "bad.kv", "-o", "out.jsonl", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotReadError"
    assert not (tmp_path / "out.jsonl").exists()


def test_progress_bar_on_a_terminal_draws_only_after_a_moment() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar("restore", 1_000, stream, enabled=None)
    bar(10)
    assert stream.getvalue() == ""  # too soon to bother
    bar.started -= ProgressBar.DELAY
    bar(500)
    bar.close()
    assert stream.getvalue().startswith("\rrestore [")
    assert "50%" in stream.getvalue() and "500/1,000 entries" in stream.getvalue()
    assert stream.getvalue().endswith("\n")

    quiet = io.StringIO()  # not a terminal
    off = ProgressBar("restore", 1_000, quiet, enabled=None)
    off.started -= ProgressBar.DELAY
    off(500)
    off.close()
    assert quiet.getvalue() == ""


def test_progress_option_draws_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "seed.jsonl").write_text("".join(f'{{"key":"k{i:06d}","value":{i}}}\n' for i in range(30_000)))
    done = run("snapshot", "import", "seed.jsonl", "-o", "seed.kv", "--progress", cwd=tmp_path)
    assert "write [" in done.stderr and "30,000/30,000 entries" in done.stderr
    assert done.stdout.startswith("wrote 30,000 entries")
    done = run("snapshot", "info", "seed.kv", cwd=tmp_path)  # not a terminal: no bar
    assert done.stderr == ""
    assert "30,000" in done.stdout


# ---------------------------------------------------------------------------
# backup / restore against a disk store.


def _disk_store(path: Path, entries: dict[str, Any]) -> None:
    kv = open_kv(backend="disk", path=str(path))
    try:
        for key, value in entries.items():
            kv.set(key, value)
    finally:
        kv.close()


def test_backup_and_restore_a_disk_store(tmp_path: Path) -> None:
    entries = {f"account:{i:05d}": {"balance": i} for i in range(3_000)}
    _disk_store(tmp_path / "a.lmdb", entries)

    done = run("backup", "--path", "a.lmdb", "-o", "runs/a.kv", cwd=tmp_path)
    assert "3,000 entries" in done.stdout
    assert inspect(tmp_path / "runs" / "a.kv").source_backend == "disk"

    # A process with the target store open sees the restore another process makes.
    target = open_kv(backend="disk", path=str(tmp_path / "b.lmdb"))
    try:
        target.set("stale", 1)
        done = run("restore", "--path", "b.lmdb", "runs/a.kv", cwd=tmp_path)
        assert "3,000 entries" in done.stdout
        assert target.size() == 3_000
        assert not target.exists("stale")
        assert target.get("account:00042") == {"balance": 42}
        assert target.random_key().startswith("account:")

        done = run("restore", "--path", "b.lmdb", "runs/a.kv", "--max-entries", "2999", cwd=tmp_path, check_status=None)
        assert failure_name(done) == "SnapshotBudgetExceededError"
        assert "2999" in done.stderr and "3000" in done.stderr
        done = run("restore", "--path", "b.lmdb", "runs/a.kv", "--max-bytes", "10", cwd=tmp_path, check_status=None)
        assert failure_name(done) == "SnapshotBudgetExceededError"
        assert target.size() == 3_000
    finally:
        target.close()


def test_default_snapshot_file_and_missing_snapshot(tmp_path: Path) -> None:
    _disk_store(tmp_path / "a.lmdb", {"a": 1})
    done = run("restore", "--path", "a.lmdb", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotNotFoundError"
    run("backup", "--path", "a.lmdb", cwd=tmp_path)
    assert (tmp_path / "locust-kv.snapshot").is_file()
    run("restore", "--path", "a.lmdb", cwd=tmp_path)


def test_backup_needs_an_existing_store_and_restore_creates_one(tmp_path: Path) -> None:
    done = run("backup", "--path", "typo.lmdb", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "DiskPathError"
    assert not (tmp_path / "typo.lmdb").exists()

    write_snapshot(tmp_path / "seed.kv", [[(b"a", b"1"), (b"b", b"2")]], "import", "json")
    run("restore", "--path", "fresh.lmdb", "seed.kv", cwd=tmp_path)
    run("restore", "--path", "unindexed.lmdb", "seed.kv", "--no-track-keys", cwd=tmp_path)
    for name in ("fresh.lmdb", "unindexed.lmdb"):
        kv = open_kv(backend="disk", path=str(tmp_path / name), track_keys=name == "fresh.lmdb")
        try:
            assert [(e.key, e.value) for e in kv.scan().entries] == [("a", 1), ("b", 2)]
            assert kv.random_key() in {"a", "b"}
        finally:
            kv.close()


# -- options -------------------------------------------------------------------


_PARSER_TABLE = """
import argparse, json
import configargparse
from locust_kv.plugin.settings import OPTIONS, add_arguments
parser = configargparse.ArgumentParser()
add_arguments(parser)
rows = [
    {"flag": a.option_strings[0], "env_var": a.env_var, "default": a.default, "help": a.help}
    for a in parser._actions
    if a.option_strings and a.help != argparse.SUPPRESS and a.option_strings[0] != "-h"
]
print(json.dumps({"parser": rows, "table": [o.flag for o in OPTIONS]}))
"""
"""Run in a child: importing the plugin imports Locust, which would monkey-patch this pytest process."""


def test_options_lists_exactly_the_parsers_table() -> None:
    done = subprocess.run(["locust-kv", "options", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    probe = subprocess.run([sys.executable, "-c", _PARSER_TABLE], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    parser = json.loads(probe.stdout)
    assert [row["flag"].split()[0] for row in rows] == [a["flag"] for a in parser["parser"]] == parser["table"]
    for row, action in zip(rows, parser["parser"]):
        assert row["env_var"] == action["env_var"]
        assert row["config_key"] == action["flag"][2:]
        assert row["default"] == action["default"]
        assert row["help"] == action["help"]


def test_options_as_text_and_markdown_name_every_flag() -> None:
    flags = json.loads(subprocess.run(["locust-kv", "options", "--format", "json"], capture_output=True, text=True, timeout=120).stdout)
    for fmt in ("text", "markdown"):
        done = subprocess.run(["locust-kv", "options", "--format", fmt], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        for row in flags:
            assert row["flag"] in done.stdout and row["env_var"] in done.stdout
