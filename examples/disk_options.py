"""The disk backend: one LMDB store shared by every process on the host, and its options.

    locust -f examples/disk_options.py --headless -u 20 -r 20 -t 3s --processes 2 --kv-backend disk --kv-path .locust-kv-examples/shared.lmdb --kv-clear

The plugin's store comes from ``--kv-backend disk --kv-path FILE`` (the
default backend is disk, at ``.locust-kv.lmdb`` in the working directory);
``--kv-clear`` empties it before the load, so a run starts afresh. With
``--processes 2`` (or a master and workers on one host) every process opens
the same file, and every operation is atomic across them.

A locustfile can open more stores with ``open_kv``, with the disk options
the command line does not carry:

- ``durable=True``: fsync every commit (about 0.3 ms each), so a power loss
  loses nothing committed. Off by default: a killed process loses nothing
  anyway, only the OS crashing can.
- ``writemap`` (default True): writes through a writable memory map, about
  three times faster.
- ``map_size`` (default 8 MiB) and ``max_map_size`` (default: the free disk
  space): the map grows by doubling from one to the other.
- ``track_keys`` (default True): keep the index that makes ``random_key``
  cheap; without it writes are a little cheaper and ``random_key`` is O(n).

Opening at import is safe: nothing that cannot survive Locust's fork is
created before the first operation in each process. Opening the same path
again with other options raises KVOptionsConflictError.

Here users of both processes count orders in the shared store and write
each order's audit record to a second, durable store. After the load the
master checks that both stores agree and that both processes took part. A
failed check exits 1.
"""

from __future__ import annotations

import logging
import os

from locust import User, between, task

from locust_kv import open_kv
from locust_kv.errors import KVOptionsConflictError
from locust_kv.plugin import after_load, before_load

logger = logging.getLogger("examples.disk_options")

audit = open_kv(
    backend="disk",
    path=".locust-kv-examples/audit.lmdb",
    durable=True,
    map_size=64 << 20,
    max_map_size=1 << 30,
    track_keys=False,
)


@before_load.add_listener
def tour(environment, kv, **_kwargs):
    logger.info("the run's store: %s at %s, options %s", kv.backend, kv.location, kv.options)
    try:
        open_kv(backend="disk", path=".locust-kv-examples/audit.lmdb", durable=False)
    except KVOptionsConflictError as err:
        logger.info("as expected: %s", err)
    else:
        raise AssertionError("the audit store opened again with other options")
    audit.clear()


class Clerk(User):
    wait_time = between(0.005, 0.02)

    @task
    def take_order(self):
        order = self.environment.kv.increment_by("orders", 1)
        self.environment.kv.increment_by(f"orders:by-process:{os.getpid()}", 1)
        audit.set(f"order:{order:07d}", {"pid": os.getpid()})


@after_load.add_listener
def check(environment, kv, **_kwargs):
    orders = kv.get("orders") if kv.exists("orders") else 0
    by_process = {entry.key: entry.value for entry in kv.list(prefix="orders:by-process:")}
    audited = audit.size()
    wanted = getattr(environment.parsed_options, "processes", None) or 1
    checks = {
        f"{orders} orders counted, {audited} audited": orders == audited > 0,
        f"the processes' counts add up ({sum(by_process.values())})": sum(by_process.values()) == orders,
        f"{len(by_process)} processes took orders, expected {wanted}": len(by_process) == wanted,
    }
    failed = [name for name, ok in checks.items() if not ok]
    for name in failed:
        logger.error("check failed: %s", name)
    if failed:
        environment.process_exit_code = 1
    else:
        logger.info("all checks passed: %s", "; ".join(checks))
