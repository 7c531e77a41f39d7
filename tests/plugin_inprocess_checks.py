"""The plugin's API inside one Locust process: register(), environment.kv, reporting, hooks, the web routes.

Importing Locust monkey-patches the process with gevent, so this module never
runs in the main test session: tests/test_plugin_api.py runs it with pytest
in a child process and reports each check as its own test. Run it directly
with ``python -m pytest tests/plugin_inprocess_checks.py``.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import locust  # noqa: F401  (patches this process with gevent before anything else runs)
import pytest
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.event import Events

from locust_kv import open_kv, plugin
from locust_kv.errors import (
    DatabaseNotOpenError,
    InvalidOptionsError,
    KeyNotFoundError,
    MemoryBackendNotSharedError,
    StoreClosedError,
)
from locust_kv.plugin import settings as settings_module
from locust_kv.plugin.timings import OperationTimings, Timings, bucket_of

_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env():
    """A standalone Environment with its own events and a local runner; the store is shut down afterwards."""
    environment = Environment(events=Events())
    environment.create_local_runner()
    yield environment
    plugin.shutdown(environment)
    environment.runner.quit()


def _memory(**options):
    # A memory store of its own per check, so that checks never share data.
    return {"backend": "memory", **options}


# -- environment.kv and register ------------------------------------------------


def test_environment_kv_without_the_plugin_raises_database_not_open() -> None:
    environment = Environment(events=Events())
    with pytest.raises(DatabaseNotOpenError) as info:
        environment.kv  # noqa: B018
    assert str(info.value).startswith("DatabaseNotOpenError: ")
    with pytest.raises(DatabaseNotOpenError):
        plugin.settings_of(environment)


def test_register_gives_environment_kv_and_twice_returns_the_same_store(env) -> None:  # type: ignore[no-untyped-def]
    kv = plugin.register(env, **_memory())
    assert env.kv is kv
    assert plugin.register(env) is kv
    kv.set("k", "v")
    assert env.kv.get("k") == "v"


def test_register_without_parsed_options_reads_environment_variables(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert env.parsed_options is None
    monkeypatch.setenv("LOCUST_KV_BACKEND", "memory")
    monkeypatch.setenv("LOCUST_KV_SERIALIZATION", "string")
    monkeypatch.setenv("LOCUST_KV_REPORT", "true")
    kv = plugin.register(env)
    assert (kv.backend, kv.serialization) == ("memory", "string")
    assert plugin.settings_of(env).report == "kv"


def test_every_option_shows_in_the_web_ui_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from locust.argument_parser import ui_extra_args_dict

    monkeypatch.setattr("sys.argv", ["locust", "--kv-backend", "memory", "--kv-report"])
    shown = ui_extra_args_dict()
    assert {name for name in shown if name.startswith("kv_")} == {o.dest for o in settings_module.OPTIONS}
    assert (shown["kv_backend"]["default_value"], shown["kv_report"]["default_value"]) == ("memory", "kv")
    assert list(shown["kv_report"]["choices"]) == ["off", "kv", "requests"]


def test_defaults() -> None:
    assert settings_module.read(None) == settings_module.Settings(
        backend="disk", path=None, serialization="json", restore_from=None, restore_max_entries=0,
        restore_max_bytes=0, backup_to=None, clear=False, report="off",
    )


def test_register_reads_parsed_options_from_locusts_parser(env) -> None:  # type: ignore[no-untyped-def]
    env.parsed_options = get_parser().parse_args(["--kv-backend", "memory", "--kv-report"])
    plugin.register(env)
    assert plugin.settings_of(env).report == "kv"
    assert env.kv.backend == "memory"


@pytest.mark.parametrize(
    "options",
    [
        {"report": "maybe"},
        {"restore_max_entries": -1},
        {"restore_max_bytes": "12kb"},
        {"restore_max_entries": 3},  # a budget without a snapshot to restore
        {"path": "x.lmdb"},  # a path with the memory backend
        {"no_such_option": 1},
    ],
)
def test_bad_options_raise_invalid_options(env, options) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidOptionsError):
        plugin.register(env, **_memory(**options))
    with pytest.raises(DatabaseNotOpenError):
        env.kv  # noqa: B018


def test_text_values_convert_like_the_web_ui_sends_them() -> None:
    settings = settings_module.read(
        None, backend="memory", clear="true", report="false", restore_from="a.snapshot", restore_max_entries="10",
        restore_max_bytes=20, backup_to="", path=None,
    )
    assert (settings.clear, settings.report) == (True, "off")
    assert (settings.restore_max_entries, settings.restore_max_bytes) == (10, 20)
    assert settings.backup_to is None  # an empty form field means "not set"


def test_master_runner_refuses_the_memory_backend() -> None:
    environment = Environment(events=Events())
    runner = environment.create_master_runner("127.0.0.1", _free_port())
    try:
        with pytest.raises(MemoryBackendNotSharedError) as info:
            plugin.register(environment, **_memory())
        assert "--kv-backend disk" in str(info.value)
    finally:
        runner.quit()


# -- statistics ---------------------------------------------------------------


def test_reporting_kv_keeps_kv_operations_out_of_locusts_statistics(env) -> None:  # type: ignore[no-untyped-def]
    seen = []
    env.events.request.add_listener(lambda **kw: seen.append(kw))
    kv = plugin.register(env, **_memory(report=True))  # true means the default mode, kv
    kv.set("a", 1)
    for key in ("missing-1", "missing-2"):
        with pytest.raises(KeyNotFoundError):
            kv.get(key)
    assert seen == [] and env.stats.num_requests == 0 and not env.stats.errors
    timings = getattr(env, plugin.lifecycle.ATTRIBUTE).timings
    rows = {row["operation"]: row for row in timings.rows()}
    assert (rows["get"]["count"], rows["get"]["failures"], rows["set"]["count"]) == (2, 2, 1)
    assert timings.failure_rows() == [{"operation": "get", "error": "KeyNotFoundError", "occurrences": 2}]


def test_reporting_requests_fires_kv_requests_with_stable_error_names(env) -> None:  # type: ignore[no-untyped-def]
    seen = []
    env.events.request.add_listener(lambda **kw: seen.append(kw))
    kv = plugin.register(env, **_memory(report="requests"))
    kv.set("a", 1)
    for key in ("missing-1", "missing-2"):
        with pytest.raises(KeyNotFoundError):
            kv.get(key)
    assert [(r["request_type"], r["name"], r["response_length"]) for r in seen] == [
        ("KV", "set", 0), ("KV", "get", 0), ("KV", "get", 0)
    ]
    assert isinstance(seen[1]["exception"], KeyNotFoundError)
    assert env.stats.get("get", "KV").num_failures == 2
    assert env.stats.get("set", "KV").num_requests == 1
    # Two keys, one failure row: the error's text does not carry the key.
    assert [e.to_name() for e in env.stats.errors.values()] == ["KV get: KeyNotFoundError('key not found')"]
    rows = {row["operation"]: row for row in getattr(env, plugin.lifecycle.ATTRIBUTE).timings.rows()}
    assert (rows["get"]["count"], rows["get"]["failures"]) == (2, 2)


def test_reporting_covers_module_level_handles_of_the_same_store(env) -> None:  # type: ignore[no-untyped-def]
    plugin.register(env, **_memory(report="requests"))
    with open_kv(backend="memory") as module_level:
        module_level.increment_by("n", 1)
    assert env.stats.get("increment_by", "KV").num_requests == 1


def test_reporting_is_off_by_default(env) -> None:  # type: ignore[no-untyped-def]
    kv = plugin.register(env, **_memory())
    kv.set("a", 1)
    assert env.stats.num_requests == 0 and not env.stats.entries


# -- lifecycle hooks --------------------------------------------------------------


def test_before_load_after_load_backup_and_close(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    calls = []
    seed_path = tmp_path / "seed.snapshot"
    with open_kv(backend="memory", name=f"seed-{next(_names)}") as seed:
        seed.set("seeded", True)
        seed.backup(str(seed_path))

    def before(environment, kv, **_kw):  # type: ignore[no-untyped-def]
        calls.append(("before", kv.get("seeded")))
        # The store is reachable the ways a locustfile reaches it elsewhere, too.
        assert environment.kv.get("seeded") is True
        assert plugin.settings_of(environment).restore_from == str(seed_path)
        kv.set("from-before-load", 1)

    def after(environment, kv, **_kw):  # type: ignore[no-untyped-def]
        calls.append(("after", kv.size(), environment.kv.size()))

    plugin.before_load.add_listener(before)
    plugin.after_load.add_listener(after)
    try:
        backup = tmp_path / "after.snapshot"
        kv = plugin.register(env, **_memory(restore_from=str(seed_path), backup_to=str(backup)))
        kv.set("during", 2)
        plugin.shutdown(env)
        plugin.shutdown(env)  # once only
    finally:
        plugin.before_load.remove_listener(before)
        plugin.after_load.remove_listener(after)
    assert calls == [("before", True), ("after", 3, 3)]
    with open_kv(backend="memory", name=f"check-{next(_names)}") as check:
        assert check.restore(str(backup)).total_entries == 3
    with pytest.raises(StoreClosedError):
        env.kv.get("during")


def test_clear_at_start(env) -> None:  # type: ignore[no-untyped-def]
    with open_kv(backend="memory") as early:
        early.set("left-over", 1)
        plugin.register(env, **_memory(clear=True))
        assert env.kv.size() == 0


def test_web_ui_edits_of_start_up_options_are_undone_at_test_start(env) -> None:  # type: ignore[no-untyped-def]
    env.parsed_options = get_parser().parse_args(["--kv-backend", "memory"])
    plugin.register(env)
    env.parsed_options.kv_serialization = "string"  # what the web UI's form does
    env.parsed_options.kv_report = "requests"
    env.events.test_start.fire(environment=env)
    assert env.parsed_options.kv_serialization == "json"
    assert env.kv.serialization == "json"
    assert plugin.settings_of(env).report == "requests"  # reporting may change at each test start
    env.kv.set("x", 1)
    assert env.stats.get("set", "KV").num_requests == 1


# -- timings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("us", "bucket"), [(0.4, 0), (3.6, 4), (999.4, 999), (1234, 1230), (1235, 1240), (45_678, 45_700), (1_234_567, 1_230_000)]
)
def test_buckets_keep_three_significant_digits(us: float, bucket: int) -> None:
    assert bucket_of(us) == bucket


def test_percentiles_and_merging_worker_reports() -> None:
    worker = Timings()
    for us in range(1, 101):  # 1..100 µs
        worker.record("get", us / 1e6, "KeyNotFoundError" if us > 98 else None)
    master = Timings()
    master.merge(worker.take())
    assert not worker  # take() resets
    master.merge({"get": OperationTimings(1, 0, 500.0, 500.0, 500.0, {500: 1}).to_wire()})
    get, total = master.rows()
    assert (get["operation"], get["count"], get["failures"]) == ("get", 101, 2)
    assert (get["p50"], get["p90"], get["p99"], get["max"]) == (51, 91, 100, 500.0)
    assert get["min"] == pytest.approx(1.0)
    assert total["operation"] == "Aggregated" and total["count"] == 101


def test_percentiles_never_exceed_the_maximum() -> None:
    timings = Timings()
    timings.record("random_key", 318.8e-6)
    (row, _) = timings.rows()
    assert row["p99"] == row["max"] == 318.8


# -- web UI ------------------------------------------------------------------------


@pytest.fixture
def web(env, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.argv", ["locust"])  # the web UI parses the command line for its form
    env.create_web_ui("127.0.0.1", _free_port(), web_base_path="/base", delayed_start=True)
    kv = plugin.register(env, **_memory(report=True))
    for i in range(7):
        kv.set(f"user:{i}", {"id": i})
    kv.set("flag", "on")
    return env.web_ui.app.test_client()


def test_web_summary_lookup_and_prefix_paging(env, web) -> None:  # type: ignore[no-untyped-def]
    requests_before = env.stats.total.num_requests
    summary = web.get("/base/kv/api/summary").get_json()
    assert (summary["backend"], summary["keys"], summary["serialization"]) == ("memory", 8, "json")
    assert web.get("/base/kv/api/key", query_string={"key": "user:3"}).get_json() == {
        "key": "user:3", "found": True, "value": '{"id":3}', "ttl": None
    }
    env.kv.set("session", "abc", ttl=600)
    session = web.get("/base/kv/api/key", query_string={"key": "session"}).get_json()
    assert session["value"] == '"abc"' and 590 < session["ttl"] <= 600  # the key browser shows what is left
    env.kv.delete("session")
    assert web.get("/base/kv/api/key", query_string={"key": "nope"}).get_json() == {"key": "nope", "found": False}
    keys, cursor, pages = [], "", 0
    while True:
        page = web.get("/base/kv/api/keys", query_string={"prefix": "user:", "cursor": cursor, "limit": 3}).get_json()
        keys += [entry["key"] for entry in page["entries"]]
        pages += 1
        if page["done"]:
            break
        cursor = page["cursor"]
    assert keys == [f"user:{i}" for i in range(7)] and pages == 3
    # A person browsing is not load: nothing reached Locust's statistics.
    assert env.stats.total.num_requests == requests_before


def test_web_masks_values_under_the_masked_prefixes(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.argv", ["locust"])
    env.create_web_ui("127.0.0.1", _free_port(), web_base_path="/base", delayed_start=True)
    kv = plugin.register(env, **_memory(mask_prefix="secret:, token:"))
    for key, value in {"secret:alice": "hunter2", "token:1": "abc", "user:1": {"id": 1}}.items():
        kv.set(key, value)
    web = env.web_ui.app.test_client()
    looked_up = web.get("/base/kv/api/key", query_string={"key": "secret:alice"}).get_json()
    assert looked_up["masked"] is True and "hunter2" not in str(looked_up)
    page = web.get("/base/kv/api/keys", query_string={"prefix": ""}).get_json()
    shown = {entry["key"]: entry["value"] for entry in page["entries"]}
    assert set(shown) == {"secret:alice", "token:1", "user:1"}  # keys stay visible
    assert "hunter2" not in str(page) and "abc" not in str(page)
    assert shown["user:1"] == '{"id":1}'


def test_web_bad_cursor_is_a_catalogued_error(web) -> None:  # type: ignore[no-untyped-def]
    response = web.get("/base/kv/api/keys", query_string={"cursor": "%%%"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "InvalidCursorError"


def test_web_page_and_tabs(env, web) -> None:  # type: ignore[no-untyped-def]
    page = web.get("/base/kv")
    assert page.status_code == 200 and b'id="lookup-key"' in page.data
    args = env.web_ui.template_args
    assert {"title": "KV", "key": "kv"} in args["extended_tabs"]
    assert {"href": "/base/kv", "title": "KV store browser (look up keys, page by prefix)"} in args["extended_csv_files"]
    env.kv.get("flag")  # one timed operation for the timings tab
    stats = web.get("/base/stats/requests").get_json()
    extended = {e["key"]: e["data"] for e in stats["extended_stats"]}
    store = {row["field"]: row["value"] for row in extended["kv"]}
    assert store["Backend"] == "memory" and store["Keys"] == 8
    assert store["Key browser"].endswith("/base/kv")
    assert [row["operation"] for row in extended["kv_timings"]] == ["get", "set", "Aggregated"]
