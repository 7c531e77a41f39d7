"""Store options: parsing ``open_kv``'s arguments into a comparable description.

Each backend module provides ``configure(**options)``, returning a frozen
:class:`~locust_kv.backends.base.BackendSpec` that says what the backend is
(its name and scope) and holds its validated options. Two ``open_kv`` calls
open the same store when their specs have the same ``identity``; they must
then agree on every option, or the second raises KVOptionsConflictError.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from .backends.base import BackendSpec, Scope
from .errors import InvalidBackendError

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_SERIALIZATION", "BackendSpec", "StoreOptions", "configure_backend", "scope_of"]

DEFAULT_BACKEND: Final = "disk"
DEFAULT_SERIALIZATION: Final = "json"

BACKENDS: Final[dict[str, str]] = {
    "memory": "locust_kv.backends.memory",
    "disk": "locust_kv.backends.lmdb",
    "redis": "locust_kv.backends.redis",
}
"""Backend name -> the module that implements it (imported on first use). Each module has
``configure(**options)`` and ``SCOPE``, the :data:`~locust_kv.backends.base.Scope` of its stores."""


@dataclass(frozen=True)
class StoreOptions:
    """Everything that identifies an open store and must match on a second open."""

    spec: BackendSpec
    serialization: str


class _BackendModule(Protocol):
    """What each module of :data:`BACKENDS` provides."""

    SCOPE: Scope

    def configure(self, **options: Any) -> BackendSpec: ...


def scope_of(backend: object) -> Scope:
    """The scope of the backend named ``backend``, without configuring or opening anything.

    Raises InvalidBackendError for an unknown name.
    """
    return _module(backend).SCOPE


def _module(backend: object) -> _BackendModule:
    module_name = BACKENDS.get(backend) if isinstance(backend, str) else None
    if module_name is None:
        names = ", ".join(f'"{name}"' for name in BACKENDS)
        raise InvalidBackendError(f"backend must be one of {names}, not {backend!r}")
    return cast(_BackendModule, importlib.import_module(module_name))


def configure_backend(backend: object, options: dict[str, Any]) -> BackendSpec:
    """Validate the backend name and let its module's ``configure`` validate the options.

    Raises InvalidBackendError, InvalidOptionsError, or the backend's own
    configuration errors (DiskPathError...).
    """
    return _module(backend).configure(**options)
