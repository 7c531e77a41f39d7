"""The run's store through a Locust run: open, prepare, report, hand over, back up, close.

One :class:`Attachment` per Environment. What runs where:

==============================  =================  =================  ==================
step                            standalone         master             worker
==============================  =================  =================  ==================
open the store (events.init)    yes                yes                no: at test_start
clear / restore, before_load    yes, once          yes, once          no
write the run token             \\-                 yes, once          \\-
open the master's store, check  \\-                 \\-                 test_start
reporter (--kv-report)          yes                no (no users)      yes
users-stopped barrier           \\-                 test_stop          answers
release the users' leases       test_stop          \\-                 test_stop, barrier
after_load, backup              once, at quitting  once, at quitting  no
close                           quit               quit               quit
==============================  =================  =================  ==================

Decisions depend on the store's scope, never on the backend's name: a
``process`` store (memory) cannot serve a run of several processes; a
``host`` store (disk) or a ``network`` store (redis) can, if every worker
really reaches it, which the run token proves.

**No silent split.** A worker's options are replaced by the master's when a
test starts, so a worker opens nothing at init: at ``test_start`` it opens the
store the master's options name and reads the run token the master wrote into
a marker of that store (markers are outside the key space). The token itself
travels in a hidden option that Locust copies from the master to its workers.
A worker that cannot open the store, or reads another token (a disk path on
another host's filesystem, a Redis URL that reaches another server), refuses:
it logs StoreNotSharedError, makes ``environment.kv`` raise it, tells the
master, and quits with exit code 1; the master logs the refusal and ends the
run with exit code 1.

**After every user has stopped.** A headless master stops its workers with a
quit message and does not wait for their users, and once it quits it can no
longer receive messages. So when the master's test stops (``test_stop``,
which Locust fires while the runner still listens), it asks every connected
worker to stop its users and waits for each one's answer, with Locust's own
master-worker messages: this works whatever host a worker is on. A worker
that is missing or gone is not waited for; one that does not answer within
the stop timeout plus a margin makes the run exit 1, since a backup may then
miss its last writes.

This module is over 500 lines: the steps above share one state (the
store, the settings, the role, the run token, the statistics) and their
order is the point, so :class:`Attachment` is read as one; the web UI
(:mod:`.web`, :mod:`.form`), the options (:mod:`.settings`), the leases
(:mod:`.leases`) and the statistics (:mod:`.timings`) are apart.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

import gevent
from locust.event import EventHook
from locust.runners import STATE_CLEANUP, STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from ..errors import (
    BackupInProgressError,
    DatabaseNotOpenError,
    KVError,
    MemoryBackendNotSharedError,
    RestoreInProgressError,
    StoreNotSharedError,
)
from .. import snapshot
from ..options import scope_of
from ..store import KV, open_kv, open_stores, read_marker, set_reporter, write_marker
from . import settings as settings_module
from .form import STARTUP_FIELDS, STORE_FIELDS, fixed_changes
from .leases import UserLeases
from .settings import RUN_TOKEN_DEST, Settings
from .timings import Timings

REQUEST_TYPE = "KV"
"""Locust's request type of the KV operations ``--kv-report requests`` mirrors."""

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

_FIXED_FIELDS = (*STORE_FIELDS, *STARTUP_FIELDS)
"""Options that act when the process starts; the web UI's form cannot change them afterwards (see form)."""

_USERS_STOPPED_TIMEOUT = 60.0
"""Seconds past the stop timeout the master waits for workers' users to stop before the backup."""

_NOT_YET = (
    "a worker opens the run's store when the test starts (the master's options name it), "
    "so environment.kv is there from test_start on"
)

RUN_MARKER = "run"
"""The store marker holding the master's run token."""

STOP_USERS = "locust_kv_stop_users"
USERS_STOPPED = "locust_kv_users_stopped"
REFUSED = "locust_kv_refused"
"""The plugin's master-worker messages: the end-of-run barrier, and a worker's refusal."""

