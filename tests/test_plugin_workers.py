"""Workers and their own options: real ``locust --master`` and ``locust --worker`` processes, each in a directory of its own.

A worker takes the master's store options when the test starts. It says so
on one INFO line when they replace options it was started with, and it
creates nothing where its own options (or the defaults) point: no stray store
file in its working directory or at its own ``--kv-path``.
"""

from __future__ import annotations

from pathlib import Path

from locust_kv import open_kv

from .plugin_helpers import describe, finish, free_port, read_values, requires_disk, start_locust

HEADLESS = ("--headless", "-u", "4", "-r", "100", "-t", "2s")
REPLACED = "locust_kv: the master's options replace this worker's own"


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@requires_disk
def test_workers_log_replaced_options_and_create_no_store_of_their_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    master_dir, own_dir, plain_dir, forked_dir = (tmp_path / name for name in ("master", "own", "plain", "forked"))
    for directory in (master_dir, own_dir, plain_dir, forked_dir):
        directory.mkdir()
    store = master_dir / "master.lmdb"
    port = free_port()
    env = {"KV_TEST_OUT": str(out)}
    worker = ("--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    master = start_locust(
        "counters.py", *HEADLESS, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "4", "--kv-path", str(store),
        cwd=master_dir, env=env,
    )  # fmt: skip
    workers = [
        # Its own --kv-path (relative, in its own directory) and mask: the master's replace them.
        start_locust("counters.py", *worker, "--kv-path", "mine.lmdb", "--kv-mask-prefix", "secret:", cwd=own_dir, env=env),
        # No option of its own: the default store would be .locust-kv.lmdb here.
        start_locust("counters.py", *worker, cwd=plain_dir, env=env),
        # `--processes` forks two workers from one parent.
        start_locust("counters.py", *worker, "--processes", "2", cwd=forked_dir, env=env),
    ]
    results = finish([master, *workers])
    assert [r.returncode for r in results] == [0, 0, 0, 0], describe(*results)
    own, plain, forked = results[1:]

    lines = own.lines_with(REPLACED)
    assert len(lines) == 1, describe(own)
    assert f"--kv-path 'mine.lmdb' -> {str(store)!r}" in lines[0], lines[0]
    assert "--kv-mask-prefix 'secret:' -> (default)" in lines[0], lines[0]
    assert not plain.lines_with(REPLACED), describe(plain)  # nothing of its own was replaced
    assert not forked.lines_with(REPLACED), describe(forked)
    for result in (own, plain):
        assert len(result.lines_with("locust_kv: using the master's store")) == 1, describe(result)
    assert len(forked.lines_with("locust_kv: using the master's store")) == 2, describe(forked)

    # No worker left a store (or a lock file) where it will not be used.
    for directory in (own_dir, plain_dir, forked_dir):
        assert _files(directory) == [], f"{directory.name}: {_files(directory)}"
    # Every worker's users counted on the master's store.
    with open_kv(backend="disk", path=str(store)) as kv:
        final = kv.get("hits")
    values = read_values(out)
    assert len([pid for pid, vs in values.items() if vs]) == 4, sorted(values)
    assert max(v for vs in values.values() for v in vs) == final
