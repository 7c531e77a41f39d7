"""The Locust plugin: one import gives every user of a run the shared store.

In a locustfile::

    import locust_kv.plugin  # noqa: F401  (enables the plugin)
    from locust import User, task

    class Buyer(User):
        @task
        def buy(self):
            order_id = self.environment.kv.increment_by("orders", 1)

Importing this module (and only this one: ``import locust_kv`` has no side
effects) adds the ``--kv-*`` options to Locust's parser, opens the run's store
in every process at ``events.init``, prepares it on the master or standalone
process (``--kv-clear``, ``--kv-restore-from``), backs it up after the load
(``--kv-backup-to``), reports KV operations when ``--kv-report`` is on, adds a
KV tab to the web UI, and closes the store at quit. It also gives Locust's
``Environment`` a ``kv`` attribute, which raises DatabaseNotOpenError for an
Environment the plugin did not open a store for.

A program that builds its own Environment calls :func:`register` after
creating the runner (and web UI), and :func:`shutdown` after the load.

See docs/locust-plugin.md for the options, the lifecycle and the statistics.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any, overload

import locust
from locust.env import Environment

from ..errors import DatabaseNotOpenError, KVError
from . import settings as _settings
from .lifecycle import ATTRIBUTE, Attachment, after_load, before_load, caught_kv_failures_only
from .settings import Settings

if TYPE_CHECKING:
    from ..store import KV

__all__ = ["Settings", "add_arguments", "after_load", "before_load", "register", "settings_of", "shutdown"]

logger = logging.getLogger("locust_kv.plugin")

add_arguments = _settings.add_arguments

_NOT_OPEN = (
    "the locust_kv plugin has not opened a store for this Environment (Locust opens it at "
    "events.init after `import locust_kv.plugin`; a program calls locust_kv.plugin.register)"
)


def register(environment: Environment, **options: Any) -> KV | None:
    """Attach the run's store to ``environment``; returns it (also ``environment.kv``).

    Options come from ``environment.parsed_options`` (the ``--kv-*`` command
    line options, ``LOCUST_KV_*`` environment variables and locust.conf keys);
    when it is None, from the environment variables and the defaults.
    Keyword ``options`` (``backend``, ``path``, ``redis_url``, ``namespace``, ``serialization``, ``clear``,
    ``restore_from``, ``restore_max_entries``, ``restore_max_bytes``,
    ``backup_to``, ``report``) override both. Create the runner and the web UI
    first: the runner decides the process's role and the KV tab needs the UI.

    Registering an Environment twice returns its store. On a worker it
    returns None: a worker opens the store the master's options name when the
    test starts, and proves it is the master's (see lifecycle). Raises the
    configuration errors (InvalidBackendError, InvalidOptionsError,
    MemoryBackendNotSharedError, DiskPathError...) and, when a restore is
    asked for, the snapshot errors.
    """
    attachment = _attachment(environment)
    if attachment is not None:
        return attachment.kv
    attachment = Attachment(environment, options)
    # Attached before it starts, so that before_load listeners (fired by start)
    # reach the store through environment.kv and settings_of(environment).
    setattr(environment, ATTRIBUTE, attachment)
    try:
        kv = attachment.start()
    except BaseException:
        environment.__dict__.pop(ATTRIBUTE, None)
        raise
    events = environment.events
    if events is not locust.events:
        # Locust's own events get these once, at import, so that they run before a locustfile's.
        events.test_start.add_listener(attachment.on_test_start)
        events.test_stop.add_listener(attachment.on_test_stop)
    # Registered now, after a locustfile's listeners: quitting runs in reverse, so the
    # plugin's wait for the users and after_load come before the locustfile's own.
    events.quitting.add_listener(attachment.on_quitting)
    events.quit.add_listener(attachment.on_quit)
    events.reset_stats.add_listener(attachment.on_reset_stats)
    events.report_to_master.add_listener(attachment.on_report_to_master)
    events.worker_report.add_listener(attachment.on_worker_report)
    if environment.web_ui is not None and attachment.coordinates:
        from .web import install

        install(attachment, environment.web_ui)
    return kv


def settings_of(environment: Environment) -> Settings:
    """The plugin's effective options for ``environment``'s store.

    Raises DatabaseNotOpenError when the plugin opened no store for it.
    """
    attachment = _attachment(environment)
    if attachment is None:
        raise DatabaseNotOpenError(_NOT_OPEN)
    return attachment.settings


def shutdown(environment: Environment) -> None:
    """End the run's store: fire after_load, write the backup, print the timings, close.

    Locust calls this itself (at ``quitting`` and ``quit``); a program that
    built its Environment calls it after its last user stopped.
    """
    attachment = _attachment(environment)
    if attachment is not None:
        attachment.finish_load()
        attachment.close()


def _attachment(environment: Environment) -> Attachment | None:
    return environment.__dict__.get(ATTRIBUTE)


# ---------------------------------------------------------------------------
# What `import locust_kv.plugin` does.


class _EnvironmentStore:
    """``Environment.kv``: the run's store, or DatabaseNotOpenError when the plugin opened none."""

    @overload
    def __get__(self, environment: None, owner: type | None = None) -> _EnvironmentStore: ...
    @overload
    def __get__(self, environment: Environment, owner: type | None = None) -> KV: ...
    def __get__(self, environment: Environment | None, owner: type | None = None) -> _EnvironmentStore | KV:
        if environment is None:
            return self
        attachment = _attachment(environment)
        if attachment is None:
            raise DatabaseNotOpenError(_NOT_OPEN)
        return attachment.store()


