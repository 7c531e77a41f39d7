"""The web UI's start form: every ``kv_*`` field is validated, then applied or refused.

Locust 2.47 posts the start form (and the edit form of a running test) to
``/swarm``, writes every field it knows into ``parsed_options`` and starts the
test; an exception in a ``test_start`` listener would only be a traceback in
the log. So the plugin checks the form's ``kv_*`` fields *before* Locust's
view runs (:mod:`.web` wraps it), through the same :func:`settings.read`
that parses the command line, and answers a refusal with Locust's own
failure JSON ``{"success": false, "message": ...}``, which the form shows.
Nothing is started and nothing changes when a field is refused.

What each field does:

- the store's own options (backend, path, Redis URL, namespace,
  serialization): the store opened when Locust started; a field that names
  another store is refused with KVOptionsConflictError (a field that names
  the same store differently, a relative path of the absolute one, passes);
- the quota (``kv_max_keys``, ``kv_max_bytes``) and the restore options:
  they acted once, when Locust started (every process opened the store with
  the quota); a change is refused with KVOptionsConflictError;
- ``kv_clear``: applied when the test starts (see
  ``Attachment.on_test_start``); refused while a test runs;
- ``kv_report``: applied when the test starts; a change is refused while a
  test runs;
- ``kv_purge_interval``: applied when the test starts (the background purge
  of expired keys restarts with it);
- ``kv_backup_to``: checked now (the target must be writable as a backup),
  written after the load;
- ``kv_mask_prefix``: applied at once.

A value of the wrong kind gets the parser's own error (InvalidOptionsError,
InvalidBackendError, InvalidSerializationError).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..errors import InvalidOptionsError, KVOptionsConflictError
from ..options import configure_backend, scope_of
from ..serialization import get_serializer
from .. import snapshot
from . import settings as settings_module
from .settings import OPTIONS, Settings

if TYPE_CHECKING:
    from ..store import KV
    from .lifecycle import Attachment

__all__ = ["STORE_FIELDS", "STARTUP_FIELDS", "check", "fields_of", "fixed_changes"]

STORE_FIELDS: Final = ("backend", "path", "redis_url", "namespace", "serialization")
"""Options of the store itself: it is open, they cannot change while Locust runs."""

STARTUP_FIELDS: Final = ("max_keys", "max_bytes", "restore_from", "restore_max_entries", "restore_max_bytes")
"""Options that acted once, when Locust started: the quota the store was opened with, and the restore."""

_DISK_DEFAULT_PATH: Final = ".locust-kv.lmdb"


def fields_of(form: Mapping[str, str]) -> dict[str, str]:
    """The plugin's fields of a posted form, by ``Settings`` field name."""
    return {option.field: form[option.dest] for option in OPTIONS if option.dest in form}


def check(attachment: Attachment, fields: Mapping[str, Any], running: bool) -> Settings:
    """The settings the form asks for, or the catalogued error that refuses them.

    ``running``: the form edits a running test (no ``test_start`` follows).
    Raises InvalidOptionsError, InvalidBackendError, InvalidSerializationError
    for values of the wrong kind, KVOptionsConflictError for an option that
    cannot change now, and the snapshot errors of an unusable backup target.
    """
    # The form's values under the options a program gave register(), which hold all run long.
    wanted = settings_module.read(attachment.environment.parsed_options, **{**fields, **attachment.overrides})
    changed = fixed_changes(attachment, wanted)
    if changed:
        raise KVOptionsConflictError(_conflict_message(attachment, wanted, changed))
    current = attachment.settings
    if running:
        late = [f for f in ("clear", "report") if getattr(wanted, f) != getattr(current, f)]
        if late:
            flags = " and ".join(settings_module.option(f).flag for f in late)
            raise InvalidOptionsError(
                f"{flags} {'act' if len(late) > 1 else 'acts'} when a test starts, and this test is running: "
                "stop it, then start a new "
                "test with the new value (the edit changed nothing)"
            )
    if wanted.backup_to is not None and wanted.backup_to != current.backup_to:
        snapshot.check_target(os.path.abspath(wanted.backup_to))
    return wanted


def fixed_changes(attachment: Attachment, wanted: Settings) -> list[str]:
    """The fields of ``wanted`` that cannot change now and differ from what the store was opened with.

    Raises the parser's errors for a backend or serialization name that is
    not one, and the backend's own errors (InvalidOptionsError for a path
    with the memory backend) for options no store could be opened with.
    """
    scope_of(wanted.backend)  # InvalidBackendError for an unknown name
    get_serializer(wanted.serialization)  # InvalidSerializationError
    started = attachment.started
    changed = [
        f for f in STARTUP_FIELDS
        if _normalized(f, getattr(wanted, f)) != _normalized(f, getattr(started, f))
    ]  # fmt: skip
    kv = attachment.kv
    if kv is not None and not _names_store(kv, wanted):
        effective = attachment.settings
        differ = [
            f for f in STORE_FIELDS
            if getattr(wanted, f) != getattr(effective, f) and getattr(wanted, f) != getattr(started, f)
        ]  # fmt: skip
        changed = (differ or list(STORE_FIELDS)) + changed
    return changed


def _normalized(field: str, value: Any) -> Any:
    if field == "restore_from" and isinstance(value, str):
        return os.path.abspath(value)
    return value


def _names_store(kv: KV, wanted: Settings) -> bool:
    """Whether ``wanted``'s store options name the store ``kv`` is (opens nothing, creates nothing)."""
    spec = kv._store.options.spec
    if wanted.serialization != kv.serialization:
        return False
    if wanted.backend != spec.kind:
        if spec.kind != "disk" and wanted.backend != "disk":
            # Let the backend name what no store could be opened with (a path with memory...).
            configure_backend(wanted.backend, _backend_options(wanted))
        return False
    if spec.kind == "disk":
        # Disk's configure creates the path's directories: compare the resolved paths instead.
        if wanted.redis_url is not None or wanted.namespace is not None:
            raise InvalidOptionsError("--kv-redis-url and --kv-namespace are options of the redis backend, not of disk")
        path = os.path.realpath(os.path.abspath(wanted.path or _DISK_DEFAULT_PATH))
        return path == getattr(spec, "path", None)
    return configure_backend(wanted.backend, _backend_options(wanted)).identity == spec.identity


def _backend_options(wanted: Settings) -> dict[str, Any]:
    options = wanted.store_options()
    options.pop("backend")
    options.pop("serialization")
    return options


def _conflict_message(attachment: Attachment, wanted: Settings, changed: list[str]) -> str:
    asked = ", ".join(_shown(f, getattr(wanted, f)) for f in changed)
    kv = attachment.kv
    opened = f" (the {kv.backend} store at {kv.location})" if kv is not None else ""
    return (
        f"the start form asks for {asked}, but the store opened when Locust started{opened} and these options "
        "cannot change while Locust runs: --kv-backend, --kv-path, --kv-redis-url, --kv-namespace and "
        "--kv-serialization name the open store, --kv-max-keys and --kv-max-bytes are the quota it was opened with, "
        "and the --kv-restore-* options acted once, at start-up. "
        "Put the fields back, or restart Locust with the new values"
    )


def _shown(field: str, value: Any) -> str:
    option = settings_module.option(field)
    if option.secret:
        return f"{option.flag} (hidden)"
    return f"{option.flag} {'(default)' if value is None else repr(value)}"
