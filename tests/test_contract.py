"""The backend contract: every public operation, on every backend, through the front-end.

A backend is done when this module passes against it unchanged.
"""

from __future__ import annotations

import collections

import pytest

from locust_kv import KV, Entry, GetOrSetResult, ScanPage, SwapResult
from locust_kv.store import read_marker, write_marker
from locust_kv.errors import (
    InvalidArgumentError,
    InvalidCursorError,
    InvalidKeyError,
    KeyNotFoundError,
    KeyTooLongError,
    SerializerError,
    StoreClosedError,
    UnsupportedValueTypeError,
    ValueNumberRequiredError,
    ValueParseError,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# -- get / set / delete / exists -------------------------------------------


def test_set_returns_the_value_and_get_reads_it(kv: KV) -> None:
    value = {"name": "alice", "roles": ["admin", "qa"], "age": 41, "ratio": 0.5, "active": True, "none": None}
    assert kv.set("user:1", value) == value
    assert kv.get("user:1") == value


@pytest.mark.parametrize("value", ["text", "", 0, -7, 2**62, 1.25, True, False, None, [], {}, [1, [2, [3]]]])
def test_json_values_round_trip(kv: KV, value: object) -> None:
    kv.set("k", value)
    assert kv.get("k") == value
    assert type(kv.get("k")) is type(value)


def test_set_overwrites(kv: KV) -> None:
    kv.set("k", 1)
    kv.set("k", "two")
    assert kv.get("k") == "two"
    assert kv.size() == 1


def test_get_missing_key_raises_key_not_found(kv: KV) -> None:
    with pytest.raises(KeyNotFoundError) as info:
        kv.get("missing:42")
    error = info.value
    assert error.name == "KeyNotFoundError"
    assert error.key == "missing:42"
    assert error.operation == "get"
    assert error.backend == kv.backend
    assert "missing:42" not in str(error) and "missing:42" not in repr(error)
    assert str(error).startswith("KeyNotFoundError")
    assert repr(error).startswith("KeyNotFoundError")


def test_delete_is_true_whether_or_not_the_key_existed(kv: KV) -> None:
    kv.set("k", 1)
    assert kv.delete("k") is True
    assert kv.exists("k") is False
    assert kv.delete("k") is True


def test_exists(kv: KV) -> None:
    assert kv.exists("k") is False
    kv.set("k", None)
    assert kv.exists("k") is True


def test_unicode_keys(kv: KV) -> None:
    kv.set("ключ:日本:🙂", "v")
    assert kv.get("ключ:日本:🙂") == "v"
    assert kv.list(prefix="ключ:") == [Entry("ключ:日本:🙂", "v")]


def test_key_of_511_bytes_is_accepted_and_512_rejected(kv: KV) -> None:
    kv.set("k" * 511, 1)
    assert kv.get("k" * 511) == 1
    with pytest.raises(KeyTooLongError) as info:
        kv.set("k" * 512, 1)
    assert "511" in str(info.value)
    with pytest.raises(KeyTooLongError):
        kv.get("é" * 256)  # 512 bytes of UTF-8


@pytest.mark.parametrize("key", ["", 1, None, b"bytes", 1.5, ("t",), "\ud800"])
@pytest.mark.parametrize("operation", ["get", "set", "delete", "exists", "increment_by", "swap"])
def test_bad_keys_raise_invalid_key(kv: KV, key: object, operation: str) -> None:
    args = {"get": (), "delete": (), "exists": (), "set": (1,), "increment_by": (1,), "swap": (1,)}[operation]
    with pytest.raises(InvalidKeyError):
        getattr(kv, operation)(key, *args)
    assert kv.size() == 0


# -- serialization -----------------------------------------------------------


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", complex(1, 2)])
def test_json_refuses_unsupported_types(kv: KV, value: object) -> None:
    with pytest.raises(UnsupportedValueTypeError):
        kv.set("k", value)
    assert not kv.exists("k")


@pytest.mark.parametrize("value", [2**64, float("nan"), float("inf"), {"a": [float("-inf")]}, {1: "int key"}])
def test_json_encoding_failures_raise_serializer_error(kv: KV, value: object) -> None:
    with pytest.raises(SerializerError):
        kv.set("k", value)
    assert not kv.exists("k")


def test_json_tuples_read_back_as_lists(kv: KV) -> None:
    kv.set("k", (1, "a"))
    assert kv.get("k") == [1, "a"]


def test_string_serialization_round_trips_text_and_bytes(kv_string: KV) -> None:
    kv_string.set("s", "héllo")
    assert kv_string.get("s") == "héllo"
    kv_string.set("b", b"raw")
    assert kv_string.get("b") == "raw"
    kv_string.set("j", '{"not": "parsed"}')
    assert kv_string.get("j") == '{"not": "parsed"}'


@pytest.mark.parametrize("value", [1, 1.5, None, True, ["x"], {"a": 1}])
def test_string_serialization_refuses_non_text(kv_string: KV, value: object) -> None:
    with pytest.raises(UnsupportedValueTypeError):
        kv_string.set("k", value)


def test_string_serialization_undecodable_value_raises_serializer_error(kv_string: KV) -> None:
    with pytest.raises(SerializerError):
        kv_string.set("b", b"\xff\xfe")  # refused at the write: it could not be read back
    kv_string._backend.set(b"b", b"\xff\xfe")  # as another program (or serialization) could write it
    with pytest.raises(SerializerError):
        kv_string.get("b")


def test_string_serialization_unencodable_text_raises_serializer_error(kv_string: KV) -> None:
    with pytest.raises(SerializerError):
        kv_string.set("k", "\udcff")


# -- increment_by ------------------------------------------------------------


def test_increment_missing_key_counts_from_zero(kv: KV) -> None:
    assert kv.increment_by("c", 5) == 5
    assert kv.increment_by("c", -7) == -2
    assert kv.increment_by("c", 0) == -2
    assert kv.get("c") == -2


def test_counter_reads_as_int_under_json(kv: KV) -> None:
    kv.increment_by("counter", 3)
    assert kv.get("counter") == 3


def test_counter_reads_as_str_under_string(kv_string: KV) -> None:
    kv_string.increment_by("counter", 3)
    assert kv_string.get("counter") == "3"


@pytest.mark.parametrize("stored", [41, "41", -1])
def test_increment_accepts_json_integers_and_decimal_strings(kv: KV, stored: object) -> None:
    kv.set("c", stored)
    assert kv.increment_by("c", 1) == int(stored) + 1  # type: ignore[call-overload]
    assert kv.get("c") == int(stored) + 1  # type: ignore[call-overload]


def test_increment_accepts_decimal_text_under_string(kv_string: KV) -> None:
    kv_string.set("c", "-12")
    assert kv_string.increment_by("c", 2) == -10


@pytest.mark.parametrize("stored", ["abc", "1.5", 1.5, "", " 1", "1_000", "+1", "--1", [1], {"n": 1}, True, None, "١"])
def test_increment_on_non_integer_raises_value_parse_error_and_writes_nothing(kv: KV, stored: object) -> None:
    kv.set("c", stored)
    with pytest.raises(ValueParseError):
        kv.increment_by("c", 1)
    assert kv.get("c") == stored


@pytest.mark.parametrize("delta", [1.0, "1", None, True, False, [1], 1 + 0j])
def test_increment_rejects_non_int_delta_before_touching_the_store(kv: KV, delta: object) -> None:
    with pytest.raises(ValueNumberRequiredError):
        kv.increment_by("c", delta)  # type: ignore[arg-type]
    assert not kv.exists("c")


def test_increment_checks_delta_before_the_key(kv: KV) -> None:
    with pytest.raises(ValueNumberRequiredError):
        kv.increment_by("", "x")  # type: ignore[arg-type]


def test_increment_up_to_the_int64_bounds(kv: KV) -> None:
    assert kv.increment_by("max", INT64_MAX) == INT64_MAX
    assert kv.increment_by("min", INT64_MIN) == INT64_MIN


@pytest.mark.parametrize(("start", "delta"), [(INT64_MAX, 1), (INT64_MIN, -1), (0, 2**63), (0, -(2**63) - 1), (5, 2**70)])
def test_increment_overflow_raises_value_parse_error_and_writes_nothing(kv: KV, start: int, delta: int) -> None:
    if start:
        kv.increment_by("c", start)
    with pytest.raises(ValueParseError):
        kv.increment_by("c", delta)
    if start:
        assert kv.get("c") == start
    else:
        assert not kv.exists("c")


# -- get_or_set / swap -------------------------------------------------------


def test_get_or_set_stores_when_absent_and_reads_when_present(kv: KV) -> None:
    result = kv.get_or_set("k", {"first": True})
    assert result == GetOrSetResult({"first": True}, False)
    value, loaded = kv.get_or_set("k", {"second": True})
    assert (value, loaded) == ({"first": True}, True)
    assert kv.get("k") == {"first": True}


def test_get_or_set_refuses_bad_values_without_writing(kv: KV) -> None:
    with pytest.raises(UnsupportedValueTypeError):
        kv.get_or_set("k", object())
    assert not kv.exists("k")


def test_swap_always_writes_and_returns_previous(kv: KV) -> None:
    assert kv.swap("k", "a") == SwapResult(None, False)
    previous, loaded = kv.swap("k", "b")
    assert (previous, loaded) == ("a", True)
    assert kv.get("k") == "b"


def test_swap_of_a_stored_null_is_loaded(kv: KV) -> None:
    kv.set("k", None)
    assert kv.swap("k", 1) == SwapResult(None, True)


# -- compare_and_swap / compare_and_delete / delete_if_exists ---------------------


def test_compare_and_swap_with_none_means_only_if_absent(kv: KV) -> None:
    assert kv.compare_and_swap("k", None, "first") is True
    assert kv.compare_and_swap("k", None, "second") is False
    assert kv.get("k") == "first"


def test_compare_and_swap_replaces_only_on_match(kv: KV) -> None:
    kv.set("k", {"v": 1})
    assert kv.compare_and_swap("k", {"v": 2}, {"v": 3}) is False
    assert kv.get("k") == {"v": 1}
    assert kv.compare_and_swap("k", {"v": 1}, {"v": 2}) is True
    assert kv.get("k") == {"v": 2}


def test_compare_and_swap_on_missing_key_with_old_value_is_false(kv: KV) -> None:
    assert kv.compare_and_swap("k", "x", "y") is False
    assert not kv.exists("k")


def test_json_dicts_compare_equal_whatever_their_key_order(kv: KV) -> None:
    kv.set("k", {"a": 1, "b": {"c": 2, "d": 3}})
    assert kv.compare_and_swap("k", {"b": {"d": 3, "c": 2}, "a": 1}, "swapped") is True
    kv.set("k", {"x": 1, "y": 2})
    assert kv.compare_and_delete("k", {"y": 2, "x": 1}) is True
    assert not kv.exists("k")


def test_values_compare_by_serialized_form(kv: KV) -> None:
    kv.increment_by("c", 7)  # stored as decimal text b"7"
    assert kv.compare_and_swap("c", 7, 8) is True
    assert kv.compare_and_swap("c", 8.0, 9) is False  # 8.0 serializes as b"8.0"
    assert kv.get("c") == 8


def test_string_compare_and_swap_after_increment(kv_string: KV) -> None:
    kv_string.increment_by("c", 41)
    assert kv_string.compare_and_swap("c", "41", "42") is True
    assert kv_string.increment_by("c", 1) == 43


def test_compare_and_swap_refuses_bad_values_without_writing(kv: KV) -> None:
    kv.set("k", 1)
    with pytest.raises(UnsupportedValueTypeError):
        kv.compare_and_swap("k", 1, object())
    with pytest.raises(UnsupportedValueTypeError):
        kv.compare_and_swap("k", object(), 2)
    assert kv.get("k") == 1


def test_delete_if_exists(kv: KV) -> None:
    assert kv.delete_if_exists("k") is False
    kv.set("k", 1)
    assert kv.delete_if_exists("k") is True
    assert kv.delete_if_exists("k") is False


def test_compare_and_delete(kv: KV) -> None:
    assert kv.compare_and_delete("k", "v") is False
    kv.set("k", "v")
    assert kv.compare_and_delete("k", "other") is False
    assert kv.exists("k")
    assert kv.compare_and_delete("k", "v") is True
    assert not kv.exists("k")


def test_compare_and_delete_none_matches_a_stored_null(kv: KV) -> None:
    kv.set("k", None)
    assert kv.compare_and_delete("k", None) is True
    assert not kv.exists("k")


# -- clear / size --------------------------------------------------------------


def test_clear_and_size(kv: KV) -> None:
    assert kv.size() == 0
    for i in range(25):
        kv.set(f"k{i}", i)
    assert kv.size() == 25
    assert kv.clear() is True
    assert kv.size() == 0
    assert kv.random_key() == ""
    assert kv.list() == []
    kv.set("again", 1)
    assert kv.size() == 1
    assert kv.random_key() == "again"


def test_size_counts_keys_not_writes(kv: KV) -> None:
    kv.set("a", 1)
    kv.set("a", 2)
    kv.increment_by("b", 1)
    kv.swap("c", 1)
    kv.get_or_set("a", 3)
    kv.compare_and_swap("d", None, 1)
    kv.delete("c")
    assert kv.size() == 3


# -- scan / list -------------------------------------------------------------------


def _fill(kv: KV, keys: list[str]) -> None:
    for key in keys:
        kv.set(key, key.upper())


def test_scan_returns_everything_in_byte_order(kv: KV) -> None:
    keys = ["b", "a", "ab", "a:2", "a:10", "Z", "é", "~", "a\x00z"]
    _fill(kv, keys)
    page = kv.scan()
    assert isinstance(page, ScanPage)
    assert [e.key for e in page.entries] == sorted(keys, key=lambda k: k.encode())
    assert page.entries[0] == Entry("Z", "Z")
    assert page.cursor == "" and page.done is True


def test_scan_pages_resume_strictly_after_the_last_key(kv: KV) -> None:
    keys = [f"user:{i:03d}" for i in range(10)] + ["other:1", "user", "users:x"]
    _fill(kv, keys)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        entries, cursor, done = kv.scan(prefix="user:", limit=3, cursor=cursor)
        pages += 1
        seen.extend(e.key for e in entries)
        if done:
            assert cursor == ""
            break
        assert cursor != "" and len(entries) == 3
    assert seen == [f"user:{i:03d}" for i in range(10)]
    assert pages == 4


def test_scan_exact_multiple_of_limit_ends_done(kv: KV) -> None:
    _fill(kv, ["p:1", "p:2", "p:3", "p:4"])
    first = kv.scan("p:", 2)
    assert not first.done
    second = kv.scan("p:", 2, first.cursor)
    assert [e.key for e in second.entries] == ["p:3", "p:4"]
    assert second.done and second.cursor == ""


@pytest.mark.parametrize("limit", [0, -1, -100])
def test_scan_limit_at_most_zero_means_to_the_end(kv: KV, limit: int) -> None:
    _fill(kv, [f"k{i:02d}" for i in range(30)])
    page = kv.scan(limit=limit)
    assert len(page.entries) == 30 and page.done


def test_scan_with_no_match_is_done(kv: KV) -> None:
    _fill(kv, ["a", "b"])
    assert kv.scan("zzz", 10) == ScanPage([], "", True)


def test_scan_prefix_of_high_bytes(kv: KV) -> None:
    _fill(kv, ["\uffff", "\uffffa", "\U0010ffff", "zz"])
    assert [e.key for e in kv.list(prefix="\uffff")] == ["\uffff", "\uffffa"]
    assert [e.key for e in kv.list(prefix="\U0010ffff")] == ["\U0010ffff"]


def test_scan_cursor_resumes_after_a_deleted_key(kv: KV) -> None:
    _fill(kv, ["a", "b", "c", "d"])
    page = kv.scan(limit=2)
    kv.delete("b")
    kv.delete("c")
    rest = kv.scan(limit=2, cursor=page.cursor)
    assert [e.key for e in rest.entries] == ["d"]


def test_paged_scan_under_writes_never_repeats_or_skips_stable_keys(kv: KV) -> None:
    stable = [f"s:{i:04d}" for i in range(0, 200, 2)]
    _fill(kv, stable)
    seen: list[str] = []
    cursor = ""
    step = 0
    while True:
        page = kv.scan("s:", 7, cursor)
        seen.extend(e.key for e in page.entries)
        step += 1
        # churn between pages: new keys appear everywhere, some vanish again
        kv.set(f"s:{(step * 37) % 200:04d}x", step)
        kv.delete(f"s:{(step * 53) % 200:04d}x")
        if page.done:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen))
    assert set(stable) <= set(seen)


