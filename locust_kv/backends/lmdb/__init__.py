"""The disk backend: a store in an LMDB file, shared by every process on the host (``backend="disk"``).

``open_kv(backend="disk", path=".locust-kv.lmdb")``. The package holds one
module per concern; :mod:`.backend` says which. Importing it loads no LMDB:
``configure`` and ``SCOPE`` come from :mod:`.spec`, and :class:`DiskBackend`
(with py-lmdb) is imported when first used, as a spec's ``create()`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .spec import DEFAULT_MAP_SIZE, DEFAULT_PATH, SCOPE, DiskSpec, configure, is_store_file

if TYPE_CHECKING:
    from .backend import DiskBackend

__all__ = ["DEFAULT_MAP_SIZE", "DEFAULT_PATH", "SCOPE", "DiskBackend", "DiskSpec", "configure", "is_store_file"]


def __getattr__(name: str) -> Any:
    if name == "DiskBackend":
        from .backend import DiskBackend

        return DiskBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
