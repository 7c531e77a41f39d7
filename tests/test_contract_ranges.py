"""Key ranges, on every backend: ``start``/``end`` bounds, ``offset``, and their cursors and counts.

``start`` is inclusive and ``end`` exclusive, both compared by the UTF-8
bytes of the keys; they combine with ``prefix`` (the keys with the prefix
and in the range). ``offset`` skips keys of the range, counted from where the
page starts: the range's first key, or the key after the cursor's. An empty
or inverted range is empty; ``end=""`` is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locust_kv import KV, Entry, KeyScanPage, ScanPage
from locust_kv.errors import InvalidArgumentError, InvalidCursorError
from locust_kv.store import set_reporter

KEYS = [f"u:{i:02d}" for i in range(20)] + ["a", "t", "u", "u;", "v", "é", "\U0010ffff"]


def _fill(kv: KV, keys: list[str]) -> None:
    kv.set_many([(key, key.upper()) for key in keys])


def _sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=str.encode)


def _in(keys: list[str], prefix: str = "", start: str | None = None, end: str | None = None) -> list[str]:
    """The reference: the matching keys of ``keys``, in byte order, by plain comparisons of bytes."""
    low = None if start is None else start.encode()
    high = None if end is None else end.encode()
    return [
        k
        for k in _sorted(keys)
        if k.startswith(prefix) and (low is None or k.encode() >= low) and (high is None or k.encode() < high)
    ]


def _pages(kv: KV, keys_only: bool, limit: int, **bounds: Any) -> tuple[list[str], int]:
    """Every key of a paged scan, and the number of pages."""
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        if keys_only:
            page: Any = kv.scan_keys(limit=limit, cursor=cursor, **bounds)
            assert isinstance(page, KeyScanPage)
            seen.extend(page.keys)
        else:
            page = kv.scan(limit=limit, cursor=cursor, **bounds)
            assert isinstance(page, ScanPage)
            assert all(e == Entry(e.key, e.key.upper()) for e in page.entries)
            seen.extend(e.key for e in page.entries)
        pages += 1
        if page.done:
            assert page.cursor == ""
            return seen, pages
        assert page.cursor != ""
        cursor = page.cursor


# -- bounds ---------------------------------------------------------------------------


def test_start_is_inclusive_and_end_exclusive(kv: KV) -> None:
    _fill(kv, KEYS)
    assert kv.list_keys(start="u:03", end="u:07") == ["u:03", "u:04", "u:05", "u:06"]
    assert [e.key for e in kv.list(start="u:03", end="u:07")] == ["u:03", "u:04", "u:05", "u:06"]
    assert kv.count(start="u:03", end="u:07") == 4
    # bounds that are not keys fall between them
    assert kv.list_keys(start="u:035", end="u:065") == ["u:04", "u:05", "u:06"]
    assert kv.scan_keys(start="u:035", end="u:065") == KeyScanPage(["u:04", "u:05", "u:06"], "", True)


def test_one_bound_alone(kv: KV) -> None:
    _fill(kv, KEYS)
    assert kv.list_keys(start="u;") == ["u;", "v", "é", "\U0010ffff"]
    assert kv.list_keys(end="u") == ["a", "t"]
    assert kv.count(start="u;") == 4 and kv.count(end="u") == 2
    assert kv.count(start=None, end=None) == kv.size() == len(KEYS)
    assert kv.list_keys(start="") == _sorted(KEYS)  # every key is >= ""


def test_bounds_combine_with_the_prefix(kv: KV) -> None:
    _fill(kv, KEYS)
    assert kv.list_keys("u:", start="u:17") == ["u:17", "u:18", "u:19"]
    assert kv.list_keys("u:", end="u:02") == ["u:00", "u:01"]
    assert kv.list_keys("u:", start="u:05", end="u:08") == ["u:05", "u:06", "u:07"]
    # bounds outside the prefix leave the prefix in charge
    assert kv.list_keys("u:", start="a", end="z") == [f"u:{i:02d}" for i in range(20)]
    assert kv.count("u:", start="a", end="z") == 20
    # a prefix and a range that do not meet
    assert kv.list_keys("u:", start="v") == [] and kv.count("u:", start="v") == 0
    assert kv.list_keys("u:", end="u") == [] and kv.count("u:", end="u:") == 0
    assert kv.scan("u:", start="u;") == ScanPage([], "", True)


@pytest.mark.parametrize(("start", "end"), [("u:05", "u:05"), ("u:07", "u:03"), ("z", "a"), ("\U0010ffff", "é")])
def test_an_empty_or_inverted_range_is_empty(kv: KV, start: str, end: str) -> None:
    _fill(kv, KEYS)
    assert kv.scan(start=start, end=end) == ScanPage([], "", True)
    assert kv.scan(start=start, end=end, limit=2, offset=1) == ScanPage([], "", True)
    assert kv.scan_keys(start=start, end=end, limit=1) == KeyScanPage([], "", True)
    assert kv.list(start=start, end=end) == [] and kv.list_keys(start=start, end=end) == []
    assert kv.count(start=start, end=end) == 0


def test_byte_order_of_multibyte_keys(kv: KV) -> None:
    # UTF-8 byte order is code point order, which is not UTF-16's: U+10000 sorts after U+FFFF
    # (F0 90 80 80 > EF BF BF), while a UTF-16 comparison (JavaScript's) puts it first.
    keys = ["z", "é", "ÿ", "Ā", "\ue000", "\uffff", "\U00010000", "\U0010ffff", "\U0010ffff\U0010ffff", "éa", "éz"]
    _fill(kv, keys)
    assert kv.list_keys() == ["z", "é", "éa", "éz", "ÿ", "Ā", "\ue000", "\uffff", "\U00010000", "\U0010ffff", "\U0010ffff\U0010ffff"]
    assert kv.list_keys(start="\uffff", end="\U0010ffff") == ["\uffff", "\U00010000"]
    assert kv.list_keys(start="\U00010000") == ["\U00010000", "\U0010ffff", "\U0010ffff\U0010ffff"]
    assert kv.count(start="\ue000", end="\U00010000") == 2
    assert kv.list_keys("é", start="éa", end="éz") == ["éa"]
    assert kv.list_keys(start="é", end="é\x00") == ["é"]  # exactly one key: [k, k + NUL)
    # The highest keys at the end of a range: the largest code point, and a bound past every key.
    assert kv.list_keys(start="\U0010ffff") == ["\U0010ffff", "\U0010ffff\U0010ffff"]
    assert kv.list_keys(start="\U0010ffff", end="\U0010ffff\U0010ffff") == ["\U0010ffff"]
    assert kv.list_keys(start="\U00010000", end="\U0010ffff" * 3) == ["\U00010000", "\U0010ffff", "\U0010ffff\U0010ffff"]
    assert kv.count("\U0010ffff", start="\U0010ffff\x00") == 1
    assert kv.list_keys(start="\U0010ffff" * 3) == [] and kv.count(start="\U0010ffff" * 3) == 0


def test_bounds_longer_than_any_key(kv: KV) -> None:
    longest = "k" * 511  # the longest key
    _fill(kv, ["k", longest, "l"])
    assert kv.list_keys(start="k" * 600) == ["l"]
    assert kv.list_keys(end="k" * 600) == ["k", longest]
    assert kv.list_keys(start=longest, end="k" * 600) == [longest]
    assert kv.count(start="k" * 600, end="l" * 600) == 1


# -- offset and limit ----------------------------------------------------------------------


def test_offset_skips_keys_of_the_range(kv: KV) -> None:
    _fill(kv, KEYS)
    inside = _in(KEYS, "u:", "u:02", "u:15")
    assert kv.list_keys("u:", start="u:02", end="u:15", offset=3, limit=4) == inside[3:7]
    assert [e.key for e in kv.list("u:", start="u:02", end="u:15", offset=3, limit=4)] == inside[3:7]
    assert kv.list_keys("u:", start="u:02", end="u:15", offset=10) == inside[10:]
    assert kv.list_keys(offset=len(KEYS) - 1) == [_sorted(KEYS)[-1]]
    assert kv.list_keys(offset=len(KEYS)) == [] and kv.list_keys(offset=10**30) == []
    assert len(inside) == 13
    page = kv.scan_keys("u:", start="u:02", end="u:15", offset=8, limit=4)
    assert page == KeyScanPage(inside[8:12], page.cursor, False) and page.cursor
    # the last keys: done, whether the limit is reached exactly or not
    assert kv.scan_keys("u:", start="u:02", end="u:15", offset=8, limit=5) == KeyScanPage(inside[8:], "", True)
    assert kv.scan_keys("u:", start="u:02", end="u:15", offset=8, limit=6) == KeyScanPage(inside[8:], "", True)


def test_a_cursor_resumes_after_an_offset_page_and_offset_counts_from_the_cursor(kv: KV) -> None:
    _fill(kv, KEYS)
    inside = _in(KEYS, start="u:01", end="u:19")
    first = kv.scan(start="u:01", end="u:19", offset=2, limit=3)
    assert [e.key for e in first.entries] == inside[2:5]
    # the cursor resumes strictly after the page; offset 0 goes on from there
    second = kv.scan(start="u:01", end="u:19", limit=3, cursor=first.cursor)
    assert [e.key for e in second.entries] == inside[5:8]
    # an offset with a cursor skips that many keys after the cursor's
    third = kv.scan_keys(start="u:01", end="u:19", limit=3, cursor=second.cursor, offset=4)
    assert third.keys == inside[12:15]
    assert kv.scan_keys(start="u:01", end="u:19", cursor=third.cursor, offset=100) == KeyScanPage([], "", True)


def test_offset_pages_cover_the_range_once(kv: KV) -> None:
    """Pages by offset (``offset=n * limit``), as a table's page numbers: the range exactly once."""
    _fill(kv, KEYS)
    inside = _in(KEYS, "u:", "u:03")
    pages = [kv.list_keys("u:", 4, start="u:03", offset=n * 4) for n in range(6)]
    assert [k for page in pages for k in page] == inside and pages[-1] == []


