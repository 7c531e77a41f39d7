"""The plugin's options: one table, read from the command line, ``LOCUST_KV_*``
environment variables, locust.conf keys and the web UI's form.

Every option is defined once in :data:`OPTIONS`; :func:`add_arguments` turns
the table into an argument group of Locust's parser and :func:`read` turns a
parsed namespace (or ``None``, for an Environment built without Locust's
parser) into validated :class:`Settings`. Values are checked here and not by
argparse, so that a wrong value stops the run with a catalogued error name
(InvalidBackendError, InvalidOptionsError...) whichever way it was given.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidOptionsError
from ..options import DEFAULT_SERIALIZATION

if TYPE_CHECKING:
    import configargparse

__all__ = ["OPTIONS", "Option", "Settings", "add_arguments", "option", "read"]

DEFAULT_BACKEND: Final = "disk"
"""The plugin's default backend. Disk, like ``open_kv``'s: it is the one that
works in every topology (standalone, ``--processes``, master and workers on
one host), and a locustfile's own ``open_kv()`` with default options then
reaches the same store as ``environment.kv``."""

REPORT_MODES: Final = ("off", "kv", "requests")
"""The values of ``--kv-report``: no KV statistics, a KV table of their own, or that table and Locust's request statistics too."""

RUN_TOKEN_DEST: Final = "kv_run_token"
"""A hidden option: the master's run token, which Locust copies to every worker
with the master's options when a test starts (see lifecycle)."""


@dataclass(frozen=True)
class Option:
    """One plugin option: its ``Settings`` field, kind, default and help."""

    field: str
    kind: type
    default: Any
    metavar: str | None
    help: str
    secret: bool = False
    """Shown masked in the web UI and never logged (a password may be in it)."""
    choices: tuple[str, ...] = ()
    """For a ``str`` option: the values it takes (the web UI shows a list)."""
    bare: str | None = None
    """For an option with ``choices``: the value of the flag given without one."""

    @property
    def flag(self) -> str:
        return "--kv-" + self.field.replace("_", "-")

    @property
    def dest(self) -> str:
        return "kv_" + self.field

    @property
    def env_var(self) -> str:
        return "LOCUST_KV_" + self.field.upper()


OPTIONS: Final[tuple[Option, ...]] = (
    Option("backend", str, DEFAULT_BACKEND, "<name>", 'Store backend: "disk" (LMDB, shared by every process on this host), "redis" (a Redis server, shared by every host of the run) or "memory" (one process only). Default: disk.'),
    Option("path", str, None, "<file>", "Disk store file. Default: .locust-kv.lmdb in the working directory. Only with the disk backend."),
    Option("redis_url", str, None, "<url>", "Redis server of the redis backend: redis://[[user]:password@]host[:port][/db], rediss:// for TLS. Default: redis://127.0.0.1:6379/0. Use an address every host of the run reaches. Never logged nor shown. Only with the redis backend.", secret=True),
    Option("namespace", str, None, "<name>", 'Namespace of the store on the Redis server (several stores can share one server). Default: "default". Only with the redis backend.'),
    Option("serialization", str, DEFAULT_SERIALIZATION, "<name>", 'Value encoding: "json" or "string". Default: json.'),
    Option("max_keys", int, 0, "<n>", "Quota: refuse, with QuotaExceededError, a write that would store more keys than this; deletes, pops and claims always work. Every process of the run enforces it (0: no limit)."),
    Option("max_bytes", int, 0, "<n>", "Quota: refuse, with QuotaExceededError, a write that would store more data than this: key+value bytes (memory, redis), the pages of the entries' database (disk). 0: no limit."),
    Option("purge_interval", float, 1.0, "<seconds>", "Seconds between two background purges of expired keys by the master or standalone process (in short steps that never hold up the users); 0: none, writes still remove a few on their way. Expired keys are absent for every operation whether or not they were purged. Default: 1."),
    Option("restore_from", str, None, "<snapshot>", "Snapshot to restore once, before any user starts (on the master or standalone process)."),
    Option("restore_max_entries", int, 0, "<n>", "Refuse a snapshot with more entries than this (0: no cap)."),
    Option("restore_max_bytes", int, 0, "<n>", "Refuse a snapshot with more key+value bytes than this (0: no cap)."),
    Option("backup_to", str, None, "<snapshot>", "Snapshot to write once, after every user has stopped (on the master or standalone process)."),
    Option("clear", bool, False, None, "Remove every key once, before any user starts."),
    Option("report", str, "off", "<mode>", 'KV statistics: "kv" (the flag alone) keeps a table of its own per operation, in microseconds, with failures by error name (console, CSV, JSON, the web UI\'s KV tab, the HTML report), and leaves Locust\'s request statistics to the load; "requests" also mirrors every KV operation into Locust\'s statistics as a request of type "KV" (Locust\'s statistics cost about 2 us more per operation than "kv", and the KV rows count in Locust\'s totals); "off": none. Default: off.', choices=REPORT_MODES, bare="kv"),
    Option("mask_prefix", str, None, "<prefixes>", "Comma-separated key prefixes whose values the web UI's key browser never shows (test passwords, tokens); keys stay visible. Default: none."),
)


