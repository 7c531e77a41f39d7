"""Restore and backup work in steps: other greenlets run inside a single large block (issue 14's stall budget).

Nothing here measures time (the machines that run the tests are noisy): a
ticker greenlet counts its wake-ups, which can only happen when the restore
or backup yields the hub. A snapshot of one block of 150,000 entries is read
and checked whole before any of its entries is handed to the backend; the
ticker must wake several times during that alone. The guarantees that
slicing a block must keep are checked on the same file: a damaged last slice
fails the restore with the store unchanged, and key order is checked across
slice boundaries exactly as inside a slice.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from locust_kv import KV
from locust_kv.backends.base import Batch
from locust_kv.errors import SnapshotReadError
from locust_kv.snapshot import STEP_BYTES, STEP_ENTRIES, SnapshotReader, inspect, write_snapshot
from locust_kv.snapshot import restore as snapshot_restore

ENTRIES = 150_000
"""One block: 150,000 entries of about 23 bytes stay under the writer's 4 MiB block."""


def _rows(count: int = ENTRIES) -> list[tuple[bytes, bytes]]:
    return [(b"big:%07d" % i, b'{"i":%d}' % i) for i in range(count)]


@pytest.fixture(scope="module")
def one_block(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid snapshot of ENTRIES entries in a single block, as bytes."""
    path = tmp_path_factory.mktemp("steps") / "one-block.kv"
    write_snapshot(path, [_rows()], "memory", "json")
    data = path.read_bytes()
    header_size = struct.unpack_from("<H", data, 10)[0]
    tag, count, _ = struct.unpack_from("<4sII", data, header_size)
    assert (tag, count) == (b"BLK\x00", ENTRIES)  # one block holds every entry
    return data


class _Ticker:
    """A greenlet that wakes every millisecond it is let run, and counts its wake-ups."""

    def __init__(self) -> None:
        self.ticks = 0
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(0.001)
            self.ticks += 1

    def __enter__(self) -> _Ticker:
        gevent.sleep(0.002)  # started and asleep
        self.ticks = 0
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._greenlet.kill()


def _damage_last_slice(data: bytes) -> bytes:
    """The snapshot with one bit of its last value flipped (in the block's last slice, before the trailer)."""
    at = len(data) - 52 - 3  # the trailer is 20 bytes and a 32-byte digest
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _contents(kv: KV) -> dict[str, Any]:
    return {entry.key: entry.value for entry in kv.scan().entries}


class _RecordingBackend:
    """Stands in for a backend: takes every slice it is given, then commits; ``stop_at`` entries: stops asking."""

    kind = "memory"

    def __init__(self, stop_at: int = 0) -> None:
        self.stop_at = stop_at
        self.slices: list[int] = []
        self.committed = False

    def replace_all(self, batches: Iterator[Batch]) -> int:
        for batch, _ in batches:
            self.slices.append(len(batch))
            if sum(self.slices) == self.stop_at:
                break  # never asks for more, so never sees an error raised after the last slice
        self.committed = True
        return sum(self.slices)


# ---------------------------------------------------------------------------
# Other greenlets run.


def test_other_greenlets_run_while_one_large_block_is_read_and_restored(
    kv: KV, tmp_path: Path, one_block: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "one-block.kv"
    path.write_bytes(one_block)
    kv.set("before", 1)
    ticks_at_first_slice: list[int] = []
    blocks = SnapshotReader.blocks

    def watched_blocks(reader: SnapshotReader) -> Iterator[Batch]:
        for number, part in enumerate(blocks(reader)):
            if number == 0:
                ticks_at_first_slice.append(ticker.ticks)
            yield part

    monkeypatch.setattr(SnapshotReader, "blocks", watched_blocks)
    with _Ticker() as ticker:
        assert gevent.spawn(kv.restore, path).get().total_entries == ENTRIES
        ticks = ticker.ticks
    # The block is read, hashed and checked whole before its first entry is
    # handed over: the ticker ran during that alone, and all along after it.
    assert ticks_at_first_slice[0] >= 3, ticks_at_first_slice
    assert ticks >= 10, ticks
    assert kv.size() == ENTRIES
    assert not kv.exists("before")
    assert kv.get("big:0149999") == {"i": 149_999}


def test_other_greenlets_run_while_one_large_batch_is_written(tmp_path: Path, one_block: bytes) -> None:
    at_progress: list[int] = []
    with _Ticker() as ticker:
        writing = gevent.spawn(
            write_snapshot, tmp_path / "out.kv", [_rows()], "memory", "json", lambda done: at_progress.append(ticker.ticks)
        )
        assert writing.get()[0] == ENTRIES
    assert at_progress[0] >= 3, at_progress  # progress comes after the batch: the ticker ran while it was written
    assert (tmp_path / "out.kv").read_bytes()[-52:] == one_block[-52:]  # the same blocks: the same trailer and digest


def test_other_greenlets_run_during_a_backup(kv: KV, tmp_path: Path, one_block: bytes) -> None:
    path = tmp_path / "one-block.kv"
    path.write_bytes(one_block)
    kv.restore(path)
    with _Ticker() as ticker:
        assert gevent.spawn(kv.backup, tmp_path / "backup.kv").get().total_entries == ENTRIES
        ticks = ticker.ticks
    assert ticks >= 3, ticks
    assert inspect(tmp_path / "backup.kv").entries == ENTRIES


# ---------------------------------------------------------------------------
# The guarantees slicing keeps.


def test_a_damaged_last_slice_fails_the_restore_with_the_store_unchanged(kv: KV, tmp_path: Path, one_block: bytes) -> None:
    path = tmp_path / "damaged.kv"
    path.write_bytes(_damage_last_slice(one_block))
    kv.set("kept", {"n": 1})
    with pytest.raises(SnapshotReadError, match="checksum mismatch"):
        kv.restore(path)
    assert _contents(kv) == {"kept": {"n": 1}}
    kv.set("writable-after", True)


def test_the_last_slice_is_handed_over_only_after_the_trailer_is_verified(tmp_path: Path, one_block: bytes) -> None:
    path = tmp_path / "damaged.kv"
    path.write_bytes(_damage_last_slice(one_block))
    backend = _RecordingBackend(stop_at=ENTRIES)
    with pytest.raises(SnapshotReadError, match="checksum mismatch"):
        snapshot_restore(backend, path, 0, 0)  # type: ignore[arg-type]
    assert not backend.committed
    # The block came in slices, every one but the last handed over before the trailer was read.
    assert len(backend.slices) >= ENTRIES // STEP_ENTRIES - 1
    assert ENTRIES - STEP_ENTRIES <= sum(backend.slices) < ENTRIES

    path.write_bytes(one_block)
    backend = _RecordingBackend(stop_at=ENTRIES)
    assert snapshot_restore(backend, path, 0, 0) == (ENTRIES, 0)  # type: ignore[arg-type]
    assert backend.committed
    assert max(backend.slices) <= STEP_ENTRIES


@pytest.mark.parametrize(
    ("where", "fault"),
    [
        (STEP_ENTRIES, "repeated"),  # the first key of the second slice equals the last of the first
        (STEP_ENTRIES, "descending"),
        (3 * STEP_ENTRIES + 1, "repeated"),  # inside a slice
        (ENTRIES - 1, "descending"),  # the very last entry
    ],
)
def test_key_order_is_checked_across_slice_boundaries(tmp_path: Path, where: int, fault: str) -> None:
    rows = _rows()
    key = rows[where - 1][0] if fault == "repeated" else b"big:0000000"
    rows[where] = (key, rows[where][1])
    path = tmp_path / "disordered.kv"
    write_snapshot(path, [rows], "memory", "json")  # the writer trusts its caller's order
    with pytest.raises(SnapshotReadError, match="keys are not in strictly ascending order"):
        inspect(path)
    backend = _RecordingBackend()
    with pytest.raises(SnapshotReadError, match="keys are not in strictly ascending order"):
        snapshot_restore(backend, path, 0, 0)  # type: ignore[arg-type]
    assert backend.slices == []  # a block is checked whole before its first slice is handed over
    assert not backend.committed


def test_slices_are_bounded_by_entries_and_bytes_and_give_back_every_entry(tmp_path: Path) -> None:
    sizes = [0, 1, 40, 3_000, STEP_BYTES // 3, STEP_BYTES + 5, 20]
    rows = [(b"mixed:%05d" % i, b"v" * sizes[i % len(sizes)]) for i in range(4_000)]
    path = tmp_path / "mixed.kv"
    write_snapshot(path, [rows[:1_500], rows[1_500:]], "memory", "")
    read: list[tuple[bytes, bytes]] = []
    with SnapshotReader(path) as reader:
        for part, expiries in reader.blocks():
            assert expiries is None
            assert 1 <= len(part) <= STEP_ENTRIES
            assert len(part) == 1 or sum(len(k) + len(v) for k, v in part) <= STEP_BYTES
            read.extend(part)
        assert reader.info.verified
    assert read == rows
