"""The Locust plugin in real, headless ``locust`` processes: one, ``--processes 2``, a master with two workers.

Every assertion is about what the run did, never about how long it took:
counters are checked by the values the users got (distinct, contiguous, the
last equal to the stored counter), the lifecycle by what a user saw when it
started and by what the backup holds.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest

from locust_kv import open_kv

from .plugin_helpers import (
    REPOSITORY,
    describe,
    finish,
    free_port,
    read_json,
    read_values,
    requires_disk,
    run_locust,
    start_locust,
)

HEADLESS = ("--headless", "-u", "4", "-r", "100", "-t", "2s")
_names = itertools.count()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


def make_snapshot(path: Path, entries: dict[str, object]) -> Path:
    with open_kv(backend="memory", name=f"snapshot-{next(_names)}") as kv:
        for key, value in entries.items():
            kv.set(key, value)
        kv.backup(str(path))
    return path


def snapshot_entries(path: Path) -> dict[str, object]:
    with open_kv(backend="memory", name=f"read-{next(_names)}") as kv:
        kv.restore(str(path))
        return {entry.key: entry.value for entry in kv.list()}


def assert_exact(values: dict[int, list[int]], start: int, processes: int, final: object) -> int:
    """Every value from start+1 up, each once, spread over ``processes`` processes, the last equal to ``final``."""
    every = sorted(v for vs in values.values() for v in vs)
    assert every, "no user incremented the counter"
    assert every == list(range(start + 1, start + 1 + len(every))), "increments lost or doubled"
    assert final == every[-1], f"stored counter {final} != last value a user got {every[-1]}"
    assert len([pid for pid, vs in values.items() if vs]) == processes, f"users ran in {sorted(values)}"
    return len(every)


# ---------------------------------------------------------------------------
# Standalone, memory backend.


def test_standalone_memory_counter_is_exact_and_backed_up_after_the_load(tmp_path: Path, out: Path) -> None:
    backup = tmp_path / "after.snapshot"
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-backend", "memory", "--kv-backup-to", str(backup),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )
    assert result.returncode == 0, describe(result)
    stored = snapshot_entries(backup)
    assert_exact(read_values(out), start=0, processes=1, final=stored["hits"])
    assert len(result.lines_with("locust_kv: backed up 1 entries")) == 1


def test_restore_completes_before_any_user_starts(tmp_path: Path, out: Path) -> None:
    seed = make_snapshot(tmp_path / "seed.snapshot", {"hits": 1000, "seed": "yes"})
    backup = tmp_path / "after.snapshot"
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-backend", "memory",
        "--kv-restore-from", str(seed), "--kv-restore-max-entries", "2", "--kv-backup-to", str(backup),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out), "KV_TEST_EXPECT_SEED": "1"},
    )
    assert result.returncode == 0, describe(result)
    assert len(result.lines_with("locust_kv: restored 2 entries")) == 1
    stored = snapshot_entries(backup)
    # A user that ran before the restore would have got a value <= 1000, then lost it to the restore.
    assert_exact(read_values(out), start=1000, processes=1, final=stored["hits"])
    assert stored["seed"] == "yes"


def test_reporting_counts_every_operation_in_a_microsecond_summary(tmp_path: Path, out: Path) -> None:
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-backend", "memory", "--kv-report",
        "--csv", str(tmp_path / "run"), "--json-file", str(tmp_path / "run"),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )
    assert result.returncode == 0, describe(result)
    increments = sum(len(v) for v in read_values(out).values())
    # Locust's statistics are the load's alone (tests/test_plugin_report.py has the rest).
    assert [row for row in read_json(tmp_path / "run.json") if row["method"] == "KV"] == []
    with open(tmp_path / "run_kv_stats.csv", newline="") as f:
        kv_rows = {row["Operation"]: row for row in csv.DictReader(f)}
    assert int(kv_rows["increment_by"]["# ops"]) == increments
    assert float(kv_rows["increment_by"]["Max µs"]) > 0
    kv_json = {row["operation"]: row for row in read_json(tmp_path / "run_kv.json")["operations"]}
    assert kv_json["increment_by"]["count"] == increments


def test_reporting_is_off_by_default(tmp_path: Path, out: Path) -> None:
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-backend", "memory", "--json-file", str(tmp_path / "run"),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out)},
    )
    assert result.returncode == 0, describe(result)
    assert read_values(out)
    assert [row for row in read_json(tmp_path / "run.json") if row["method"] == "KV"] == []
    assert not (tmp_path / "run_kv.json").exists()


# ---------------------------------------------------------------------------
# Failures.


def test_kv_error_in_a_task_without_reporting_is_a_locust_exception(tmp_path: Path) -> None:
    result = run_locust(
        "failing.py", *HEADLESS, "--kv-backend", "memory", "--csv", str(tmp_path / "run"), cwd=tmp_path
    )
    assert result.returncode == 1, describe(result)
    assert "KeyNotFoundError: key not found" in result.output
    with open(tmp_path / "run_exceptions.csv", newline="") as f:
        exceptions = list(csv.DictReader(f))
    assert [row["Message"] for row in exceptions] == ["KeyNotFoundError: key not found"]
    with open(tmp_path / "run_stats.csv", newline="") as f:
        assert [row for row in csv.DictReader(f) if row["Type"] == "KV"] == []


@requires_disk
def test_a_runaway_locustfile_stops_at_max_keys_with_one_stable_error(tmp_path: Path) -> None:
    """Two processes writing a key per request against --kv-max-keys 20: exactly 20 keys, one failure text, exit 1."""
    store = tmp_path / "quota.lmdb"
    result = run_locust(
        "runaway.py", *HEADLESS, "--processes", "2", "--kv-path", str(store), "--kv-max-keys", "20",
        "--csv", str(tmp_path / "run"), cwd=tmp_path,
    )
    # A KV error a task lets through is an exception of the task: --exit-code-on-error (1) by Locust's rules.
    assert result.returncode == 1, describe(result)
    with open(tmp_path / "run_exceptions.csv", newline="") as f:
        messages = {row["Message"] for row in csv.DictReader(f)}
    assert messages == {
        "QuotaExceededError: the write would take the store past its quota of max_keys=20 keys; nothing was written"
    }, describe(result)
    with open_kv(backend="disk", path=store) as kv:
        assert kv.size() == 20 and kv.count("request:") == 20


@requires_disk
@pytest.mark.parametrize("interval", ["0.2", "0"])
def test_the_master_purges_expired_keys_in_the_background(tmp_path: Path, interval: str) -> None:
    """Users store keys that expire at once and never write again: only --kv-purge-interval removes them."""
    store = tmp_path / "expiring.lmdb"
    result = run_locust(
        "expiring.py", *HEADLESS, "--processes", "2", "--kv-path", str(store), "--kv-purge-interval", interval,
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    with open_kv(backend="disk", path=store) as kv:
        written = kv.get("written")
        assert written >= 4 * 200 and kv.size() == 1  # the expired keys are absent either way
        left = kv.purge_expired()
    if interval == "0":
        # Nothing purged them but the users' own writes as they started (at most 16 a write, two writes a user).
        assert written - 4 * 2 * 16 <= left <= written, describe(result)
    else:
        assert left == 0, describe(result)


def _assert_one_line(result, name: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 1, describe(result)
    lines = result.lines_with("locust_kv: the test did not start")
    assert len(lines) == 1, describe(result)
    assert f"{name}: " in lines[0]
    assert "Traceback" not in result.output
    assert "All users spawned" not in result.output


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--kv-backend", "sqlite"], "InvalidBackendError"),
        (["--kv-backend", "memory", "--kv-serialization", "xml"], "InvalidSerializationError"),
        (["--kv-backend", "memory", "--kv-path", "store.lmdb"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-restore-max-entries", "5"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-restore-max-bytes", "lots"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-max-keys", "-3"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-purge-interval", "soon"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-purge-interval", "-1"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-purge-interval", "nan"], "InvalidOptionsError"),
        (["--kv-backend", "memory", "--kv-restore-from", "missing.snapshot"], "SnapshotNotFoundError"),
        pytest.param(["--kv-path", "."], "DiskPathError", marks=requires_disk),
        pytest.param(["--kv-path", "not-lmdb.txt"], "DiskStoreOpenError", marks=requires_disk),
        pytest.param(["--kv-path", ".", "--processes", "2"], "DiskPathError", marks=requires_disk),
    ],
)
def test_configuration_error_stops_the_run_with_one_line(tmp_path: Path, args: list[str], name: str) -> None:
    (tmp_path / "not-lmdb.txt").write_text("a text file, not an LMDB store\n" * 100)
    _assert_one_line(run_locust("failing.py", *HEADLESS, *args, cwd=tmp_path), name)


@requires_disk
def test_options_conflicting_with_the_locustfiles_own_store_stop_the_run(tmp_path: Path, out: Path) -> None:
    store = tmp_path / "store.lmdb"
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-path", str(store), "--kv-serialization", "string",
        cwd=tmp_path, env={"KV_TEST_OUT": str(out), "KV_TEST_MODULE_PATH": str(store)},  # opened there with json
    )
    _assert_one_line(result, "KVOptionsConflictError")


def test_restore_over_budget_stops_the_run_with_one_line(tmp_path: Path) -> None:
    seed = make_snapshot(tmp_path / "seed.snapshot", {"a": 1, "b": 2, "c": 3})
    result = run_locust(
        "failing.py", *HEADLESS, "--kv-backend", "memory",
        "--kv-restore-from", str(seed), "--kv-restore-max-entries", "2", cwd=tmp_path,
    )
    _assert_one_line(result, "SnapshotBudgetExceededError")


def test_memory_backend_refuses_several_processes(tmp_path: Path) -> None:
    result = run_locust("failing.py", *HEADLESS, "--kv-backend", "memory", "--processes", "2", cwd=tmp_path)
    _assert_one_line(result, "MemoryBackendNotSharedError")
    assert "--kv-backend disk" in result.lines_with("MemoryBackendNotSharedError")[0]


# ---------------------------------------------------------------------------
# Options from the command line, the environment and locust.conf.


def test_options_from_command_line_environment_and_config_file(tmp_path: Path, out: Path) -> None:
    (tmp_path / "locust.conf").write_text(
        "kv-backend = memory\nkv-serialization = json\nkv-clear = true\nkv-backup-to = conf.snapshot\n"
        "kv-purge-interval = 0.5\n"
    )
    env = {
        "KV_TEST_OUT": str(out),
        "LOCUST_KV_SERIALIZATION": "string",  # over the config file
        "LOCUST_KV_REPORT": "true",
        "LOCUST_KV_BACKUP_TO": "env.snapshot",
    }
    result = run_locust(
        "probe.py", "--headless", "-u", "1", "-r", "1", "-t", "2s", "--kv-backup-to", "cli.snapshot",
        cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, describe(result)
    (probe,) = [read_json(p) for p in out.glob("probe-*.json")]
    assert probe["settings"] == {
        "backend": "memory",  # config file
        "path": None,
        "redis_url": None,
        "namespace": None,
        "serialization": "string",  # environment over config file
        "restore_from": None,
        "restore_max_entries": 0,
        "restore_max_bytes": 0,
        "backup_to": "cli.snapshot",  # command line over environment and config file
        "clear": True,  # config file
        "report": "kv",  # environment ("true": the bare flag's mode)
        "mask_prefix": None,
        "max_keys": 0,  # no quota
        "max_bytes": 0,
        "purge_interval": 0.5,  # config file
    }
    assert probe["store"]["serialization"] == "string"
    assert (tmp_path / "cli.snapshot").exists()
    assert not (tmp_path / "env.snapshot").exists() and not (tmp_path / "conf.snapshot").exists()
    assert result.lines_with("locust_kv: cleared the store (--kv-clear)")
    # The KV table of --kv-report follows Locust's on the console, with the probe's increment in it.
    assert [line for line in result.lines_with("increment_by") if line.startswith("increment_by ")], describe(result)


# ---------------------------------------------------------------------------
# Disk backend: one store for every process on the host.


@requires_disk
def test_standalone_disk_counter_is_exact(tmp_path: Path, out: Path) -> None:
    store = tmp_path / "store.lmdb"
    result = run_locust(
        "counters.py", *HEADLESS, "--kv-path", str(store), "--kv-clear", cwd=tmp_path, env={"KV_TEST_OUT": str(out)}
    )
    assert result.returncode == 0, describe(result)
    with open_kv(backend="disk", path=str(store)) as kv:
        assert_exact(read_values(out), start=0, processes=1, final=kv.get("hits"))


@requires_disk
def test_processes_share_one_disk_store_with_restore_before_and_backup_after(tmp_path: Path, out: Path) -> None:
    store = tmp_path / "store.lmdb"
    seed = make_snapshot(tmp_path / "seed.snapshot", {"hits": 1000, "seed": "yes"})
    backup = tmp_path / "after.snapshot"
    result = run_locust(
        "counters.py", *HEADLESS, "--processes", "2", "--kv-path", str(store),
        "--kv-restore-from", str(seed), "--kv-backup-to", str(backup), "--kv-report",
        "--json-file", str(tmp_path / "run"),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out), "KV_TEST_EXPECT_SEED": "1"},
    )
    assert result.returncode == 0, describe(result)
    with open_kv(backend="disk", path=str(store)) as kv:
        final = kv.get("hits")
    assert_exact(read_values(out), start=1000, processes=2, final=final)
    # The backup waited for every worker's users: it holds the final counter.
    assert snapshot_entries(backup)["hits"] == final
    assert len(result.lines_with("locust_kv: restored 2 entries")) == 1
    assert len(result.lines_with("locust_kv: backed up 2 entries")) == 1
    # The workers' KV statistics reached the master, and stayed out of Locust's.
    kv_rows = {row["operation"]: row for row in read_json(tmp_path / "run_kv.json")["operations"]}
    assert kv_rows["increment_by"]["count"] == final - 1000
    assert [row for row in read_json(tmp_path / "run.json") if row["method"] == "KV"] == []


@requires_disk
def test_module_level_open_kv_is_shared_by_every_process(tmp_path: Path, out: Path) -> None:
    store = tmp_path / "store.lmdb"
    backup = tmp_path / "after.snapshot"
    result = run_locust(
        "counters.py", *HEADLESS, "--processes", "2", "--kv-path", str(store), "--kv-clear",
        "--kv-backup-to", str(backup),
        cwd=tmp_path, env={"KV_TEST_OUT": str(out), "KV_TEST_MODULE_PATH": str(store)},
    )
    assert result.returncode == 0, describe(result)
    # The module-level handles and environment.kv are one store: the plugin's backup has the users' counter.
    assert_exact(read_values(out), start=0, processes=2, final=snapshot_entries(backup)["hits"])


@requires_disk
def test_master_and_two_workers_share_the_masters_store(tmp_path: Path, out: Path) -> None:
    store = tmp_path / "master.lmdb"
    seed = make_snapshot(tmp_path / "seed.snapshot", {"hits": 1000, "seed": "yes"})
    backup = tmp_path / "after.snapshot"
    port = free_port()
    env = {"KV_TEST_OUT": str(out), "KV_TEST_EXPECT_SEED": "1"}
    master = start_locust(
        "counters.py", *HEADLESS, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "2", "--kv-path", str(store), "--kv-restore-from", str(seed),
        "--kv-backup-to", str(backup),
        cwd=tmp_path, env=env,
    )
    # The workers name no store and run from another directory, where the default store
    # would be another file: they take the master's store when the test starts.
    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    workers = [
        start_locust("counters.py", "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                     cwd=elsewhere, env=env)
        for _ in range(2)
    ]
    results = finish([master, *workers])
    assert [r.returncode for r in results] == [0, 0, 0], describe(*results)
    with open_kv(backend="disk", path=str(store)) as kv:
        final = kv.get("hits")
    assert_exact(read_values(out), start=1000, processes=2, final=final)
    assert snapshot_entries(backup)["hits"] == final
    for worker in results[1:]:
        assert worker.lines_with("locust_kv: using the master's store"), describe(worker)


# ---------------------------------------------------------------------------
# The README's demo.


@requires_disk
@pytest.mark.parametrize("topology", [[], ["--processes", "2"]], ids=["standalone", "processes-2"])
def test_demo_runs_and_its_books_add_up(tmp_path: Path, topology: list[str]) -> None:
    result = run_locust(
        str(REPOSITORY / "examples" / "demo.py"), "--headless", "-u", "20", "-r", "20", "-t", "2s", *topology,
        cwd=tmp_path,
    )
    assert result.returncode == 0, describe(result)
    assert len(result.lines_with("demo: all 4 checks passed")) == 1, describe(result)
    assert result.lines_with("KV operations (microseconds")
    assert (tmp_path / ".locust-kv.lmdb").exists()  # the plugin's default store: disk, in the working directory


def test_a_backup_target_that_is_the_store_itself_stops_the_run_before_the_load(tmp_path: Path) -> None:
    """--kv-backup-to equal to --kv-path would rename the snapshot over the live store at the end: refused at start."""
    store = tmp_path / "store.lmdb"
    open_kv(backend="disk", path=store).close()  # the store exists, as in a second run against it
    result = run_locust("failing.py", *HEADLESS, "--kv-path", str(store), "--kv-backup-to", str(store), cwd=tmp_path)
    _assert_one_line(result, "SnapshotExportError")
    kv = open_kv(backend="disk", path=store)
    assert kv.size() == 0  # still a store
    kv.close()