@pytest.mark.parametrize("cursor", ["not base64!", "====", "YQ=", "Y", "YQ==", 5, None, "a" * 1000])
def test_malformed_cursor_raises_invalid_cursor(kv: KV, cursor: object) -> None:
    with pytest.raises(InvalidCursorError):
        kv.scan(cursor=cursor)  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "error"), [({"prefix": 1}, InvalidArgumentError), ({"limit": "3"}, InvalidArgumentError), ({"limit": True}, InvalidArgumentError), ({"limit": 1.0}, InvalidArgumentError), ({"prefix": "\ud800"}, InvalidArgumentError)])
def test_scan_argument_types(kv: KV, args: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        kv.scan(**args)  # type: ignore[arg-type]


def test_list_is_the_first_page_of_scan(kv: KV) -> None:
    _fill(kv, ["a:1", "a:2", "a:3", "b:1"])
    assert kv.list(prefix="a:", limit=2) == [Entry("a:1", "A:1"), Entry("a:2", "A:2")]
    assert kv.list(prefix="a:") == kv.scan(prefix="a:").entries
    assert kv.list() == kv.scan().entries
    with pytest.raises(InvalidArgumentError):
        kv.list(limit="2")  # type: ignore[arg-type]


def test_scan_pages_decode_values(kv_string: KV) -> None:
    kv_string.set("a", "1")
    kv_string._backend.set(b"b", b"\xff")  # written by another program: set refuses it
    with pytest.raises(SerializerError):
        kv_string.scan()


# -- random_key ----------------------------------------------------------------------


def test_random_key_on_empty_store_is_empty_string(kv: KV) -> None:
    assert kv.random_key() == ""
    assert kv.random_key(prefix="x") == ""


def test_random_key_respects_prefix(kv: KV) -> None:
    _fill(kv, ["job:1", "job:2", "jobs", "other"])
    for _ in range(50):
        assert kv.random_key(prefix="job:") in {"job:1", "job:2"}
    assert kv.random_key(prefix="nothing") == ""
    assert kv.random_key(prefix="other") == "other"


@pytest.mark.parametrize("prefix", ["", "p:"])
def test_random_key_is_uniform(kv: KV, prefix: str) -> None:
    keys = [f"p:{i}" for i in range(8)] + ["q:1", "q:2"]
    _fill(kv, keys)
    matching = [k for k in keys if k.startswith(prefix)]
    draws = 8000
    counts = collections.Counter(kv.random_key(prefix) for _ in range(draws))
    assert set(counts) == set(matching)
    expected = draws / len(matching)
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in matching)
    # 99.99th percentile of chi-square with <= 9 degrees of freedom is about 33.7
    assert chi2 < 33.7, counts


