"""The web UI's KV tab and key browser (master or standalone process only).

Locust 2.47's UI is a prebuilt React app. Its supported extension points are
``template_args["extended_tabs"]`` and ``["extended_tables"]`` (a tab that
shows one table) with the rows added to ``/stats/requests`` as
``extended_stats``, ``["extended_csv_files"]`` (links on the Download Data
tab) and extra Flask routes. The plugin uses all of them:

- a **KV** tab: backend, location, serialization, key count, size on disk,
  reporting, and the address of the key browser;
- a **KV timings (microseconds)** tab: the microsecond summary of ``--kv-report``;
- a key browser page at ``<web base path>/kv``, linked from the Download Data
  tab: look up one key, page through the keys of a prefix (the store's scan
  cursors), refresh the counts;
- JSON under ``<web base path>/kv/api/``: ``summary``, ``key?key=``,
  ``keys?prefix=&cursor=&limit=``.
- a check of the start form's ``kv_*`` fields before Locust's ``/swarm``
  view takes them (see :mod:`.form`): a refusal is Locust's own failure
  answer, which the form shows.

The React tab renders table cells as plain text, which is why lookup and
paging live on their own page.

The browser's reads go through the base :class:`~locust_kv.store.KV` methods,
which are never timed, so a person browsing keys never shows in the load
test's statistics.
"""

from __future__ import annotations

import functools
import logging
import os
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final

import orjson
from flask import Blueprint, Response, jsonify, request
from locust.runners import STATE_RUNNING, STATE_SPAWNING

from ..errors import ErrorGroup, KeyNotFoundError, KVError
from ..store import KV
from . import form
from .lifecycle import with_kv_section
from .timings import COLUMNS

if TYPE_CHECKING:
    from collections.abc import Callable

    from locust.web import WebUI

    from .lifecycle import Attachment

__all__ = ["PAGE_LIMIT", "install"]

logger = logging.getLogger("locust_kv.plugin")

SWARM_ENDPOINT = "locust.swarm"
"""Locust's view of the start form's POST /swarm."""
TAB = "kv"
TIMINGS_TAB = "kv_timings"
PAGE_LIMIT = 50
"""Keys per page of the browser (``limit`` may ask for up to 1,000)."""
MAX_LIMIT = 1000
PREVIEW_CHARS = 200
"""Characters of a value shown in a page of keys; a lookup shows the whole value."""


