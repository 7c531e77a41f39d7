"""Crash testing of the disk backend and the ``locust-kv`` command: kill -9 at every stage, full disks.

Each long operation (restore, backup, map growth, clear, rebuild_key_list,
the command line's snapshot import and export) runs in a forked child with
its checkpoints armed (see ``fault_helpers``): run once to list its events,
then once per chosen event, killed there with a real SIGKILL. After each
kill a fresh process checks the invariants:

* the store opens, and holds exactly what acknowledged operations made:
  the old or the new data for a restore, all or nothing for a clear, the
  data unchanged for a backup or a rebuild, a prefix of the acknowledged
  writes (and at most the one in flight) while the map grows;
* a file written atomically is at its final name either as before (absent
  or the old file) or complete and valid, never truncated;
* nothing is stuck: writes, a backup, a rebuild, a clear and a restore all
  succeed at once (a dead owner's locks are free when it dies);
* every error on the way was a catalogued name; a child that hangs fails
  (every wait has a timeout).

The disk-full tests run the same operations on a real tmpfs of a few MiB,
filled by a ballast file to leave swept amounts of free space; the child
must end with success or a catalogued error, never by a signal (SIGBUS).

The tests after "Known bugs of issue 11" reproduce faults that issue 11
fixed (a killed backup's temp file and reader slot, a killed rebuild, a
backup over the store's own files, deletes in a full store, SIGBUS on a
full disk); each failed before its fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from locust_kv import cli, open_kv
from locust_kv.snapshot import inspect

from .disk_helpers import reader_pids
from .fault_helpers import (
    ChildResult,
    ack,
    check_store,
    fill,
    first_event,
    free_bytes,
    in_child,
    kill_after,
    kill_points,
    leftover_temp_files,
    prove_usable,
    read_store,
    small_tmpfs,
    tmpfs_unavailable_reason,
)

OLD = {f"old:{i:05d}": {"i": i} for i in range(1_500)}
NEW = {f"new:{i:05d}": i for i in range(7_000)}  # a restore of 4 transactions of 2,000 entries
WIDE = {f"wide:{i:06d}": "v" * 20 for i in range(25_000)}  # a backup or export of 3 batches of 10,000

# ---------------------------------------------------------------------------
# Building blocks run in children.


def _seed(path: str, snap: str, options: dict[str, Any]) -> int:
    """Make the store at ``path`` hold exactly the snapshot ``snap``."""
    kv = open_kv(backend="disk", path=path, **options)
    try:
        return kv.restore(snap).total_entries
    finally:
        kv.close()


def _restore(path: str, snap: str, options: dict[str, Any]) -> int:
    kv = open_kv(backend="disk", path=path, **options)
    return kv.restore(snap).total_entries


def _backup(path: str, target: str, options: dict[str, Any]) -> int:
    kv = open_kv(backend="disk", path=path, **options)
    return kv.backup(target).total_entries


def _clear(path: str, options: dict[str, Any]) -> bool:
    kv = open_kv(backend="disk", path=path, **options)
    return kv.clear()


def _rebuild(path: str, options: dict[str, Any]) -> bool:
    kv = open_kv(backend="disk", path=path, **options)
    return kv.rebuild_key_list()


def _grow(path: str, keys: list[str], options: dict[str, Any]) -> int:
    """Write ``keys`` one by one (each acknowledged as it returns), growing the map."""
    kv = open_kv(backend="disk", path=path, **options)
    for key in keys:
        kv.set(key, "x" * 100)
        ack()
    return len(keys)


def _cli(argv: list[str]) -> int:
    """Run ``locust-kv argv``; a failure is raised again as the error whose name the command printed."""
    import contextlib
    import io

    from locust_kv import errors

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    if code != 0:
        text = stderr.getvalue().strip()
        name, _, message = text.partition(": ")
        error = getattr(errors, name, None)
        if isinstance(error, type) and issubclass(error, errors.KVError):
            raise error(message)
        raise RuntimeError(f"locust-kv {' '.join(argv)} exited {code}: {text}")
    return code


def _memory_snapshot(path: Path, data: dict[str, Any]) -> Path:
    kv = open_kv(backend="memory", name=f"fault-{path.name}")
    try:
        for key, value in data.items():
            kv.set(key, value)
        kv.backup(path)
    finally:
        kv.clear()
        kv.close()
    return path


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    place = tmp_path_factory.mktemp("snapshots")
    return {name: _memory_snapshot(place / f"{name}.kv", data) for name, data in (("old", OLD), ("new", NEW), ("wide", WIDE))}


def _fresh_store(tmp_path: Path, name: str, snap: Path, options: dict[str, Any]) -> str:
    """A new store under ``tmp_path`` holding ``snap``, made in a child (this process never opens it)."""
    path = tmp_path / name / "store.lmdb"
    path.parent.mkdir(parents=True)
    seeded = in_child(_seed, str(path), str(snap), options, report=tmp_path / f"{name}.seed.json")
    assert seeded.code == 0, seeded.describe()
    return str(path)


def _events_of(result: ChildResult) -> list[str]:
    assert result.code == 0, f"the unarmed run failed: {result.describe()}"
    events: list[str] = result.report["events"]
    assert events, "no checkpoint was met: the hooks no longer see the operation"
    return events


def _assert_killed_cleanly(result: ChildResult, stage: str) -> None:
    """The armed child died by our SIGKILL at its checkpoint, or finished; never an error or another signal."""
    assert result.killed or result.code == 0, f"at {stage}: {result.describe()}"


def _sweep(
    tmp_path: Path, name: str, setup: Any, operation: Any, check: Any, most: int = 8
) -> list[str]:
    """Count the operation's events, then kill it at up to ``most`` of them; the stages visited.

    ``setup(place) -> args`` prepares a fresh copy for one run, ``operation``
    runs in the armed child with those args, and ``check(place, args,
    result)`` asserts the invariants after the kill.
    """
    place = tmp_path / f"{name}-count"
    counted = in_child(operation, *setup(place), report=tmp_path / "count.json", arm_it=True)
    events = _events_of(counted)
    visited = []
    for k in kill_points(events, most):
        place = tmp_path / f"{name}-{k}"
        args = setup(place)
        result = in_child(operation, *args, report=tmp_path / f"kill-{k}.json", arm_it=True, kill_at=k)
        stage = f"event {k} of {len(events)} ({events[k]})"
        _assert_killed_cleanly(result, stage)
        check(place, args, result, stage)
        visited.append(events[k])
        print(f"{name}: {stage}: {'killed' if result.killed else 'finished'}")
    return visited


# ---------------------------------------------------------------------------
# kill -9 at every stage.


def test_a_restore_killed_at_any_stage_leaves_all_old_or_all_new_data(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {}

    def setup(place: Path) -> tuple[Any, ...]:
        return _fresh_store(place, "s", snapshots["old"], options), str(snapshots["new"]), options

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        seen, failures = check_store(args[0], options, place / "check.kv", place / "check.json")
        assert seen["entries"] in (OLD, NEW), f"at {stage}: mixed data ({seen['size']} entries, state {seen['state']})"
        assert not failures, f"at {stage}: {failures}"

    visited = _sweep(tmp_path, "restore", setup, _restore, check, most=10)
    assert any(stage.startswith("uncommitted restore_rows") for stage in visited)


def test_a_backup_killed_at_any_stage_leaves_the_store_and_an_old_or_complete_snapshot(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    options: dict[str, Any] = {}
    runs = 0

    def setup(place: Path) -> tuple[Any, ...]:
        nonlocal runs
        runs += 1
        target = place / "out" / "backup.kv"
        target.parent.mkdir(parents=True)
        if runs % 2:  # every other run backs up over an earlier snapshot
            target.write_bytes(snapshots["old"].read_bytes())
        return _fresh_store(place, "s", snapshots["wide"], options), str(target), options

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        target = Path(args[1])
        if target.exists():
            info = inspect(target)  # SnapshotReadError here: a truncated file at the final name
            assert info.entries in (len(OLD), len(WIDE)), f"at {stage}: a snapshot of {info.entries} entries"
        seen, failures = check_store(args[0], options, place / "check.kv", place / "check.json")
        assert seen["entries"] == WIDE, f"at {stage}: the backup changed the store"
        assert not failures, f"at {stage}: {failures}"

    visited = _sweep(tmp_path, "backup", setup, _backup, check, most=10)
    assert "pause" in visited


def test_map_growth_killed_at_any_stage_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    options: dict[str, Any] = {"map_size": 1 << 16}
    keys = [f"grow:{i:05d}" for i in range(1_500)]  # 64 KiB -> 128 -> 256 -> 512 KiB

    def setup(place: Path) -> tuple[Any, ...]:
        path = place / "store.lmdb"
        place.mkdir(parents=True)
        return str(path), keys, options

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        acked = result.report.get("acked", len(keys))
        seen, failures = check_store(args[0], options, place / "check.kv", place / "check.json")
        stored = sorted(seen["entries"])
        assert stored in (keys[:acked], keys[: acked + 1]), f"at {stage}: {len(stored)} keys stored, {acked} acknowledged"
        assert not failures, f"at {stage}: {failures}"
        # The map still grows afterwards, from the size the dead process left.
        more = [f"more:{i:05d}" for i in range(1_500)]
        grown = in_child(_grow, args[0], more, options, report=place / "more.json")
        assert grown.code == 0, f"at {stage}: growing again failed: {grown.describe()}"

    visited = _sweep(tmp_path, "grow", setup, _grow, check, most=10)
    assert any(stage.startswith("before remap") for stage in visited) or any("agree" in s for s in visited)


def test_a_clear_killed_at_any_stage_is_all_or_nothing(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {}

    def setup(place: Path) -> tuple[Any, ...]:
        return _fresh_store(place, "s", snapshots["wide"], options), options

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        seen, failures = check_store(args[0], options, place / "check.kv", place / "check.json")
        assert seen["entries"] in (WIDE, {}), f"at {stage}: {seen['size']} entries left"
        assert not failures, f"at {stage}: {failures}"

    visited = _sweep(tmp_path, "clear", setup, _clear, check)
    assert "uncommitted clear_in" in visited


def test_a_rebuild_killed_at_any_stage_leaves_the_data_and_a_usable_store(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {"track_keys": False}

    def setup(place: Path) -> tuple[Any, ...]:
        return _fresh_store(place, "s", snapshots["wide"], options), options

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        seen, failures = check_store(args[0], options, place / "check.kv", place / "check.json")
        assert seen["entries"] == WIDE, f"at {stage}: the rebuild changed the data"
        assert not failures, f"at {stage}: {failures}"

    visited = _sweep(tmp_path, "rebuild", setup, _rebuild, check)
    assert any(stage.startswith("uncommitted rebuild_slice") for stage in visited)


def _jsonl(path: Path, data: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(json.dumps({"key": k, "value": v}).encode() + b"\n" for k, v in data.items()))
    return path


def test_a_cli_snapshot_import_killed_at_any_stage_leaves_an_old_or_complete_snapshot(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    source = _jsonl(tmp_path / "wide.jsonl", WIDE)
    runs = 0

    def setup(place: Path) -> tuple[Any, ...]:
        nonlocal runs
        runs += 1
        place.mkdir(parents=True)
        out = place / "seed.kv"
        if runs % 2:
            out.write_bytes(snapshots["old"].read_bytes())
        return (["snapshot", "import", str(source), "-o", str(out), "--no-progress"],)

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        out = place / "seed.kv"
        if out.exists():
            assert inspect(out).entries in (len(OLD), len(WIDE)), f"at {stage}"
        again = in_child(_cli, args[0], report=place / "again.json")
        assert again.code == 0, f"at {stage}: importing again failed: {again.describe()}"
        assert inspect(out).entries == len(WIDE)

    visited = _sweep(tmp_path, "import", setup, _cli, check)
    assert "before rename into place" in visited or "pause" in visited


def test_a_cli_snapshot_export_killed_at_any_stage_leaves_an_old_or_complete_file(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    expected = tmp_path / "expected.jsonl"
    assert in_child(_cli, ["snapshot", "export", str(snapshots["wide"]), "-o", str(expected)], report=tmp_path / "e.json").code == 0
    complete = expected.read_bytes()
    assert complete.count(b"\n") == len(WIDE)
    runs = 0

    def setup(place: Path) -> tuple[Any, ...]:
        nonlocal runs
        runs += 1
        place.mkdir(parents=True)
        out = place / "dump.jsonl"
        if runs % 2:
            out.write_bytes(b"old\n")
        return (["snapshot", "export", str(snapshots["wide"]), "-o", str(out), "--no-progress"],)

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        out = place / "dump.jsonl"
        if out.exists():
            assert out.read_bytes() in (b"old\n", complete), f"at {stage}: a partial export at the final name"

    visited = _sweep(tmp_path, "export", setup, _cli, check)
    assert "pause" in visited


def test_a_cli_restore_killed_at_any_stage_leaves_all_old_or_all_new_data(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {}

    def setup(place: Path) -> tuple[Any, ...]:
        path = _fresh_store(place, "s", snapshots["old"], options)
        return (["restore", "--path", path, str(snapshots["new"]), "--no-progress"],)

    def check(place: Path, args: tuple[Any, ...], result: ChildResult, stage: str) -> None:
        seen, failures = check_store(args[0][2], options, place / "check.kv", place / "check.json")
        assert seen["entries"] in (OLD, NEW), f"at {stage}: mixed data ({seen['size']} entries)"
        assert not failures, f"at {stage}: {failures}"

    _sweep(tmp_path, "cli-restore", setup, _cli, check, most=5)


def _open_only(path: str, *rest: Any) -> None:
    open_kv(backend="disk", path=path, **rest[-1]).size()


@pytest.mark.parametrize("delay_ms", [0, 2, 5, 10, 20, 40, 80])
def test_a_restore_or_growth_killed_after_swept_delays_keeps_the_invariants(
    tmp_path: Path, snapshots: dict[str, Path], delay_ms: int
) -> None:
    """Kills that land anywhere, inside LMDB commits and remaps too, rather than at named checkpoints."""
    options: dict[str, Any] = {}
    path = _fresh_store(tmp_path, "r", snapshots["old"], options)
    restored = kill_after(_open_only, _restore, (path, str(snapshots["wide"]), options), delay_ms / 1000, tmp_path / "ready")
    assert restored.killed or restored.code == 0, restored.describe()
    seen, failures = check_store(path, options, tmp_path / "r.kv", tmp_path / "r.json")
    assert seen["entries"] in (OLD, WIDE), f"mixed data: {seen['size']} entries, state {seen['state']}"
    assert not failures, failures

    grow_options: dict[str, Any] = {"map_size": 1 << 16}
    keys = [f"grow:{i:05d}" for i in range(5_000)]
    store = str(tmp_path / "g.lmdb")
    result = kill_after(_open_only, _grow, (store, keys, grow_options), delay_ms / 1000, tmp_path / "ready")
    assert result.killed or result.code == 0, result.describe()
    seen, failures = check_store(store, grow_options, tmp_path / "g.kv", tmp_path / "g.json")
    stored = sorted(seen["entries"])
    assert stored == keys[: len(stored)], "the keys stored are not a prefix of the keys written in order"
    assert not failures, failures
    print(f"after {delay_ms} ms: restore {'killed' if restored.killed else 'finished'}, growth killed after {len(stored)} keys")


# ---------------------------------------------------------------------------
# Known bugs of issue 11: each test failed before its fix.


def _events_for(tmp_path: Path, operation: Any, *args: Any) -> list[str]:
    return _events_of(in_child(operation, *args, report=tmp_path / "count.json", arm_it=True))


def test_a_killed_backup_leaves_no_temp_file_once_the_next_backup_ran(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {}
    path = _fresh_store(tmp_path, "s", snapshots["wide"], options)
    out = tmp_path / "out"
    out.mkdir()
    for stage in ("after temp file", "pause", "before fsync", "before rename into place"):
        target = out / f"{stage.replace(' ', '-')}.kv"
        # Counted again each time: the first backup grows the map first, and adds steps the later ones do not have.
        events = _events_for(tmp_path, _backup, path, str(tmp_path / "counted.kv"), options)
        killed = in_child(_backup, path, str(target), options, report=tmp_path / "k.json", arm_it=True, kill_at=first_event(events, stage))
        assert killed.killed, killed.describe()
        again = in_child(_backup, path, str(target), options, report=tmp_path / "again.json")
        assert again.code == 0, again.describe()
    assert leftover_temp_files(out) == []


def test_a_killed_backup_gives_back_its_reader_slot(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {}
    path = _fresh_store(tmp_path, "s", snapshots["wide"], options)
    events = _events_for(tmp_path, _backup, path, str(tmp_path / "counted.kv"), options)
    kv = open_kv(backend="disk", path=path)  # open before the kill, as a Locust process is
    try:
        kv.size()
        killed = in_child(
            _backup, path, str(tmp_path / "b.kv"), options, report=tmp_path / "k.json", arm_it=True, kill_at=first_event(events, "pause")
        )
        assert killed.killed, killed.describe()
        kv.backup(tmp_path / "next.kv")  # the next backup, and writes, in the process that stayed
        kv.set("after", 1)
        assert killed.pid not in reader_pids(kv._backend._env)
    finally:
        kv.close()


def _index_status_after_use(path: str, options: dict[str, Any]) -> str:
    """Open the store, write, sample a key; the index status of its state record then."""
    kv = open_kv(backend="disk", path=path, **options)
    kv.set("probe", 1)
    kv.random_key()
    return read_store(path, options)["state"].split(":")[1]


def test_a_killed_rebuild_does_not_leave_the_index_being_built(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options: dict[str, Any] = {"track_keys": False}
    path = _fresh_store(tmp_path, "s", snapshots["wide"], options)
    events = _events_for(tmp_path, _rebuild, path, options)
    path = _fresh_store(tmp_path, "t", snapshots["wide"], options)
    killed = in_child(_rebuild, path, options, report=tmp_path / "k.json", arm_it=True, kill_at=first_event(events, "pause"))
    assert killed.killed, killed.describe()
    after = in_child(_index_status_after_use, path, options, report=tmp_path / "after.json")
    assert after.code == 0, after.describe()
    assert not after.report["result"].startswith("b"), f"index status {after.report['result']!r} after its builder died"


def _backup_onto(path: str, target: str) -> str:
    """Back the store up onto ``target``; the error's name, or "" if the backup went ahead."""
    from locust_kv.errors import KVError

    kv = open_kv(backend="disk", path=path)
    try:
        kv.backup(target)
    except KVError as exc:
        return exc.name
    finally:
        kv.close()
    return ""


