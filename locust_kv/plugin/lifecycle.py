"""The run's store through a Locust run: open, prepare, report, hand over, back up, close.

One :class:`Attachment` per Environment. What runs where:

============================  ======================  ==================  ===========
step                          standalone              master              worker
============================  ======================  ==================  ===========
open the store (events.init)  yes                     yes                 yes
clear / restore, before_load  yes, once               yes, once           no
reporter (--kv-report)        yes                     no (no users)       yes
follow the master's options   \\-                      \\-                  test_start
after_load, backup            once, at quitting       once, at quitting   no
close                         quit                    quit                quit
============================  ======================  ==================  ===========

A worker's options are replaced by the master's when a test starts, so at
``test_start`` a worker reopens its store if the master's store options
differ from its own, and takes the master's reporting switch.

"After every user has stopped" on the master needs more than Locust's own
events: a headless master stops its workers with a quit message and does not
wait for their users. So each worker process on the host holds a shared
``flock`` on a file beside the disk store while it has users, and the master
takes the lock exclusively before ``after_load`` and the backup. The kernel
drops the lock of a process that dies, so a crashed worker cannot hold it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import gevent
from locust.event import EventHook
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from ..errors import KVError, MemoryBackendNotSharedError
from ..store import KV, open_kv, open_stores, set_reporter
from . import settings as settings_module
from .settings import Settings
from .timings import Timings

try:
    import fcntl
except ImportError:  # Windows: Locust runs no --processes there; workers on one host get no guarantee
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import Runner

__all__ = ["ATTRIBUTE", "Attachment", "after_load", "before_load"]

logger = logging.getLogger("locust_kv.plugin")

ATTRIBUTE = "_locust_kv_attachment"
"""Where an Environment keeps its Attachment."""

before_load = EventHook()
"""Fired once in the master or standalone process when the store is ready and
prepared (cleared, restored) and before any user starts: seed data here.
Listeners get ``environment`` and ``kv``."""

after_load = EventHook()
"""Fired once in the master or standalone process after every user of the run
has stopped, before the backup: check invariants here. Listeners get
``environment`` and ``kv``."""

_STARTUP_FIELDS = ("backend", "path", "serialization", "restore_from", "restore_max_entries", "restore_max_bytes", "clear")
"""Options that act when the process starts; the web UI's form cannot change them afterwards."""

_USERS_STOPPED_TIMEOUT = 60.0
"""Seconds past the stop timeout the master waits for workers' users to stop before the backup."""


def role_of(runner: Runner | None) -> str:
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "standalone"


