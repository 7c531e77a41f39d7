"""Backup and restore of a whole store, per entry and in MB/s.

locust_kv's ``backup``/``restore`` write and read its versioned, checksummed
snapshot format (a header, blocks of lengths and payload, a SHA-256
trailer; the temp file is fsynced and renamed into place). The floors do the
same work with the least code: the entries in key order go to a temp file as
blocks of lengths and payload with a SHA-256 over them, fsync, rename; restore
reads the file back, checks the digest, and replaces the dataset (a new dict;
one LMDB write transaction that empties the database and appends every
entry). Redis's form of a backup is ``SAVE`` (an RDB file); it has no online
restore from a file. The "snapshot format alone" row writes and reads
locust_kv's format with no store (the approach of bench_snapshot.py): what
the format costs on its own.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from array import array
from typing import Any

from peers import DictFloor, LmdbFloor, RedisPeer

__all__ = ["FormatAlone", "floor_backup", "floor_restore", "run"]

_BLOCK = struct.Struct("<II")
_BATCH = 10_000


def _write_blocks(path: str, batches: Any) -> int:
    temp = path + ".tmp"
    digest = hashlib.sha256()
    entries = 0
    with open(temp, "wb", buffering=1 << 20) as f:
        for batch in batches:
            lengths = array("I")
            for k, v in batch:
                lengths.append(len(k))
                lengths.append(len(v))
            payload = b"".join([b for kv in batch for b in kv])
            head = _BLOCK.pack(len(batch), len(payload))
            for part in (head, lengths.tobytes(), payload):
                digest.update(part)
                f.write(part)
            entries += len(batch)
        f.write(digest.digest())
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return entries


def _read_blocks(path: str) -> list[list[tuple[bytes, bytes]]]:
    with open(path, "rb") as f:
        data = f.read()
    body, expected = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != expected:
        raise ValueError("digest mismatch")
    view = memoryview(body)
    pos, blocks = 0, []
    while pos < len(body):
        count, size = _BLOCK.unpack_from(body, pos)
        pos += _BLOCK.size
        lengths = array("I")
        lengths.frombytes(view[pos : pos + 8 * count])
        pos += 8 * count
        batch = []
        for i in range(count):
            kl, vl = lengths[2 * i], lengths[2 * i + 1]
            batch.append((bytes(view[pos : pos + kl]), bytes(view[pos + kl : pos + kl + vl])))
            pos += kl + vl
        blocks.append(batch)
    return blocks


def floor_backup(impl: Any, path: str) -> int:
    if isinstance(impl, DictFloor):
        data, order = impl.data, impl.order
        with impl.lock:  # point in time, as the memory backend's strict backup

            def batches() -> Any:
                for start in range(0, len(order), _BATCH):
                    yield [(k.encode(), data[k]) for k in order[start : start + _BATCH]]

            return _write_blocks(path, batches())
    with impl.env.begin(db=impl.data_db) as txn:  # one read transaction: point in time

        def batches() -> Any:
            cursor = txn.cursor()
            batch = []
            for item in cursor.iternext():
                batch.append(item)
                if len(batch) == _BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

        return _write_blocks(path, batches())


def floor_restore(impl: Any, path: str) -> int:
    blocks = _read_blocks(path)
    if isinstance(impl, DictFloor):
        data = {k.decode(): v for batch in blocks for k, v in batch}
        order = list(data)  # blocks ascend, so this is the sorted key list scans and random_key use
        with impl.lock:
            impl.data, impl.order = data, order
        return len(data)
    with impl.env.begin(write=True, db=impl.data_db) as txn:
        txn.drop(impl.data_db, delete=False)
        cursor = txn.cursor()
        total = 0
        for batch in blocks:
            total += cursor.putmulti(batch, append=True)[1]
    return total


class FormatAlone:
    """locust_kv's snapshot format with no store: entries already in memory written and read back."""

    label = "snapshot format alone"

    def __init__(self, items: list[tuple[str, bytes]]) -> None:
        rows = [(k.encode(), v) for k, v in items]
        self.batches = [rows[i : i + _BATCH] for i in range(0, len(rows), _BATCH)]

    def backup(self, path: str) -> int:
        from locust_kv.snapshot import write_snapshot

        return write_snapshot(path, self.batches, "memory", "json")[0]

    def restore(self, path: str) -> int:
        from locust_kv.snapshot import SnapshotReader

        with SnapshotReader(path) as reader:
            return sum(len(block) for block, _ in reader.blocks())


def run(impls: dict[str, Any], n: int, rounds: int, workdir: str, progress: Any = print) -> dict[str, Any]:
    """Per implementation: backup and restore seconds per round, and the file size."""
    out: dict[str, Any] = {}
    for name in impls:
        out[name] = {"backup": [], "restore": [], "bytes": 0}
    for r in range(rounds):
        names = list(impls)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            impl = impls[name]
            path = os.path.join(workdir, f"backup-{name}.snap")
            if isinstance(impl, FormatAlone):
                start = time.perf_counter()
                entries = impl.backup(path)
                middle = time.perf_counter()
                restored = impl.restore(path)
                end = time.perf_counter()
                out[name]["backup"].append(middle - start)
                out[name]["restore"].append(end - middle)
                out[name]["bytes"] = os.path.getsize(path)
                out[name]["entries"] = entries
                continue
            if isinstance(impl, RedisPeer):
                start = time.perf_counter()
                impl.r.save()
                out[name]["backup"].append(time.perf_counter() - start)
                rdb = os.path.join(impl.directory, "dump.rdb")
                out[name]["bytes"] = os.path.getsize(rdb) if os.path.exists(rdb) else 0
                out[name]["entries"] = impl.r.dbsize()
                continue
            if isinstance(impl, (DictFloor, LmdbFloor)):
                start = time.perf_counter()
                entries = floor_backup(impl, path)
                middle = time.perf_counter()
                restored = floor_restore(impl, path)
            else:
                start = time.perf_counter()
                entries = impl.kv.backup(path).total_entries
                middle = time.perf_counter()
                restored = impl.kv.restore(path).total_entries
            end = time.perf_counter()
            if entries != restored or entries < n:
                raise RuntimeError(f"{name}: backed up {entries} entries, restored {restored}")
            out[name]["backup"].append(middle - start)
            out[name]["restore"].append(end - middle)
            out[name]["bytes"] = os.path.getsize(path)
            out[name]["entries"] = entries
        progress(f"backup/restore round {r + 1}/{rounds}")
    return out