@pytest.mark.parametrize("keys_only", [False, True])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, 0])
def test_cursors_page_through_a_range(kv: KV, keys_only: bool, limit: int) -> None:
    _fill(kv, KEYS)
    for bounds in ({"start": "u:03", "end": "u:17"}, {"prefix": "u:", "start": "u:10"}, {"end": "u:05"}, {"start": "u;"}):
        seen, pages = _pages(kv, keys_only, limit, **bounds)
        expected = _in(KEYS, **bounds)
        assert seen == expected
        assert kv.count(**bounds) == len(expected)
        if limit:
            assert pages == max(1, -(-len(expected) // limit))


def test_a_cursor_from_outside_the_range_stays_in_it(kv: KV) -> None:
    _fill(kv, KEYS)
    before = kv.scan_keys(limit=1).cursor  # after "a": before the range
    assert kv.list_keys(start="u:05", end="u:08") == kv.scan_keys(start="u:05", end="u:08", cursor=before).keys
    past = kv.scan_keys(start="v", limit=1).cursor  # after "v": past the range
    assert kv.scan_keys(start="u:05", end="u:08", cursor=past) == KeyScanPage([], "", True)


def test_count_equals_the_length_of_the_listing(kv: KV) -> None:
    _fill(kv, KEYS)
    bounds = [None, "", "a", "t", "u", "u:", "u:05", "u:19", "u;", "v", "é", "\U0010ffff", "\U0010ffff\x00"]
    for prefix in ("", "u", "u:", "u:1", "é", "x"):
        for start in bounds:
            for end in bounds:
                if end == "":
                    continue
                expected = _in(KEYS, prefix, start, end)
                assert kv.count(prefix, start=start, end=end) == len(expected), (prefix, start, end)
                assert kv.list_keys(prefix, start=start, end=end) == expected, (prefix, start, end)


# -- arguments ------------------------------------------------------------------------


def _callers(kv: KV) -> list[Callable[..., object]]:
    return [kv.scan, kv.scan_keys, kv.list, kv.list_keys]


@pytest.mark.parametrize(
    "bounds",
    [{"start": 1}, {"end": 1.5}, {"start": b"a"}, {"end": b"z"}, {"start": ["a"]}, {"end": ""}, {"start": "\ud800"}, {"end": "a\udfff"}],
)
def test_bad_bounds_are_refused(kv: KV, bounds: dict[str, object]) -> None:
    kv.set("a", 1)
    for call in [*_callers(kv), kv.count]:
        with pytest.raises(InvalidArgumentError):
            call(**bounds)


@pytest.mark.parametrize("offset", [-1, -(2**70), True, False, 1.0, "2", None])
def test_bad_offsets_are_refused(kv: KV, offset: object) -> None:
    kv.set("a", 1)
    for call in _callers(kv):
        with pytest.raises(InvalidArgumentError):
            call(offset=offset)


def test_bounds_and_offset_are_keyword_only(kv: KV) -> None:
    with pytest.raises(TypeError):
        kv.scan("", 0, "", "a")  # type: ignore[misc]
    with pytest.raises(TypeError):
        kv.count("", "a")  # type: ignore[misc]
    with pytest.raises(TypeError):
        kv.list_keys("", 0, 1)  # type: ignore[misc]


def test_a_malformed_cursor_is_refused_with_a_range(kv: KV) -> None:
    with pytest.raises(InvalidCursorError):
        kv.scan(start="a", end="b", cursor="not a cursor!")
    with pytest.raises(InvalidCursorError):
        kv.scan_keys(start="a", end="b", offset=1, cursor="Y")


def test_subclasses_count_by_their_value(kv: KV) -> None:
    class Lying(str):
        def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
            return b"zzz"

    class Big(int):
        def __int__(self) -> int:
            return 0

    _fill(kv, KEYS)
    assert kv.list_keys(start=Lying("u:18"), end=Lying("u:19")) == ["u:18"]
    assert kv.list_keys("u:", offset=Big(18)) == ["u:18", "u:19"]
    assert kv.count(start=Lying("v")) == 3


def test_a_reporting_store_passes_the_bounds_on(kv: KV) -> None:
    """The Locust plugin times every call through generated wrappers: they must pass each keyword as given."""
    _fill(kv, KEYS)
    plain = {
        "scan": kv.scan("u:", 2, start="u:05", end="u:09", offset=1),
        "scan_keys": kv.scan_keys("u:", 2, start="u:05", end="u:09", offset=1),
        "list": kv.list("u:", 2, start="u:05", end="u:09", offset=1),
        "list_keys": kv.list_keys("u:", 2, start="u:05", end="u:09", offset=1),
        "count": kv.count("u:", start="u:05", end="u:09"),
    }
    reported: list[str] = []
    set_reporter(kv, lambda name, seconds, error: reported.append(name))
    try:
        timed = {
            "scan": kv.scan("u:", 2, start="u:05", end="u:09", offset=1),
            "scan_keys": kv.scan_keys("u:", 2, start="u:05", end="u:09", offset=1),
            "list": kv.list("u:", 2, start="u:05", end="u:09", offset=1),
            "list_keys": kv.list_keys("u:", 2, start="u:05", end="u:09", offset=1),
            "count": kv.count("u:", start="u:05", end="u:09"),
        }
    finally:
        set_reporter(kv, None)
    assert timed == plain and reported == list(plain)
    assert plain["list_keys"] == ["u:06", "u:07"] and plain["count"] == 4


# -- under writers ----------------------------------------------------------------------


def test_paged_range_scan_under_writes_never_repeats_or_skips_stable_keys(kv: KV) -> None:
    """Churn inside and around the range between pages: no key twice, every stable key of the range once."""
    stable = [f"s:{i:04d}" for i in range(0, 400, 2)]
    _fill(kv, stable)
    seen: list[str] = []
    cursor = ""
    step = 0
    while True:
        page = kv.scan_keys("s:", 7, cursor, start="s:0100", end="s:0300")
        seen.extend(page.keys)
        step += 1
        for shift in (37, 53, 71):
            kv.set(f"s:{(step * shift) % 400:04d}x", step)
        kv.delete(f"s:{(step * 53) % 400:04d}x")
        kv.set(f"s:{(step * 11) % 400 + 1:04d}", step)  # odd: a new key between the stable ones
        if page.done:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen))
    assert all("s:0100" <= key < "s:0300" for key in seen)
    assert set(_in(stable, start="s:0100", end="s:0300")) <= set(seen)


