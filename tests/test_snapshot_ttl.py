"""Snapshots of expiring keys: format version 2, its checks, and the command line's ``expires_at``.

A file in which no entry expires stays version 1, byte for byte what earlier
releases wrote; a block with expiries is ``BLKX`` with one i64 per entry
after the lengths, in a version-2 file only. Every byte is still under the
trailer's digest, so damage to an expiry is refused like damage to a value.
The command line exports an expiry as ``expires_at`` (Unix seconds, to the
millisecond) and imports it back exactly.
"""

from __future__ import annotations

import struct
from pathlib import Path

import orjson
import pytest

from locust_kv.errors import SnapshotReadError
from locust_kv.snapshot import SnapshotReader, inspect, write_snapshot

from .test_cli import exported, failure_name, jsonl, run

ENDS = 1_900_000_000_123  # 2030, in Unix milliseconds


def _rows(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"k:%05d" % i, b'"v%d"' % i) for i in range(start, start + n)]


def _header_size(data: bytes) -> int:
    return int(struct.unpack_from("<H", data, 10)[0])


def _without_time(data: bytes) -> bytes:
    """A snapshot's bytes but its creation time and the header CRC that covers it."""
    size = _header_size(data)
    return data[:32] + data[40 : size - 4] + data[size:]


def _read(path: Path) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    rows: list[tuple[bytes, bytes]] = []
    ends: list[int] = []
    with SnapshotReader(path) as reader:
        for batch, expiries in reader.blocks():
            rows += batch
            ends += expiries if expiries is not None else [0] * len(batch)
        assert reader.info.verified
    return rows, ends


def test_expiries_round_trip_through_blocks_and_slices(tmp_path: Path) -> None:
    rows = _rows(5_000)
    ends = [ENDS + i if i % 3 else 0 for i in range(5_000)]
    path = tmp_path / "s.kv"
    write_snapshot(path, [(rows[:2_500], ends[:2_500]), (rows[2_500:], ends[2_500:])], "memory", "json")
    assert inspect(path).format_version == 2
    assert _read(path) == (rows, ends)


def test_a_file_without_expiries_is_version_1_and_unchanged(tmp_path: Path) -> None:
    rows = _rows(3_000)
    write_snapshot(tmp_path / "a.kv", [rows], "memory", "json")
    write_snapshot(tmp_path / "b.kv", [(rows, None)], "memory", "json")
    write_snapshot(tmp_path / "c.kv", [(rows, [0] * len(rows))], "memory", "json")  # all zero: none expires
    files = [(tmp_path / name).read_bytes() for name in ("a.kv", "b.kv", "c.kv")]
    assert all(inspect(tmp_path / n).format_version == 1 for n in ("a.kv", "b.kv", "c.kv"))
    # Only the creation time in the header (bytes 32 to 40) and so the header's CRC differ between them.
    assert len({_without_time(f) for f in files}) == 1
    assert b"BLKX" not in files[0]
    assert _read(tmp_path / "c.kv") == (rows, [0] * len(rows))


def test_only_the_blocks_with_expiries_carry_them(tmp_path: Path) -> None:
    path = tmp_path / "mixed.kv"
    write_snapshot(path, [(_rows(10), None), (_rows(10, 10), [ENDS] * 10), _rows(10, 20)], "memory", "json")
    data = path.read_bytes()
    assert data.count(b"BLKX") == 1 and data.count(b"BLK\x00") == 2
    with SnapshotReader(path) as reader:
        shapes = [None if expiries is None else len(expiries) for _, expiries in reader.blocks()]
    assert shapes == [None, 10, None]




def test_an_expiry_block_in_a_version_1_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.kv"
    write_snapshot(path, [(_rows(4), [ENDS] * 4)], "memory", "json")
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, 1)  # claim version 1, and fix the header's CRC so that only the tag is wrong
    import zlib

    size = _header_size(bytes(data))
    struct.pack_into("<I", data, size - 4, zlib.crc32(bytes(data[: size - 4])))
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotReadError, match="bad block tag"):
        inspect(path)