_BACKEND_OPTIONS: Final = {"path": "path", "redis_url": "url", "namespace": "namespace"}
"""Plugin options that are a backend's own options, by the name ``open_kv`` takes."""


def option(name: str) -> Option:
    """The option behind a ``Settings`` field."""
    return next(o for o in OPTIONS if o.field == name)


@dataclass(frozen=True)
class Settings:
    """The plugin's validated options."""

    backend: str = DEFAULT_BACKEND
    path: str | None = None
    redis_url: str | None = field(default=None, repr=False)
    namespace: str | None = None
    serialization: str = DEFAULT_SERIALIZATION
    max_keys: int = 0
    max_bytes: int = 0
    purge_interval: float = 1.0
    restore_from: str | None = None
    restore_max_entries: int = 0
    restore_max_bytes: int = 0
    backup_to: str | None = None
    clear: bool = False
    report: str = "off"
    mask_prefix: str | None = None

    @property
    def reporting(self) -> bool:
        """Whether KV operations are timed (``--kv-report`` kv or requests)."""
        return self.report != "off"

    @property
    def masked_prefixes(self) -> tuple[str, ...]:
        """The prefixes of ``--kv-mask-prefix``, without blanks."""
        if not self.mask_prefix:
            return ()
        return tuple(p.strip() for p in self.mask_prefix.split(",") if p.strip())

    def store_options(self) -> dict[str, Any]:
        """The arguments ``open_kv`` gets for the run's store.

        Only the options that were given: the backend refuses those it does
        not take (``--kv-path`` with redis) with InvalidOptionsError.
        """
        options: dict[str, Any] = {"backend": self.backend, "serialization": self.serialization}
        for field_name, backend_option in _BACKEND_OPTIONS.items():
            value = getattr(self, field_name)
            if value is not None:
                options[backend_option] = value
        # The quota is an option of every backend; 0 (no limit) is left out, as open_kv's default.
        for quota in ("max_keys", "max_bytes"):
            if getattr(self, quota):
                options[quota] = getattr(self, quota)
        return options

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def add_arguments(parser: configargparse.ArgumentParser) -> None:
    """Add the plugin's argument group to Locust's parser; every option shows in the web UI."""
    group = parser.add_argument_group(
        "locust_kv",
        "Shared key-value store (import locust_kv.plugin). Each option is also a LOCUST_KV_* "
        "environment variable and a kv-* key in locust.conf.",
    )
    for option in OPTIONS:
        if option.kind is bool:
            action = group.add_argument(
                option.flag, dest=option.dest, action="store_true", default=option.default,
                env_var=option.env_var, help=option.help,
            )
        elif option.choices:
            # The flag alone means ``option.bare``; the value is checked by read(), as below.
            action = group.add_argument(
                option.flag, dest=option.dest, default=option.default, metavar=option.metavar,
                nargs="?", const=option.bare, env_var=option.env_var, help=option.help,
            )
            action.choices = _Listed(option.choices)
        else:
            # Parsed as text and validated by read(), so bad values get catalogued names.
            action = group.add_argument(
                option.flag, dest=option.dest, default=option.default, metavar=option.metavar,
                env_var=option.env_var, help=option.help,
            )
        # Argument groups do not take Locust's include_in_web_ui keyword; the
        # parser looks for these attributes on each action instead.
        action.include_in_web_ui = True
        action.is_secret = option.secret
        action.is_required = False
        action.is_multiple = False
    # Not an option for people: the master sets it, and Locust copies it to the workers.
    token = group.add_argument("--kv-run-token", dest=RUN_TOKEN_DEST, default=None, help=argparse.SUPPRESS)
    token.include_in_web_ui = False