@pytest.mark.parametrize("suffix", ["", "-lock", "-kvlock"])
def test_a_backup_onto_the_store_own_files_is_refused_and_the_store_survives(
    tmp_path: Path, snapshots: dict[str, Path], suffix: str
) -> None:
    path = _fresh_store(tmp_path, "s", snapshots["old"], {})
    refused = in_child(_backup_onto, path, path + suffix, report=tmp_path / "b.json")
    assert refused.code == 0, refused.describe()
    seen = in_child(read_store, path, {}, report=tmp_path / "r.json")
    assert seen.code == 0, f"the store no longer opens: {seen.describe()}"
    assert seen.report["result"]["entries"] == OLD
    assert refused.report["result"] != "", "the backup went ahead over the store's own file"


def _fill_then_delete(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """Fill a store whose map cannot grow until it is full, then delete every key; what failed."""
    from locust_kv.errors import DiskStoreFullError, KVError

    kv = open_kv(backend="disk", path=path, **options)
    written = 0
    try:
        while True:
            kv.set(f"key:{written:06d}", "x" * 50)
            written += 1
    except DiskStoreFullError:
        pass
    failed: list[str] = []
    for i in range(written):
        try:
            kv.delete(f"key:{i:06d}")
        except KVError as exc:
            failed.append(exc.name)
    return {"written": written, "failed": len(failed), "first": failed[:1], "size": kv.size()}


@pytest.mark.parametrize(
    "track_keys",
    [True, False],
)
def test_every_delete_works_in_a_store_full_at_max_map_size(tmp_path: Path, track_keys: bool) -> None:
    options = {"map_size": 1 << 20, "max_map_size": 1 << 20, "track_keys": track_keys}
    done = in_child(_fill_then_delete, str(tmp_path / "full.lmdb"), options, report=tmp_path / "d.json")
    assert done.code == 0, done.describe()
    outcome = done.report["result"]
    assert outcome["written"] > 100
    assert outcome["failed"] == 0 and outcome["size"] == 0, outcome


# ---------------------------------------------------------------------------
# Disk full at every stage: a real tmpfs, filled to leave swept amounts of room.

TMPFS_SIZE = "16m"
LEAVES = (0, 64 << 10, 512 << 10, 2 << 20)
"""Free bytes left on the tmpfs before the operation starts: none, a few pages, part of it, most of it."""


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    reason = tmpfs_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    mount = small_tmpfs(tmp_path / "tmpfs", TMPFS_SIZE)
    try:
        place = mount.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        yield place
    finally:
        mount.__exit__(None, None, None)


def _wipe(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir():
            _wipe(entry)
            entry.rmdir()
        else:
            entry.unlink()


def _then_make_room(operation: Any, ballast: str, *args: Any) -> dict[str, Any]:
    """Run ``operation(*args)``; if it fails, delete the ballast and write again in this same process.

    The result says what failed and whether the process's own store (the
    same environment, still open) works once the disk has room again.
    """
    from locust_kv.errors import KVError, UnknownError

    try:
        return {"result": operation(*args), "error": None}
    except KVError as exc:
        outcome: dict[str, Any] = {"error": exc.name, "message": str(exc), "catalogued": not isinstance(exc, UnknownError)}
    os.unlink(ballast)
    if operation in (_cli,):
        return outcome
    kv = open_kv(backend="disk", path=args[0], **args[-1])  # the store this process already has open
    try:
        kv.set("fault:after-room", 1)
        kv.delete("fault:after-room")
        outcome["after_room"] = "ok"
    except KVError as exc:
        outcome["after_room"] = str(exc)
    return outcome


def _full_case(case: str, place: Path, outside: Path, snapshots: dict[str, Path], writemap: bool) -> tuple[Any, tuple[Any, ...], Any]:
    """(operation, its args, the data it may leave: a tuple of allowed entry dicts; None without a store)."""
    options: dict[str, Any] = {"writemap": writemap}
    store = place / "store.lmdb"

    def seeded(snap: Path) -> str:
        seeded = in_child(_seed, str(store), str(snap), options, report=outside / "seed.json")
        assert seeded.code == 0, seeded.describe()
        return str(store)

    if case == "restore":
        return _restore, (seeded(snapshots["old"]), str(snapshots["new"]), options), (OLD, NEW)
    if case == "backup":
        return _backup, (seeded(snapshots["wide"]), str(place / "backup.kv"), options), (WIDE,)
    if case == "clear":
        return _clear, (seeded(snapshots["wide"]), options), (WIDE, {})
    if case == "rebuild":
        options["track_keys"] = False
        return _rebuild, (seeded(snapshots["wide"]), options), (WIDE,)
    if case == "grow":
        options["map_size"] = 1 << 16
        made = in_child(_grow, str(store), [], options, report=outside / "seed.json")  # created before the disk fills
        assert made.code == 0, made.describe()
        return _grow, (str(store), [f"grow:{i:05d}" for i in range(20_000)], options), None
    if case == "cli-import":
        source = outside / "wide.jsonl"
        if not source.exists():
            _jsonl(source, WIDE)
        return _cli, (["snapshot", "import", str(source), "-o", str(place / "seed.kv"), "--no-progress"],), None
    if case == "cli-export":
        return _cli, (["snapshot", "export", str(snapshots["wide"]), "-o", str(place / "dump.jsonl"), "--no-progress"],), None
    raise AssertionError(case)


def _disk_full_sweep(case: str, tmpfs: Path, tmp_path: Path, snapshots: dict[str, Path], writemap: bool) -> list[str]:
    """Run ``case`` once per amount of free space in LEAVES; the invariants broken, and the errors seen."""
    problems: list[str] = []
    errors: list[str] = []
    for leave in LEAVES:
        _wipe(tmpfs)
        operation, args, allowed = _full_case(case, tmpfs, tmp_path, snapshots, writemap)
        ballast = fill(tmpfs, leave)
        where = f"{case} with {free_bytes(tmpfs)} bytes free"
        run = in_child(_then_make_room, operation, str(ballast), *args, report=tmp_path / "op.json", arm_it=True)
        ballast.unlink(missing_ok=True)
        if run.code != 0:
            problems.append(f"{where}: {run.describe()}")  # a signal (SIGBUS), a hang, an error out of the way
            continue
        outcome = run.report["result"]
        if outcome["error"] is not None:
            errors.append(f"{where}: {outcome['message']}")
            if not outcome["catalogued"]:
                problems.append(f"{where}: uncatalogued {outcome['message']}")
            if outcome.get("after_room", "ok") != "ok":
                problems.append(f"{where}: failed, and once room was made the same process still fails: {outcome['after_room']}")
        leftovers = leftover_temp_files(tmpfs)
        if leftovers:
            problems.append(f"{where}: temp files left: {leftovers}")
        for name in ("backup.kv", "seed.kv"):
            if (tmpfs / name).exists():
                inspect(tmpfs / name)  # complete, never truncated at its final name
        if (tmpfs / "dump.jsonl").exists() and (tmpfs / "dump.jsonl").read_bytes().count(b"\n") != len(WIDE):
            problems.append(f"{where}: a partial export at the final name")
        if operation is _cli:
            continue
        options = args[-1]
        seen = in_child(read_store, args[0], options, report=tmp_path / "read.json")
        if seen.code != 0:
            problems.append(f"{where}: the store does not read: {seen.describe()}")
            continue
        entries = seen.report["result"]["entries"]
        entries.pop("fault:after-room", None)
        if operation is _grow:
            acked = run.report.get("acked", 0)
            if sorted(entries) not in (args[1][:acked], args[1][: acked + 1]):
                problems.append(f"{where}: {len(entries)} keys stored, {acked} acknowledged")
        elif entries not in allowed:
            problems.append(f"{where}: the data is neither the old nor the new ({len(entries)} entries)")
        elif outcome["error"] is not None and entries != allowed[0]:
            problems.append(f"{where}: failed with {outcome['error']} but changed the data")
        used = in_child(prove_usable, args[0], options, str(tmp_path / "usable.kv"), report=tmp_path / "use.json")
        if used.code != 0 or used.report["result"]:
            problems.append(f"{where}: once room was made: {used.report.get('result') or used.describe()}")
    assert not problems, "\n".join(problems)
    return errors


STORE_CASES = ["restore", "backup", "clear", "rebuild", "grow"]


@pytest.mark.parametrize("case", STORE_CASES + ["cli-import", "cli-export"])
def test_a_full_disk_at_any_stage_fails_with_a_catalogued_error_and_keeps_the_data(
    tmpfs: Path, tmp_path: Path, snapshots: dict[str, Path], case: str
) -> None:
    errors = _disk_full_sweep(case, tmpfs, tmp_path, snapshots, writemap=False)
    print("\n".join(errors))


@pytest.mark.parametrize(
    "case",
    STORE_CASES,
)
def test_a_full_disk_under_a_writemap_store_never_kills_the_process(
    tmpfs: Path, tmp_path: Path, snapshots: dict[str, Path], case: str
) -> None:
    _disk_full_sweep(case, tmpfs, tmp_path, snapshots, writemap=True)


def _open_new_store(path: str, options: dict[str, Any]) -> int:
    kv = open_kv(backend="disk", path=path, **options)
    for i in range(50):
        kv.set(f"first:{i}", "x" * 100)
    return kv.size()


def _create_on_full_disk(tmpfs: Path, tmp_path: Path, writemap: bool, leaves: list[int]) -> None:
    problems = []
    for leave in leaves:
        _wipe(tmpfs)
        ballast = fill(tmpfs, leave)
        made = in_child(_open_new_store, str(tmpfs / "new.lmdb"), {"writemap": writemap}, report=tmp_path / "new.json")
        if made.code not in (0, 3) or (made.code == 3 and not made.report["catalogued"]):
            problems.append(f"with {leave} bytes free: {made.describe()}")
        ballast.unlink()
    assert not problems, problems


@pytest.mark.parametrize("leave", [0, 4096, 8192, 16 << 10, 32 << 10])
def test_creating_a_store_on_a_full_disk_fails_with_a_catalogued_error(tmpfs: Path, tmp_path: Path, leave: int) -> None:
    # With no room, LMDB's lock file (written through a shared memory map) killed the process with SIGBUS.
    _create_on_full_disk(tmpfs, tmp_path, False, [leave])


def test_creating_a_writemap_store_on_a_full_disk_never_kills_the_process(tmpfs: Path, tmp_path: Path) -> None:
    _create_on_full_disk(tmpfs, tmp_path, True, list(range(0, 48 << 10, 4096)))


def _fail_then_report(operation: Any, ballast: str, *args: Any) -> dict[str, Any]:
    """Run ``operation(*args)`` on a full disk; its error's name and kinds, and the index status once room was made."""
    from locust_kv.errors import KVError, StoreFullError

    outcome: dict[str, Any] = {"error": None}
    try:
        operation(*args)
    except KVError as exc:
        outcome = {"error": exc.name, "full": isinstance(exc, StoreFullError), "message": str(exc)}
    os.unlink(ballast)
    kv = open_kv(backend="disk", path=args[0], **args[-1])
    kv.set("fault:after-room", 1)
    kv.random_key()
    outcome["index"] = read_store(args[0], args[-1])["state"].split(":")[1]
    return outcome


@pytest.mark.parametrize("leave", [0, 64 << 10])
@pytest.mark.parametrize("case", ["restore", "rebuild"])
def test_a_full_disk_without_writemap_is_store_full_and_leaves_no_build_behind(
    tmpfs: Path, tmp_path: Path, snapshots: dict[str, Path], case: str, leave: int
) -> None:
    """Without writemap LMDB reports a write cut short as EIO; a full disk must still be a StoreFullError.

    The map's blocks are allocated before LMDB uses them, so the operation
    may well fit in what was reserved before the disk filled; if it fails,
    the error is a StoreFullError, and a rebuild that failed is not left
    "being built" once room is made (found by this suite: EIO surfaced as
    DiskStoreWriteError / KeyListRebuildError, and the index stayed "being built").
    """
    operation, args, _ = _full_case(case, tmpfs, tmp_path, snapshots, writemap=False)
    ballast = fill(tmpfs, leave)
    run = in_child(_fail_then_report, operation, str(ballast), *args, report=tmp_path / "op.json")
    assert run.code == 0, run.describe()
    outcome = run.report["result"]
    assert outcome["error"] is None or outcome["full"], outcome
    assert not outcome["index"].startswith("b"), f"index status {outcome['index']!r} after the {case}"
