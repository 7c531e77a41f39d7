"""Store options: parsing ``open_kv``'s arguments into a comparable description.

Each backend module provides ``configure(path, track_keys, **options)``,
returning a frozen :class:`BackendSpec`. Two ``open_kv`` calls open the same
store when their specs have the same ``identity``; they must then agree on
every option, or the second raises KVOptionsConflictError.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from .errors import InvalidBackendError, InvalidOptionsError

if TYPE_CHECKING:
    from collections.abc import Hashable

    from .backends.base import Backend

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_SERIALIZATION", "BackendSpec", "StoreOptions", "configure_backend"]

DEFAULT_BACKEND: Final = "disk"
DEFAULT_SERIALIZATION: Final = "json"

BACKENDS: Final[dict[str, str]] = {
    "memory": "locust_kv.backends.memory",
    "disk": "locust_kv.backends.disk",
}
"""Backend name -> the module that implements it (imported on first use)."""


class BackendSpec(Protocol):
    """What a backend module's ``configure`` returns: its validated options."""

    kind: str

    @property
    def identity(self) -> Hashable:
        """Equal for two specs that denote the same store (same kind and place)."""

    def describe(self) -> dict[str, Any]:
        """The options as plain values, for people and for the Locust UI."""

    def create(self) -> Backend:
        """A backend on this store. Must be safe to call before a fork."""


@dataclass(frozen=True)
class StoreOptions:
    """Everything that identifies an open store and must match on a second open."""

    spec: Any
    serialization: str


def configure_backend(backend: object, path: object, track_keys: object, options: dict[str, Any]) -> BackendSpec:
    """Validate the backend name and let its module validate the rest.

    Raises InvalidBackendError, InvalidOptionsError, or the backend's own
    configuration errors (DiskPathError...).
    """
    module_name = BACKENDS.get(backend) if isinstance(backend, str) else None
    if module_name is None:
        raise InvalidBackendError(f'backend must be "memory" or "disk", not {backend!r}')
    if not isinstance(track_keys, bool):
        raise InvalidOptionsError(f"track_keys must be a bool, not {type(track_keys).__name__}")
    module = importlib.import_module(module_name)
    spec: BackendSpec = module.configure(path, track_keys, **options)
    return spec


def reject_unknown(kind: str, options: dict[str, Any]) -> None:
    """Raise InvalidOptionsError naming options a backend does not know."""
    if options:
        names = ", ".join(sorted(options))
        raise InvalidOptionsError(f"unknown option(s) for the {kind} backend: {names}")