def read(parsed_options: object | None, **overrides: Any) -> Settings:
    """Validated settings from a parsed namespace, with ``overrides`` on top.

    ``parsed_options`` None (an Environment built by a program, or
    ``run_single_user`` without the plugin's arguments) reads ``LOCUST_KV_*``
    environment variables and the defaults. Values given as text (the web
    UI's form, environment variables) are converted here.

    Raises InvalidOptionsError for a value of the wrong kind, for an unknown
    override, and for options that contradict each other. Backend and
    serialization names are checked by ``open_kv``.
    """
    if parsed_options is None or not hasattr(parsed_options, OPTIONS[0].dest):
        parsed_options = _parse_environment()
    unknown = set(overrides) - {o.field for o in OPTIONS}
    if unknown:
        raise InvalidOptionsError(f"unknown locust_kv plugin option(s): {', '.join(sorted(unknown))}")
    values = {}
    for option in OPTIONS:
        raw = overrides[option.field] if option.field in overrides else getattr(parsed_options, option.dest, option.default)
        values[option.field] = _convert(option, raw)
    settings = Settings(**values)
    _check_consistent(settings)
    return settings


def _parse_environment() -> argparse.Namespace:
    """The plugin's options from ``LOCUST_KV_*`` variables and defaults, without a command line."""
    import configargparse

    parser = configargparse.ArgumentParser(add_help=False, default_config_files=[])
    add_arguments(parser)
    namespace: argparse.Namespace = parser.parse_args([])  # (configargparse is untyped)
    return namespace


_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})


def _convert(option: Option, raw: Any) -> Any:
    if option.kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise InvalidOptionsError(f"{option.flag} must be true or false, not {raw!r}")
    if option.kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().isdigit():
            value = int(raw.strip())
        else:
            raise InvalidOptionsError(f"{option.flag} must be a whole number >= 0, not {raw!r}")
        if value < 0:
            raise InvalidOptionsError(f"{option.flag} must be a whole number >= 0, not {raw!r}")
        return value
    if option.kind is float:
        return _seconds(option, raw)
    if option.choices:
        return _choice(option, raw)
    if raw is None:
        return option.default
    if not isinstance(raw, str):
        raise InvalidOptionsError(f"{option.flag} must be text, not {type(raw).__name__}")
    raw = raw.strip()
    # The web UI sends an empty field for an option that was never set.
    return raw if raw else option.default


def _seconds(option: Option, raw: Any) -> float:
    """A duration in seconds, >= 0 and finite, from a number or its text."""
    value: float | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not 0 <= value < float("inf"):  # NaN fails too
        raise InvalidOptionsError(f"{option.flag} must be seconds >= 0, not {raw!r}")
    return value


class _Listed(list[str]):
    """The values the web UI lists for an option; argparse lets every value through to :func:`read`.

    argparse refuses a value outside an action's choices with its own
    message; :func:`read` refuses it with a catalogued name instead, and
    takes true and false too (a config file's or the environment's).
    """

    def __contains__(self, value: object) -> bool:
        return True


def _choice(option: Option, raw: Any) -> str:
    """One of ``option.choices``; true and false (a config file's or the environment's) mean the bare flag and the default."""
    if raw is None:
        return str(option.default)
    if isinstance(raw, bool):
        return str(option.bare if raw else option.default)
    if isinstance(raw, str):
        value = raw.strip().lower()
        if value in option.choices:
            return value
        if value in _TRUE:
            return str(option.bare)
        if value in _FALSE:
            return str(option.default)
    shown = ", ".join(option.choices)
    raise InvalidOptionsError(f"{option.flag} must be one of {shown} (or true/false), not {raw!r}")


def _check_consistent(settings: Settings) -> None:
    # Options of the wrong backend (--kv-path with redis...) are refused by the backend itself.
    if settings.restore_from is None and (settings.restore_max_entries or settings.restore_max_bytes):
        raise InvalidOptionsError("--kv-restore-max-entries and --kv-restore-max-bytes need --kv-restore-from")