def test_paged_range_scan_beside_a_writer_thread(kv: KV) -> None:
    """A writer thread adds and removes keys in and around the range while pages are read."""
    stable = [f"w:{i:04d}" for i in range(0, 1000, 4)]
    _fill(kv, stable)
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                key = f"w:{(n * 7919) % 1000:04d}-churn"
                kv.set(key, n)
                kv.delete(f"w:{(n * 104729) % 1000:04d}-churn")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            seen, _ = _pages(kv, True, 9, start="w:0200", end="w:0800")
            assert len(seen) == len(set(seen))
            assert all("w:0200" <= key < "w:0800" for key in seen)
            assert set(_in(stable, start="w:0200", end="w:0800")) <= set(seen)
            counted = kv.count(start="w:0200", end="w:0800")
            assert counted >= len(_in(stable, start="w:0200", end="w:0800"))
    finally:
        stop.set()
        thread.join(30)
    assert failures == []


# -- against a sorted list ----------------------------------------------------------------

ALPHABET = "ab:é\uffff\U00010000\U0010ffff"
SMALL_KEYS = st.text(alphabet=ALPHABET, min_size=1, max_size=3)
BOUNDS = st.none() | st.text(alphabet=ALPHABET, min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(SMALL_KEYS, max_size=25, unique=True),
    prefix=st.text(alphabet=ALPHABET, max_size=2),
    start=BOUNDS,
    end=BOUNDS,
    offset=st.integers(0, 8),
    limit=st.integers(-1, 5),
)
def test_ranges_match_a_sorted_list(kv: KV, keys: list[str], prefix: str, start: str | None, end: str | None, offset: int, limit: int) -> None:
    kv.clear()
    _fill(kv, keys)
    expected = _in(keys, prefix, start, end)
    bounds: dict[str, Any] = {"prefix": prefix, "start": start, "end": end}
    assert kv.count(**bounds) == len(expected)
    window = expected[offset:]
    page_keys = window[:limit] if limit > 0 else window
    assert kv.list_keys(limit=limit, offset=offset, **bounds) == page_keys
    assert kv.list(limit=limit, offset=offset, **bounds) == [Entry(k, k.upper()) for k in page_keys]
    page = kv.scan_keys(limit=limit, offset=offset, **bounds)
    assert page.keys == page_keys and page.done == (len(page_keys) == len(window))
    # the rest of the range through cursors, from that first page
    seen = list(page.keys)
    while not page.done:
        page = kv.scan_keys(limit=limit, cursor=page.cursor, **bounds)
        seen.extend(page.keys)
    assert seen == window