def install(attachment: Attachment, web_ui: WebUI) -> None:
    """Add the KV tabs, the key browser and its JSON routes to Locust's web UI."""
    assert web_ui.app is not None  # (WebUI declares it optional; its __init__ sets it)
    base = _base_path(web_ui)
    blueprint = Blueprint("locust_kv", __name__, url_prefix=f"{base}/kv")
    # Locust's decorator is unannotated; it returns a view that takes what the view takes.
    guard: Callable[[Callable[[], Response]], Callable[[], Response]] = web_ui.auth_required_if_enabled

    def kv() -> KV:
        assert attachment.kv is not None
        return attachment.kv

    @blueprint.route("")
    @guard
    def page() -> Response:
        html = files(__package__).joinpath("kv.html").read_text(encoding="utf-8")
        return Response(html, mimetype="text/html")

    @blueprint.route("/api/summary")
    @guard
    def summary() -> Response:
        return _answer(lambda: summary_of(kv(), attachment.settings.reporting))

    @blueprint.route("/api/key")
    @guard
    def lookup() -> Response:
        key = request.args.get("key", "")

        def find() -> dict[str, Any]:
            try:
                value = KV.get(kv(), key)
                left = KV.ttl(kv(), key)  # seconds before it expires, None for never (absent by now: not found)
            except KeyNotFoundError:
                return {"key": key, "found": False}
            if _masked(key, attachment.settings.masked_prefixes):
                return {"key": key, "found": True, "value": MASK, "masked": True, "ttl": left}
            return {"key": key, "found": True, "value": _text(value, kv().serialization), "ttl": left}

        return _answer(find)

    @blueprint.route("/api/keys")
    @guard
    def keys() -> Response:
        prefix = request.args.get("prefix", "")
        cursor = request.args.get("cursor", "")
        try:
            limit = min(max(int(request.args.get("limit", PAGE_LIMIT)), 1), MAX_LIMIT)
        except ValueError:
            limit = PAGE_LIMIT

        def scan() -> dict[str, Any]:
            page = KV.scan(kv(), prefix=prefix, limit=limit, cursor=cursor)
            entries = []
            masked = attachment.settings.masked_prefixes
            for entry in page.entries:
                if _masked(entry.key, masked):
                    entries.append({"key": entry.key, "value": MASK, "truncated": False, "masked": True})
                    continue
                text = _text(entry.value, kv().serialization)
                truncated = len(text) > PREVIEW_CHARS
                entries.append({"key": entry.key, "value": text[:PREVIEW_CHARS], "truncated": truncated})
            return {"prefix": prefix, "entries": entries, "cursor": page.cursor, "done": page.done}

        return _answer(scan)

    web_ui.app.register_blueprint(blueprint)
    _check_start_form(attachment, web_ui)

    args = web_ui.template_args
    args["extended_tabs"] = [
        *args.get("extended_tabs", []),
        {"title": "KV", "key": TAB},
        # Locust's tabs are upper-cased by CSS, which turns µ into a capital Mu (Μ): spell it out.
        {"title": "KV timings (microseconds)", "key": TIMINGS_TAB},
    ]
    args["extended_tables"] = [
        *args.get("extended_tables", []),
        {"key": TAB, "structure": [{"key": "field", "title": "Store"}, {"key": "value", "title": "Value"}]},
        {"key": TIMINGS_TAB, "structure": [{"key": key, "title": title} for key, title in COLUMNS]},
    ]
    args["extended_csv_files"] = [
        *args.get("extended_csv_files", []),
        {"href": f"{base}/kv", "title": "KV store browser (look up keys, page by prefix)"},
    ]

    @web_ui.app.after_request
    def add_kv_rows(response: Response) -> Response:
        if request.endpoint == "locust.stats_report" and response.status_code == 200 and attachment.settings.reporting:
            # The report page Locust serves (and its download): the same KV section as the --html file's.
            response.set_data(with_kv_section(response.get_data(as_text=True), attachment.timings))
            return response
        if request.endpoint != "locust.request_stats" or response.status_code != 200:
            return response
        report = response.get_json()
        reporting = attachment.settings.reporting
        try:
            store_rows = _store_rows(summary_of(kv(), reporting), f"{request.host_url.rstrip('/')}{base}/kv")
        except KVError as error:
            store_rows = [{"field": "Error", "value": str(error)}]
        idle = "(no KV operation yet)" if reporting else "(reporting is off: start Locust with --kv-report)"
        timing_rows = attachment.timings.rows() or [{"operation": idle}]
        store_rows += [
            {"field": f"Failures of {row['operation']}: {row['error']}", "value": row["occurrences"]}
            for row in attachment.timings.failure_rows()
        ]
        extended = [e for e in report.get("extended_stats", []) if e.get("key") not in (TAB, TIMINGS_TAB)]
        extended += [{"key": TAB, "data": store_rows}, {"key": TIMINGS_TAB, "data": timing_rows}]
        report["extended_stats"] = extended
        response.set_data(orjson.dumps(report))
        return response


def _check_start_form(attachment: Attachment, web_ui: WebUI) -> None:
    """Check the start form's ``kv_*`` fields before Locust's /swarm view takes them (see form)."""
    app = web_ui.app
    assert app is not None  # (WebUI declares it optional; its __init__ sets it)
    swarm = app.view_functions.get(SWARM_ENDPOINT)
    if swarm is None:
        return
    environment = attachment.environment

    @functools.wraps(swarm)
    def checked_swarm(*args: Any, **kwargs: Any) -> Any:
        fields = form.fields_of(request.form)
        if not fields:
            return swarm(*args, **kwargs)
        runner = environment.runner
        running = runner is not None and runner.state in (STATE_SPAWNING, STATE_RUNNING)
        try:
            wanted = form.check(attachment, fields, running)
        except KVError as error:
            logger.warning("locust_kv: the start form was refused: %s", error)
            # Locust's own failure answer: the form shows the message and starts nothing.
            return jsonify({"success": False, "message": str(error), "host": environment.host})
        response = swarm(*args, **kwargs)
        if running and _succeeded(response):
            attachment.apply(wanted)  # no test_start follows an edit of a running test
        return response

    guard: Callable[[Callable[..., Any]], Callable[..., Any]] = web_ui.auth_required_if_enabled
    app.view_functions[SWARM_ENDPOINT] = guard(checked_swarm)


