"""locust_kv: a shared key-value store for Locust load tests.

    from locust_kv import open_kv
    kv = open_kv(backend="memory", serialization="json")
    kv.increment_by("orders", 1)

Importing this package has no side effects. The Locust plugin lives in
:mod:`locust_kv.plugin`; errors in :mod:`locust_kv.errors`.
"""

from __future__ import annotations

from .errors import ErrorGroup, KVError
from .results import (
    AllocationStats,
    BackupSummary,
    Claim,
    ClaimBatch,
    CompareAndDeleteResult,
    CompareAndSwapResult,
    DeletePrefixResult,
    Entry,
    GetOrSetResult,
    KeyScanPage,
    LockStatus,
    Lookup,
    RestoreSummary,
    ScanPage,
    StoreStats,
    SwapResult,
)
from .locks import Lock
from .store import KV, open_kv

from ._version import __version__

__all__ = [
    "AllocationStats",
    "BackupSummary",
    "Claim",
    "ClaimBatch",
    "CompareAndDeleteResult",
    "CompareAndSwapResult",
    "DeletePrefixResult",
    "Entry",
    "ErrorGroup",
    "GetOrSetResult",
    "KV",
    "KVError",
    "KeyScanPage",
    "Lock",
    "LockStatus",
    "Lookup",
    "RestoreSummary",
    "ScanPage",
    "StoreStats",
    "SwapResult",
    "__version__",
    "open_kv",
]
