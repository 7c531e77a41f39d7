"""Result types returned by the store. Each is a named tuple, so it unpacks."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["BackupSummary", "Entry", "GetOrSetResult", "RestoreSummary", "ScanPage", "SwapResult"]


class Entry(NamedTuple):
    """One key and its value, as returned by ``scan`` and ``list``."""

    key: str
    value: Any


class ScanPage(NamedTuple):
    """One page of a prefix scan.

    ``cursor`` resumes strictly after the page's last key; it is ``""`` and
    ``done`` is True when no matching key follows the page.
    """

    entries: list[Entry]
    cursor: str
    done: bool


class GetOrSetResult(NamedTuple):
    """Result of ``get_or_set``: ``loaded`` is True when the key existed and nothing was written."""

    value: Any
    loaded: bool


class SwapResult(NamedTuple):
    """Result of ``swap``: the previous value (None when absent) and whether there was one."""

    previous: Any
    loaded: bool


class BackupSummary(NamedTuple):
    """Result of ``backup``.

    ``best_effort`` is True when the snapshot may mix states from different
    moments (concurrent writes were allowed); ``warning`` then says why.
    """

    total_entries: int
    bytes_written: int
    best_effort: bool
    warning: str


class RestoreSummary(NamedTuple):
    """Result of ``restore``: how many entries the store holds afterwards."""

    total_entries: int
