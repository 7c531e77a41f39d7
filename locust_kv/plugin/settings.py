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
from dataclasses import dataclass
from typing import Any, Final

from ..backends.disk import DEFAULT_PATH
from ..errors import InvalidOptionsError
from ..options import DEFAULT_SERIALIZATION

__all__ = ["OPTIONS", "Option", "Settings", "add_arguments", "option", "read"]

DEFAULT_BACKEND: Final = "disk"
"""The plugin's default backend. Disk, like ``open_kv``'s: it is the one that
works in every topology (standalone, ``--processes``, master and workers on
one host), and a locustfile's own ``open_kv()`` with default options then
reaches the same store as ``environment.kv``."""


@dataclass(frozen=True)
class Option:
    """One plugin option: its ``Settings`` field, kind, default and help."""

    field: str
    kind: type
    default: Any
    metavar: str | None
    help: str

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
    Option("backend", str, DEFAULT_BACKEND, "<name>", 'Store backend: "disk" (LMDB, shared by every process on this host) or "memory" (one process only). Default: disk.'),
    Option("path", str, None, "<file>", f"Disk store file. Default: {DEFAULT_PATH} in the working directory. Not allowed with the memory backend."),
    Option("serialization", str, DEFAULT_SERIALIZATION, "<name>", 'Value encoding: "json" or "string". Default: json.'),
    Option("restore_from", str, None, "<snapshot>", "Snapshot to restore once, before any user starts (on the master or standalone process)."),
    Option("restore_max_entries", int, 0, "<n>", "Refuse a snapshot with more entries than this (0: no cap)."),
    Option("restore_max_bytes", int, 0, "<n>", "Refuse a snapshot with more key+value bytes than this (0: no cap)."),
    Option("backup_to", str, None, "<snapshot>", "Snapshot to write once, after every user has stopped (on the master or standalone process)."),
    Option("clear", bool, False, None, "Remove every key once, before any user starts."),
    Option("report", bool, False, None, 'Report every KV operation to Locust\'s statistics as a request of type "KV", and print a KV summary in microseconds.'),
)


def option(field: str) -> Option:
    """The option behind a ``Settings`` field."""
    return next(o for o in OPTIONS if o.field == field)


@dataclass(frozen=True)
class Settings:
    """The plugin's validated options."""

    backend: str = DEFAULT_BACKEND
    path: str | None = None
    serialization: str = DEFAULT_SERIALIZATION
    restore_from: str | None = None
    restore_max_entries: int = 0
    restore_max_bytes: int = 0
    backup_to: str | None = None
    clear: bool = False
    report: bool = False

    def store_options(self) -> dict[str, Any]:
        """The arguments ``open_kv`` gets for the run's store."""
        return {"backend": self.backend, "path": self.path, "serialization": self.serialization}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        else:
            # Parsed as text and validated by read(), so bad values get catalogued names.
            action = group.add_argument(
                option.flag, dest=option.dest, default=option.default, metavar=option.metavar,
                env_var=option.env_var, help=option.help,
            )
        # Argument groups do not take Locust's include_in_web_ui keyword; the
        # parser looks for these attributes on each action instead.
        action.include_in_web_ui = True
        action.is_secret = False
        action.is_required = False
        action.is_multiple = False


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
    return parser.parse_args([])


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
    if raw is None:
        return option.default
    if not isinstance(raw, str):
        raise InvalidOptionsError(f"{option.flag} must be text, not {type(raw).__name__}")
    raw = raw.strip()
    # The web UI sends an empty field for an option that was never set.
    return raw if raw else option.default


def _check_consistent(settings: Settings) -> None:
    if settings.backend == "memory" and settings.path is not None:
        raise InvalidOptionsError("--kv-path is for the disk backend; the memory backend has no file")
    if settings.restore_from is None and (settings.restore_max_entries or settings.restore_max_bytes):
        raise InvalidOptionsError("--kv-restore-max-entries and --kv-restore-max-bytes need --kv-restore-from")