class Attachment:
    """The run's store, attached to one Environment; see the module docstring."""

    def __init__(self, environment: Environment, overrides: dict[str, Any]) -> None:
        self.environment = environment
        self.overrides = overrides
        """Options given to ``register``; they hold over parsed_options all run long."""
        self.settings = self._read()
        self.role = role_of(environment.runner)
        self.kv: KV | None = None
        self.timings = Timings()
        self._users_lock: _UsersLock | None = None
        self._finished = False
        self._closed = False

    def _read(self) -> Settings:
        return settings_module.read(self.environment.parsed_options, **self.overrides)

    @property
    def coordinates(self) -> bool:
        """Whether this process prepares the store and backs it up (master or standalone)."""
        return self.role != "worker"

    # -- start-up ----------------------------------------------------------

    def start(self) -> KV:
        """Open the store and, on the master or standalone process, prepare it.

        Raises MemoryBackendNotSharedError in a run of several processes with
        a memory store, the store's configuration errors, and the snapshot
        errors of a failed restore.
        """
        if self.role != "standalone" and self.settings.backend == "memory":
            raise MemoryBackendNotSharedError(
                f"--kv-backend memory keeps one store per process, but this is a {self.role} of a run with "
                "several processes; use --kv-backend disk to share one store by every process on this host"
            )
        self.kv = open_kv(**self.settings.store_options())
        try:
            # A backend may open its files on first use; use it now, so that a bad path or a
            # foreign file stops the run here rather than in the first user's task.
            KV.size(self.kv)
            self._pin_location()
            if self.role != "standalone":
                _refuse_memory_stores()
            if self.coordinates:
                self._prepare()
            self._apply_reporting()
        except BaseException:
            self.kv.close()
            self.kv = None
            raise
        return self.kv

    def _pin_location(self) -> None:
        """Record the disk store's absolute path as the path option.

        A relative ``--kv-path`` (or the default) would name another file in
        a worker started from another directory; the master's options reach
        the workers with the absolute path instead.
        """
        if self.kv.backend != "disk":
            return
        self.settings = self.settings.replace(path=self.kv.location)
        options = self.environment.parsed_options
        if options is not None and hasattr(options, settings_module.option("path").dest):
            setattr(options, settings_module.option("path").dest, self.kv.location)

    def _prepare(self) -> None:
        kv, settings = self.kv, self.settings
        assert kv is not None
        if settings.restore_from is not None:
            # A restore replaces the whole dataset, so --kv-clear has nothing left to do.
            summary = kv.restore(
                settings.restore_from,
                max_entries=settings.restore_max_entries,
                max_bytes=settings.restore_max_bytes,
            )
            logger.info("locust_kv: restored %d entries from %s", summary.total_entries, settings.restore_from)
        elif settings.clear:
            kv.clear()
            logger.info("locust_kv: cleared the store (--kv-clear)")
        before_load.fire(environment=self.environment, kv=kv)

    def _apply_reporting(self) -> None:
        # The master runs no users; its reads for the web UI must not count as load.
        reporting = self.settings.report and self.role != "master"
        set_reporter(self.kv, self._report if reporting else None)

    def _report(self, operation: str, seconds: float, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="KV",
            name=operation,
            response_time=seconds * 1000.0,
            response_length=0,
            exception=error,
            context={},
        )
        self.timings.record(operation, seconds, error is not None)

    # -- test start and stop -------------------------------------------------

    def on_test_start(self, **_kwargs: Any) -> None:
        wanted = self._read()
        if self.role == "worker":
            self._follow_master(wanted)
            self._hold_users_lock()
        else:
            self._keep_startup_options(wanted)
        self.timings.reset()

    def _follow_master(self, wanted: Settings) -> None:
        """Take the master's options, which Locust copied over this worker's own."""
        reopen = wanted.store_options() != self.settings.store_options()
        self.settings = wanted
        if reopen:
            previous = self.kv
            self.kv = open_kv(**wanted.store_options())
            if previous is not None:
                set_reporter(previous, None)
                previous.close()
            self._release_users_lock()
            self._pin_location()
            described = ", ".join(f"{k}={v!r}" for k, v in wanted.store_options().items())
            logger.info("locust_kv: using the master's store (%s)", described)
        self._apply_reporting()

    def _keep_startup_options(self, wanted: Settings) -> None:
        """Undo web-UI edits of options that acted at start-up, so that workers get the effective ones."""
        changed = [f for f in _STARTUP_FIELDS if getattr(wanted, f) != getattr(self.settings, f)]
        if changed:
            flags = ", ".join(settings_module.option(f).flag for f in changed)
            logger.warning("locust_kv: %s act when Locust starts; the values set in the web UI are ignored", flags)
            options = self.environment.parsed_options
            if options is not None:
                for field in changed:
                    setattr(options, settings_module.option(field).dest, getattr(self.settings, field))
        self.settings = self.settings.replace(report=wanted.report, backup_to=wanted.backup_to)
        self._apply_reporting()

    def on_test_stop(self, **_kwargs: Any) -> None:
        if self.role == "worker":
            self._release_users_lock()

    def _hold_users_lock(self) -> None:
        if self._users_lock is None and self.kv is not None and self.kv.backend == "disk":
            self._users_lock = _UsersLock.for_store(self.kv)
            if self._users_lock is not None:
                self._users_lock.hold_shared()

    def _release_users_lock(self) -> None:
        if self._users_lock is not None:
            self._users_lock.close()
            self._users_lock = None

    # -- statistics ------------------------------------------------------------

    def on_report_to_master(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if self.timings:
            data["locust_kv_timings"] = self.timings.take()

    def on_worker_report(self, data: dict[str, Any], **_kwargs: Any) -> None:
        wire = data.get("locust_kv_timings")
        if wire:
            self.timings.merge(wire)

    def on_reset_stats(self, **_kwargs: Any) -> None:
        self.timings.reset()

    # -- end of the run --------------------------------------------------------

    def finish_load(self) -> None:
        """Once every user has stopped: fire after_load and write the backup (master or standalone).

        Runs once; later calls do nothing. A failed backup is logged on one
        line and makes the run exit 1.
        """
        if self._finished or not self.coordinates or self.kv is None:
            return
        self._finished = True
        self._wait_for_users_to_stop()
        after_load.fire(environment=self.environment, kv=self.kv)
        self.settings = self.settings.replace(backup_to=self._read().backup_to)
        if self.settings.backup_to is not None:
            try:
                summary = self.kv.backup(self.settings.backup_to)
            except KVError as error:
                logger.error("locust_kv: backup to %s failed: %s", self.settings.backup_to, error)
                self.environment.process_exit_code = 1
            else:
                logger.info(
                    "locust_kv: backed up %d entries to %s", summary.total_entries, self.settings.backup_to
                )

    def _wait_for_users_to_stop(self) -> None:
        runner = self.environment.runner
        if runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING):
            runner.stop()  # the master's stop asks the workers and waits for their users
        if self.role == "master" and self.kv.backend == "disk":
            lock = _UsersLock.for_store(self.kv)
            if lock is not None:
                timeout = (self.environment.stop_timeout or 0.0) + _USERS_STOPPED_TIMEOUT
                if not lock.wait_exclusive(timeout):
                    logger.warning(
                        "locust_kv: workers' users still running after %.0f s; the backup may miss their last writes",
                        timeout,
                    )
                lock.close()

    def on_quitting(self, **_kwargs: Any) -> None:
        self.finish_load()

    def on_quit(self, **_kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Print the KV timings (master or standalone) and close the store. Runs once."""
        if self._closed:
            return
        self._closed = True
        if self.coordinates and self.timings:
            self._write_timings()
        self._release_users_lock()
        if self.kv is not None:
            set_reporter(self.kv, None)
            self.kv.close()

    def _write_timings(self) -> None:
        options = self.environment.parsed_options
        csv_prefix = getattr(options, "csv_prefix", None)
        json_file = getattr(options, "json_file", None)
        if csv_prefix:
            with open(f"{csv_prefix}_kv_stats.csv", "w", encoding="utf-8", newline="") as out:
                out.write(self.timings.csv_text())
        if json_file:
            with open(f"{json_file}_kv.json", "w", encoding="utf-8") as out:
                out.write(self.timings.json_text())
        else:  # Locust prints its own tables unless --json-file is given; ours follow them.
            console = logging.getLogger("locust.stats_logger")
            for line in self.timings.table():
                console.info(line)


def _refuse_memory_stores() -> None:
    """Raise MemoryBackendNotSharedError if a locustfile opened a memory store (at import, before a fork)."""
    handles = open_stores()
    try:
        memory = [kv for kv in handles if kv.backend == "memory"]
        if memory:
            raise MemoryBackendNotSharedError(
                "the locustfile opened a memory store, which each process of this run would hold "
                'separately; open it with backend="disk" to share one store by every process on this host'
            )
    finally:
        for kv in handles:
            kv.close()


class _UsersLock:
    """A lock file beside a disk store: shared while a worker has users, exclusive for the master's backup."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def for_store(cls, kv: KV) -> _UsersLock | None:
        if fcntl is None:
            return None
        path = f"{kv.location}.users.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            logger.warning("locust_kv: cannot open %s (%s); the backup will not wait for workers' users", path, error)
            return None
        return cls(fd)

    def hold_shared(self) -> None:
        # Only a master taking its backup holds the lock exclusively, for moments.
        self._wait(fcntl.LOCK_SH, _USERS_STOPPED_TIMEOUT)

    def wait_exclusive(self, timeout: float) -> bool:
        return self._wait(fcntl.LOCK_EX, timeout)

    def _wait(self, mode: int, timeout: float) -> bool:
        # Polled rather than blocking: a blocking flock would freeze every greenlet of the process.
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                gevent.sleep(0.05)

    def close(self) -> None:
        os.close(self._fd)  # closing the descriptor releases the lock