def _on_init_command_line_parser(parser: Any, **_kwargs: Any) -> None:
    _settings.add_arguments(parser)


_IMPORT_PID = os.getpid()
"""The process that imported the locustfile; ``--processes`` forks its workers from it."""

_SAME_IN_EVERY_PROCESS = frozenset(
    {"DiskPathError", "InvalidBackendError", "InvalidOptionsError", "InvalidSerializationError",
     "KVOptionsConflictError", "MemoryBackendNotSharedError"}
)
"""Errors a forked worker meets exactly as its master does: they depend on the options alone."""


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    try:
        register(environment)
    except KVError as error:
        # One line naming the error, then the same exit code as any failing init listener.
        if not _master_reports(environment, error):
            logger.error("%s (locust_kv: the test did not start)", error)
        _stop_forked_workers(environment)
        sys.exit(1)


def _stop_forked_workers(environment: Environment) -> None:
    """End the workers ``--processes`` forked, when their master stops before the test.

    A forked worker opens no store at init, so it would not fail with its
    master: it would wait a minute for a master that is gone, holding the
    run's output open. Only this process's children that run its own
    command line are ended: those are the forks.
    """
    options = environment.parsed_options
    if os.getpid() != _IMPORT_PID or not getattr(options, "processes", None) or getattr(options, "worker", False):
        return
    import psutil  # a dependency of Locust

    me = psutil.Process()
    command = me.cmdline()
    for child in me.children():
        try:
            if child.cmdline() == command:
                child.terminate()
        except psutil.Error:
            pass  # already gone


def _master_reports(environment: Environment, error: KVError) -> bool:
    """Whether this is a ``--processes`` worker whose master logs the same error (so one line shows)."""
    options = environment.parsed_options
    if os.getpid() == _IMPORT_PID or not getattr(options, "processes", None) or error.name not in _SAME_IN_EVERY_PROCESS:
        return False
    # The fork turned this process into a worker; the command line says what the parent is.
    # `locust --worker --processes N` has a parent that waits and logs nothing.
    from locust.argument_parser import get_parser

    original, _ = get_parser().parse_known_args()
    return not original.worker


def _on_test_start(environment: Environment, **kwargs: Any) -> None:
    attachment = _attachment(environment)
    if attachment is not None:
        attachment.on_test_start(**kwargs)


def _on_test_stop(environment: Environment, **kwargs: Any) -> None:
    attachment = _attachment(environment)
    if attachment is not None:
        attachment.on_test_stop(**kwargs)


def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """With ``--kv-report requests``, KV errors the locustfile caught never change the exit code.

    Registered when the plugin is imported, so before the locustfile's own
    listeners: quitting runs them in reverse, so this one runs after them
    and after the plugin's backup, and leaves an exit code any of them set.
    """
    attachment = _attachment(environment)
    if attachment is None or attachment.settings.report != "requests" or environment.process_exit_code is not None:
        return
    from locust import log

    if not log.unhandled_greenlet_exception and caught_kv_failures_only(environment):
        logger.info(
            "locust_kv: every failure of this run is a KV error the locustfile caught (--kv-report requests "
            "mirrors them into Locust's statistics); they do not change the exit code"
        )
        environment.process_exit_code = 0


if not hasattr(Environment, "kv"):
    # Locust's Environment declares no kv attribute: the plugin adds it.
    Environment.kv = _EnvironmentStore()  # type: ignore[attr-defined]
locust.events.init_command_line_parser.add_listener(_on_init_command_line_parser)
locust.events.init.add_listener(_on_init)
locust.events.test_start.add_listener(_on_test_start)
locust.events.test_stop.add_listener(_on_test_stop)
locust.events.quitting.add_listener(_on_quitting)