_PINNED = ("path", "namespace")
"""Settings the master replaces with the store's own description of them (an absolute path),
so that a worker started elsewhere names the same store."""


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
        self.started = self.settings
        """The options this process started with (on a worker, its own, before the master's replace them)."""
        self.role = role_of(environment.runner)
        self.kv: KV | None = None
        self.timings = Timings()
        self.leases = UserLeases()
        """This process's users' leases on the store, released when a user stops (see leases.py)."""
        self.refusal: StoreNotSharedError | None = None
        """Set on a worker that cannot reach the master's store: ``environment.kv`` raises it."""
        self._opened_with: dict[str, Any] | None = None  # a worker's store options
        self._verified: tuple[dict[str, Any], str] | None = None  # (store options, token) a worker checked
        self._pending: set[str] = set()  # workers the master waits for at the end of a test
        self._clean = False  # cleared or restored at start-up, and no test has run since
        self._replaced: tuple[str, ...] = ()  # a worker's own options the master's replaced, as last logged
        self._finished = False
        self._closed = False
        self._purger: gevent.Greenlet | None = None  # the background purge of expired keys (coordinating process)
        self._purging: tuple[KV | None, float] = (None, 0.0)  # the store and interval it purges

    def _read(self) -> Settings:
        return settings_module.read(self.environment.parsed_options, **self.overrides)

    @property
    def coordinates(self) -> bool:
        """Whether this process prepares the store and backs it up (master or standalone)."""
        return self.role != "worker"

    # -- start-up ----------------------------------------------------------

    def start(self) -> KV | None:
        """Open the store and, on the master or standalone process, prepare it.

        A worker opens nothing here: the master's options, which Locust
        copies to it when a test starts, name its store (``on_test_start``).

        Raises MemoryBackendNotSharedError in a run of several processes with
        a process-scoped store, the store's configuration errors, and the
        snapshot errors of a failed restore.
        """
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(USERS_STOPPED, self._on_users_stopped)
            runner.register_message(REFUSED, self._on_refused)
        elif isinstance(runner, WorkerRunner):
            runner.register_message(STOP_USERS, self._on_stop_users, concurrent=True)
            if scope_of(self.settings.backend) == "process":
                raise self._private_store_refusal(self.settings.backend)
            _refuse_memory_stores()
            return None
        self.kv = open_kv(**self.settings.store_options())
        self.leases.attach(self.kv)
        try:
            # A backend may open its files on first use; use it now, so that a bad path or a
            # foreign file stops the run here rather than in the first user's task.
            KV.size(self.kv)
            if self.role != "standalone":
                if self.kv.scope == "process":
                    raise self._private_store_refusal(self.kv.backend)
                _refuse_memory_stores()
                self._pin_location()
            if self.coordinates:
                self._prepare()
                self._clean = self.settings.clear or self.settings.restore_from is not None
            if self.role == "master":
                token = secrets.token_hex(16)
                write_marker(self.kv, RUN_MARKER, token)
                self._set_option(RUN_TOKEN_DEST, token)
            self._apply_reporting()
        except BaseException:
            self.leases.detach(self.kv)
            self.kv.close()
            self.kv = None
            raise
        return self.kv

    def _private_store_refusal(self, backend: str) -> MemoryBackendNotSharedError:
        return MemoryBackendNotSharedError(
            f"--kv-backend {backend} keeps one store per process, but this is a {self.role} of a run with "
            "several processes; use --kv-backend disk (one host) or redis (several hosts)"
        )

    def _set_option(self, dest: str, value: Any) -> None:
        options = self.environment.parsed_options
        if options is not None:
            setattr(options, dest, value)

    def _pin_location(self) -> None:
        """Replace relative store options with the store's own description (an absolute path).

        A relative ``--kv-path`` (or the default) would name another file in
        a worker started from another directory; the master's options reach
        the workers with the absolute path instead.
        """
        assert self.kv is not None
        described = self.kv.options
        pinned = {name: described[name] for name in _PINNED if name in described}
        self.settings = self.settings.replace(**pinned)
        for name, value in pinned.items():
            self._set_option(settings_module.option(name).dest, value)

    def _prepare(self) -> None:
        kv, settings = self.kv, self.settings
        assert kv is not None
        if settings.backup_to is not None:
            # Before the load, not after it: a backup over the store's own file would destroy it.
            snapshot.check_target(os.path.abspath(settings.backup_to))
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
        assert self.kv is not None
        reporter = None
        if self.settings.reporting and self.role != "master":
            # kv: the plugin's own statistics alone, straight into them (one call per operation).
            reporter = self._report_requests if self.settings.report == "requests" else self.timings.record
        set_reporter(self.kv, reporter)

    def _report_requests(self, operation: str, seconds: float, error: Exception | None) -> None:
        """``--kv-report requests``: the plugin's statistics, and a Locust request of type KV."""
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=operation,
            response_time=seconds * 1000.0,
            response_length=0,
            exception=error,
            context={},
        )
        self.timings.record(operation, seconds, error)

    # -- test start and stop -------------------------------------------------

    def on_test_start(self, **_kwargs: Any) -> None:
        wanted = self._read()
        if self.role == "worker":
            self._follow_master(wanted)
        else:
            self._keep_startup_options(wanted)
            self._start_purger()
        self.timings.reset()

    # -- the background purge of expired keys ----------------------------------

    def _start_purger(self) -> None:
        """Start the purge greenlet once, on the master or standalone process, if ``--kv-purge-interval`` asks for it."""
        wanted = (self.kv, self.settings.purge_interval)
        if self._purger is not None and not self._purger.dead and self._purging == wanted:
            return
        self._stop_purger()
        if self.kv is not None and self.settings.purge_interval > 0:
            self._purging = wanted
            self._purger = gevent.spawn(self._purge_forever, *wanted)

    def _purge_forever(self, kv: KV, interval: float) -> None:
        """Every ``interval`` seconds, remove the store's expired keys in short steps, until the store closes.

        Called unbound (``KV.purge_expired``), so that it is never timed as
        a user's operation. A failure is logged and the next round tries
        again: expired keys are absent whether or not they are purged.
        """
        while not kv.closed:
            gevent.sleep(interval)
            if kv.closed:
                return
            try:
                removed = KV.purge_expired(kv)
            except (BackupInProgressError, RestoreInProgressError) as error:
                logger.debug("locust_kv: the background purge waits for a backup or restore: %s", error)
                continue
            except KVError as error:
                logger.warning("locust_kv: the background purge of expired keys failed: %s", error)
                continue
            if removed:
                logger.debug("locust_kv: purged %d expired keys", removed)

    def _stop_purger(self) -> None:
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.kill(block=False)

    def _follow_master(self, wanted: Settings) -> None:
        """Open the store the master's options name and prove it is the master's, or refuse."""
        if self.refusal is not None:
            return
        started = time.monotonic()
        token = getattr(self.environment.parsed_options, RUN_TOKEN_DEST, None)
        options = wanted.store_options()
        self.settings = wanted
        self._log_replaced(wanted)
        if self._verified == (options, token):
            self._apply_reporting()
            return
        try:
            if self.kv is None or options != self._opened_with:
                previous, self.kv = self.kv, None
                if previous is not None:
                    self._close_store(previous)
                self.kv = open_kv(**options)
                self.leases.attach(self.kv)
                self._opened_with = options
            seen = read_marker(self.kv, RUN_MARKER)
        except KVError as error:
            self._refuse(
                f"this worker cannot open the master's store ({error}); every process of a distributed "
                "run must reach one store: use --kv-backend redis --kv-redis-url with a server every host reaches",
                error,
            )
            return
        if token is None or seen != token:
            self._refuse(
                f"this worker opened {self.kv.location!r}, but it is not the store the master prepared (the run "
                "token differs): the worker is on another host, or reaches another server. Use --kv-backend "
                "redis --kv-redis-url with the address of one server that every host reaches",
                None,
            )
            return
        self._verified = (options, token)
        described = ", ".join(f"{k}={v!r}" for k, v in self.kv.options.items())
        logger.info(
            "locust_kv: using the master's store (%s), checked by its run token in %.0f ms",
            described, (time.monotonic() - started) * 1000,
        )  # fmt: skip
        self._apply_reporting()

    def _log_replaced(self, wanted: Settings) -> None:
        """On a worker: one INFO line naming the options it was started with that the master's replace."""
        replaced = tuple(
            o.field for o in settings_module.OPTIONS
            if getattr(self.started, o.field) != o.default and getattr(self.started, o.field) != getattr(wanted, o.field)
        )  # fmt: skip
        if not replaced or replaced == self._replaced:
            return
        self._replaced = replaced

        def shown(settings: Settings, field: str) -> str:
            option = settings_module.option(field)
            value = getattr(settings, field)
            if option.secret and value is not None:
                return "(hidden)"
            return "(default)" if value is None else repr(value)

        logger.info(
            "locust_kv: the master's options replace this worker's own: %s",
            "; ".join(
                f"{settings_module.option(f).flag} {shown(self.started, f)} -> {shown(wanted, f)}" for f in replaced
            ),
        )

    def store(self) -> KV:
        """The run's store, for ``environment.kv``.

        On a worker whose test started before it got here (Locust can hand a
        worker its first spawn message while the worker's init listeners
        still run), the master's store is opened and checked now. Raises the
        worker's refusal (StoreNotSharedError), or DatabaseNotOpenError on a
        worker before its test starts.
        """
        if self.refusal is not None:
            raise self.refusal
        if self.kv is None and self.role == "worker":
            if getattr(self.environment.parsed_options, RUN_TOKEN_DEST, None) is not None:
                self._follow_master(self._read())
                if self.refusal is not None:
                    raise self.refusal
        if self.kv is None:
            raise DatabaseNotOpenError(_NOT_YET)
        return self.kv

    def _refuse(self, message: str, cause: KVError | None) -> None:
        """Run no user against a store that is not the master's: tell the master, and quit with exit code 1."""
        refusal = StoreNotSharedError(message)
        refusal.__cause__ = cause
        self.refusal = refusal
        if self.kv is not None:
            self._close_store(self.kv)
            self.kv = None
        logger.error("%s (locust_kv: this worker runs no users)", refusal)
        self.environment.process_exit_code = 1
        runner = self.environment.runner
        if runner is not None:
            runner.send_message(REFUSED, {"error": str(refusal)})
            # Outside the runner's greenlets: quitting kills them, this one included.
            gevent.spawn(runner.quit)

    def _on_refused(self, environment: Environment, msg: Any, **_kwargs: Any) -> None:
        """On the master: a worker refused the run's store; end the run with exit code 1."""
        logger.error("locust_kv: worker %s refused the run: %s", msg.node_id, msg.data.get("error"))
        self.environment.process_exit_code = 1
        runner = self.environment.runner
        if runner is not None:
            headless = bool(getattr(self.environment.parsed_options, "headless", False))
            gevent.spawn(runner.quit if headless else runner.stop)

    def _keep_startup_options(self, wanted: Settings) -> None:
        """Apply the options a test start may change; keep those that acted at start-up.

        The web UI's form was checked before the test started (form.check
        refuses a change of the fixed options), but Locust wrote its fields
        into parsed_options as text: the effective values go back there, so
        that workers get them (the absolute path, not the form's blank field).
        A change that did not come through the form (a program editing
        parsed_options) is logged and undone.
        """
        try:
            changed = fixed_changes(self, wanted)
        except KVError as error:
            logger.warning("locust_kv: the options of this test are not valid (%s); the store keeps its own", error)
            changed = list(_FIXED_FIELDS)
        if changed:
            flags = ", ".join(settings_module.option(f).flag for f in changed)
            logger.warning("locust_kv: %s act when Locust starts; the values set for this test are ignored", flags)
        options = self.environment.parsed_options
        if options is not None:
            for field in _FIXED_FIELDS:
                setattr(options, settings_module.option(field).dest, getattr(self.settings, field))
        self.apply(wanted)
        if wanted.clear and not self._clean and self.kv is not None:
            # Untimed (the base method): the plugin's own work is not a user's operation.
            KV.clear(self.kv)
            logger.info("locust_kv: cleared the store before this test (--kv-clear, or kv_clear in the start form)")
        self._clean = False
        self._apply_reporting()

    def apply(self, wanted: Settings) -> None:
        """Take the options that may change between tests (or, the mask and the backup, during one)."""
        self.settings = self.settings.replace(
            clear=wanted.clear, report=wanted.report, backup_to=wanted.backup_to, mask_prefix=wanted.mask_prefix
        )

    def on_test_stop(self, **_kwargs: Any) -> None:
        # Every user of this process has stopped: the leases they left go back to the pool now.
        self.leases.settle()
        if self.role == "master":
            self._wait_for_workers_users()

    # -- the end-of-run barrier ------------------------------------------------

    def _wait_for_workers_users(self) -> None:
        """On the master: ask each connected worker to stop its users, and wait for every answer."""
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return
        self._pending = {client.id for client in runner.clients.all if client.state != STATE_MISSING}
        for client_id in list(self._pending):
            runner.send_message(STOP_USERS, None, client_id=client_id)
        timeout = (self.environment.stop_timeout or 0.0) + _USERS_STOPPED_TIMEOUT
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            gevent.sleep(0.05)
            # A worker that quit or went missing has no users left to wait for.
            self._pending = {
                client_id for client_id in self._pending
                if client_id in runner.clients and runner.clients[client_id].state != STATE_MISSING
            }  # fmt: skip
        if self._pending:
            logger.error(
                "locust_kv: %d worker(s) did not report their users stopped within %.0f s; after_load and the "
                "backup may miss their last writes (exit code 1)", len(self._pending), timeout,
            )  # fmt: skip
            self.environment.process_exit_code = 1
            self._pending = set()

    def _on_users_stopped(self, environment: Environment, msg: Any, **_kwargs: Any) -> None:
        self._pending.discard(msg.node_id)

    def _on_stop_users(self, environment: Environment, msg: Any, **_kwargs: Any) -> None:
        """On a worker: stop every user (waiting for them as Locust does), then tell the master."""
        runner = self.environment.runner
        if runner is None:
            return
        if runner.state in (STATE_SPAWNING, STATE_RUNNING):
            runner.stop()
        while runner.state == STATE_CLEANUP:  # Locust's own stop message is stopping them meanwhile
            gevent.sleep(0.05)
        # Locust's stop sets STOPPED before firing test_stop: make sure the leases are back either way.
        self.leases.settle()
        runner.send_message(USERS_STOPPED, None)

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
        self.timings.finish()
        self.leases.settle()
        after_load.fire(environment=self.environment, kv=self.kv)
        self.settings = self.settings.replace(backup_to=self._read().backup_to)
        if self.settings.backup_to is not None:
            try:
                # KV.backup, not self.kv.backup: the plugin's own work is not a user's operation to report.
                summary = KV.backup(self.kv, self.settings.backup_to)
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
            # Stopping fires test_stop, where a master waits for every worker's users.
            runner.stop()

    def on_quitting(self, **_kwargs: Any) -> None:
        self.finish_load()
        if self.coordinates and self.settings.reporting:
            self._add_to_html_report()

    def _add_to_html_report(self) -> None:
        """Put the KV statistics into the ``--html`` report Locust wrote when the load ended."""
        path = getattr(self.environment.parsed_options, "html_file", None)
        if not path or not os.path.isfile(path):
            return
        try:
            with open(path, encoding="utf-8") as file:
                page = file.read()
            with open(path, "w", encoding="utf-8") as file:
                file.write(with_kv_section(page, self.timings))
        except OSError as error:
            logger.error("locust_kv: could not add the KV statistics to the HTML report %s: %s", path, error)

    def on_quit(self, **_kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """Print the KV timings (master or standalone) and close the store. Runs once."""
        if self._closed:
            return
        self._closed = True
        if self.coordinates and self.timings:
            self._write_timings()
        self._stop_purger()
        if self.kv is not None:
            self._close_store(self.kv)

    def _close_store(self, kv: KV) -> None:
        """Release the users' leases on ``kv``, stop reporting and binding, and close it."""
        self.leases.release_all()
        self.leases.detach(kv)
        set_reporter(kv, None)
        kv.close()

    def _write_timings(self) -> None:
        options = self.environment.parsed_options
        csv_prefix = getattr(options, "csv_prefix", None)
        json_file = getattr(options, "json_file", None)
        if csv_prefix:
            with open(f"{csv_prefix}_kv_stats.csv", "w", encoding="utf-8", newline="") as out:
                out.write(self.timings.csv_text())
            with open(f"{csv_prefix}_kv_failures.csv", "w", encoding="utf-8", newline="") as out:
                out.write(self.timings.failures_csv_text())
        if json_file:
            with open(f"{json_file}_kv.json", "w", encoding="utf-8") as out:
                out.write(self.timings.json_text())
        else:  # Locust prints its own tables unless --json-file is given; ours follow them.
            console = logging.getLogger("locust.stats_logger")
            for line in self.timings.table():
                console.info(line)


def with_kv_section(page: str, timings: Timings) -> str:
    """``page`` (a Locust HTML report) with the KV statistics as a section at the end of its body."""
    section = timings.html_section()
    end = page.rfind("</body>")
    return page[:end] + section + page[end:] if end >= 0 else page + section


def caught_kv_failures_only(environment: Environment) -> bool:
    """Whether every failure Locust counted is a KV operation's (``--kv-report requests``), with no exception.

    A KV error a locustfile caught is an outcome it expected; mirrored into
    Locust's statistics it would still make Locust exit 1. An error a task
    did not catch is in Locust's exceptions too, and keeps its exit code.
    """
    runner = environment.runner
    if runner is None or runner.exceptions:
        return False
    errors = runner.stats.errors.values()
    return bool(errors) and all(error.method == REQUEST_TYPE for error in errors)


def _refuse_memory_stores() -> None:
    """Raise MemoryBackendNotSharedError if a locustfile opened a process-scoped store (at import, before a fork)."""
    handles = open_stores()
    try:
        private = [kv for kv in handles if kv.scope == "process"]
        if private:
            raise MemoryBackendNotSharedError(
                f"the locustfile opened a {private[0].backend} store, which each process of this run would hold "
                'separately; open it with backend="disk" (one host) or backend="redis" (several hosts)'
            )
    finally:
        for kv in handles:
            kv.close()