def test_random_key_follows_deletes_and_clear(kv: KV) -> None:
    _fill(kv, [f"k{i}" for i in range(20)])
    for i in range(19):
        kv.delete(f"k{i}")
    for _ in range(20):
        assert kv.random_key() == "k19"
    kv.delete_if_exists("k19")
    assert kv.random_key() == ""


@pytest.mark.parametrize("track_keys", [True, False])
def test_random_key_with_and_without_tracking(open_store, track_keys: bool) -> None:  # type: ignore[no-untyped-def]
    kv = open_store(track_keys=track_keys)
    _fill(kv, ["a", "b", "c"])
    assert {kv.random_key() for _ in range(200)} == {"a", "b", "c"}
    assert kv.rebuild_key_list() is True
    assert {kv.random_key() for _ in range(200)} == {"a", "b", "c"}
    with pytest.raises(InvalidArgumentError):
        kv.random_key(prefix=3)  # type: ignore[arg-type]


# -- lifecycle -------------------------------------------------------------------------


def test_close_makes_every_call_raise_store_closed(kv: KV) -> None:
    kv.set("k", 1)
    kv.close()
    assert kv.closed
    calls = {
        "get": ("k",),
        "set": ("k", 1),
        "delete": ("k",),
        "exists": ("k",),
        "increment_by": ("k", 1),
        "get_or_set": ("k", 1),
        "swap": ("k", 1),
        "compare_and_swap": ("k", 1, 2),
        "delete_if_exists": ("k",),
        "compare_and_delete": ("k", 1),
        "clear": (),
        "size": (),
        "scan": (),
        "list": (),
        "random_key": (),
        "rebuild_key_list": (),
    }
    for name, args in calls.items():
        with pytest.raises(StoreClosedError):
            getattr(kv, name)(*args)
    kv.close()  # closing twice is harmless


def test_other_handles_survive_one_close(open_store) -> None:  # type: ignore[no-untyped-def]
    first = open_store()
    second = open_store()
    first.set("k", "shared")
    first.close()
    assert second.get("k") == "shared"


def test_context_manager_closes(open_store) -> None:  # type: ignore[no-untyped-def]
    with open_store() as kv:
        kv.set("k", 1)
    assert kv.closed


# -- markers: records beside the data, for the Locust plugin -----------------


def test_markers_live_outside_the_key_space(open_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    kv = open_store()
    assert read_marker(kv, "run") is None
    kv.set("k", 1)
    write_marker(kv, "run", "token-1")
    assert read_marker(open_store(), "run") == "token-1"  # every handle on the store sees it
    assert kv.size() == 1
    assert [e.key for e in kv.list()] == ["k"]
    assert {kv.random_key() for _ in range(20)} == {"k"}
    kv.backup(tmp_path / "s.kv")
    kv.clear()
    assert read_marker(kv, "run") == "token-1"  # clear keeps markers
    write_marker(kv, "run", "token-2")
    kv.restore(tmp_path / "s.kv")
    assert read_marker(kv, "run") == "token-2"  # neither backed up nor restored
    assert kv.size() == 1