def _succeeded(response: Any) -> bool:
    try:
        return bool(response.get_json().get("success"))
    except (AttributeError, TypeError, ValueError):
        return False


def _base_path(web_ui: WebUI) -> str:
    """Locust's --web-base-path, read off the route of its index page ("" when none)."""
    assert web_ui.app is not None  # (WebUI declares it optional; its __init__ sets it)
    for rule in web_ui.app.url_map.iter_rules():
        if rule.endpoint == "locust.index":
            return rule.rule.rstrip("/")
    return ""


def summary_of(kv: KV, reporting: bool) -> dict[str, Any]:
    """What the KV tab and the browser show about the store (the location never holds a password).

    ``keys`` and ``bytes`` are the usage the quota counts, ``max_keys`` and
    ``max_bytes`` the quota (None: none), from one ``stats()``.
    """
    stats = KV.stats(kv)  # KV's own method: the plugin's reads are never reported
    return {
        "backend": kv.backend,
        "location": kv.location,
        "serialization": kv.serialization,
        "keys": stats.keys,
        "bytes": stats.bytes,
        "max_keys": stats.max_keys,
        "max_bytes": stats.max_bytes,
        "size_bytes": _bytes_on_disk(kv.location) if os.path.exists(kv.location) else None,
        "reporting": reporting,
    }


def _store_rows(summary: dict[str, Any], browser_url: str) -> list[dict[str, Any]]:
    size = summary["size_bytes"]
    return [
        {"field": "Backend", "value": summary["backend"]},
        {"field": "Location", "value": summary["location"]},
        {"field": "Serialization", "value": summary["serialization"]},
        {"field": "Keys", "value": _keys_used(summary["keys"], summary["max_keys"])},
        {"field": "Data (what --kv-max-bytes counts)", "value": _bytes_used(summary["bytes"], summary["max_bytes"])},
        {"field": "Size on disk", "value": "not a local file" if size is None else _human_bytes(size)},
        {"field": "Operations reported (--kv-report)", "value": "yes" if summary["reporting"] else "no"},
        {"field": "Key browser", "value": browser_url},
    ]


def _keys_used(keys: int, max_keys: int | None) -> int | str:
    """The key count, against the quota when there is one: ``"95 of 100 (95%, --kv-max-keys)"``."""
    if max_keys is None:
        return keys
    return f"{keys} of {max_keys} ({100 * keys / max_keys:.0f}%, --kv-max-keys)"


def _bytes_used(size: int, max_bytes: int | None) -> str:
    """The data's measure, against the quota when there is one."""
    if max_bytes is None:
        return _human_bytes(size)
    return f"{_human_bytes(size)} of {_human_bytes(max_bytes)} ({100 * size / max_bytes:.0f}%, --kv-max-bytes)"


MASK: Final = "•••••• (masked: --kv-mask-prefix)"
"""What the browser shows instead of a value under a masked prefix."""


def _masked(key: str, prefixes: tuple[str, ...]) -> bool:
    return bool(prefixes) and key.startswith(prefixes)


def _answer(work: Callable[[], dict[str, Any]]) -> Response:
    try:
        return jsonify(work())
    except KVError as error:
        response = jsonify({"error": error.name, "message": str(error)})
        response.status_code = 400 if error.group is ErrorGroup.USER else 500
        return response


def _text(value: Any, serialization: str) -> str:
    """A stored value as text: JSON under json (strings quoted), the text itself under string."""
    if serialization == "json":
        return orjson.dumps(value).decode()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _bytes_on_disk(location: str) -> int:
    """Bytes the store's file really occupies (allocated blocks; a file of an earlier version may be sparse)."""
    try:
        if os.path.isdir(location):
            return sum(_allocated(entry.stat()) for entry in os.scandir(location) if entry.is_file())
        return _allocated(os.stat(location))
    except OSError:
        return 0


def _allocated(stat: os.stat_result) -> int:
    blocks = getattr(stat, "st_blocks", None)
    return stat.st_size if blocks is None else blocks * 512


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