def test_a_damaged_expiry_is_refused_by_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "s.kv"
    write_snapshot(path, [(_rows(4), [ENDS] * 4)], "memory", "json")
    data = bytearray(path.read_bytes())
    at = data.index(b"BLKX") + 12 + 8 * 4  # the first expiry, after the block header and the lengths
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotReadError, match="checksum mismatch"):
        inspect(path)


def test_a_negative_expiry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.kv"
    write_snapshot(path, [(_rows(2), [-5, ENDS])], "memory", "json")
    with pytest.raises(SnapshotReadError, match="negative expiry"):
        inspect(path)


def test_a_future_version_is_refused_naming_the_versions_read(tmp_path: Path) -> None:
    path = tmp_path / "s.kv"
    write_snapshot(path, [_rows(2)], "memory", "json")
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, 3)
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotReadError, match="format version 3; this locust-kv reads versions 1 to 2"):
        inspect(path)


# ---------------------------------------------------------------------------
# The command line.


def test_export_and_import_keep_expiries_exactly(tmp_path: Path) -> None:
    source = tmp_path / "s.kv"
    ends = [ENDS, 0, 1_700_000_000_001]
    write_snapshot(source, [(_rows(3), ends)], "memory", "json")
    lines = exported(source, tmp_path).splitlines()
    assert [orjson.loads(line).get("expires_at") for line in lines] == [1_900_000_000.123, None, 1_700_000_000.001]
    (tmp_path / "back.jsonl").write_text("\n".join(lines) + "\n")
    run("snapshot", "import", tmp_path / "back.jsonl", "-o", tmp_path / "back.kv", cwd=tmp_path)
    assert _read(tmp_path / "back.kv") == (_rows(3), ends)

    csv_text = exported(source, tmp_path, "csv")
    assert csv_text.splitlines()[:3] == ["key,value,expires_at", 'k:00000,v0,1900000000.123', "k:00001,v1,"]
    (tmp_path / "back.csv").write_text(csv_text)
    run("snapshot", "import", tmp_path / "back.csv", "-o", tmp_path / "back2.kv", cwd=tmp_path)
    assert _read(tmp_path / "back2.kv") == (_rows(3), ends)


def test_a_snapshot_without_expiries_exports_as_before(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "s.kv", [_rows(2)], "memory", "json")
    assert exported(tmp_path / "s.kv", tmp_path, "csv").splitlines()[0] == "key,value"
    assert "expires_at" not in exported(tmp_path / "s.kv", tmp_path)


@pytest.mark.parametrize("bad", [0, -1, "soon", True, [1], 1e300])
def test_a_bad_expires_at_is_a_bad_row(tmp_path: Path, bad: object) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(jsonl({"key": "a", "value": 1, "expires_at": 1_900_000_000}, {"key": "b", "value": 2, "expires_at": bad}))
    done = run("snapshot", "import", source, "-o", tmp_path / "out.kv", cwd=tmp_path, check_status=None)
    assert failure_name(done) == "SnapshotImportError"
    assert "bad.jsonl:2: expires_at must be Unix seconds" in done.stderr
    assert not (tmp_path / "out.kv").exists()


def test_a_csv_expires_at_column_may_be_empty(tmp_path: Path) -> None:
    source = tmp_path / "s.csv"
    source.write_text("key,value,expires_at\na,1,\nb,2,1900000000.5\n")
    run("snapshot", "import", source, "-o", tmp_path / "out.kv", cwd=tmp_path)
    assert _read(tmp_path / "out.kv") == ([(b"a", b"1"), (b"b", b"2")], [0, 1_900_000_000_500])
    info = run("snapshot", "info", tmp_path / "out.kv", cwd=tmp_path).stdout
    assert "format version: 2" in info
