"""Every disk error name, provoked through the public API with real faults; the lmdb error table.

Faults are real: a directory or a file where the store or its directory should
be, a read-only directory (for root, in a child without the capabilities that
ignore permission bits), a file that is not LMDB, a foreign LMDB file, a named
database dropped by another program, a page of the file damaged under the
running store, a map that may not grow. Nothing is mocked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import pytest

from locust_kv import KV, open_kv
from locust_kv.backends.lmdb import errors as disk_errors
from locust_kv.errors import (
    BucketNotFoundError,
    DiskPathError,
    DiskStoreDeleteError,
    DiskStoreExistsError,
    DiskStoreFullError,
    DiskStoreIndexError,
    DiskStoreOpenError,
    DiskStoreReadError,
    DiskStoreScanError,
    DiskStoreSizeError,
    DiskStoreWriteError,
    KeyListRebuildError,
    KVError,
    StoreClosedError,
)

from .disk_helpers import (
    damage_page,
    main_root_page,
    named_root_page,
    repair_page,
    run_python,
)

# -- the table ------------------------------------------------------------------------------


def _lmdb_error_classes() -> list[type[lmdb.Error]]:
    found: list[type[lmdb.Error]] = [lmdb.Error]
    pending = list(lmdb.Error.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


FAMILIES = {
    "open": DiskStoreOpenError,
    "read": DiskStoreReadError,
    "exists": DiskStoreExistsError,
    "write": DiskStoreWriteError,
    "delete": DiskStoreDeleteError,
    "scan": DiskStoreScanError,
    "size": DiskStoreSizeError,
    "index": DiskStoreIndexError,
    "rebuild": KeyListRebuildError,
}
FIXED = {
    "MapFullError": DiskStoreFullError,
    "DiskError": DiskStoreFullError,
    "NotFoundError": BucketNotFoundError,
    "IncompatibleError": BucketNotFoundError,
    "BadDbiError": BucketNotFoundError,
}


def test_every_lmdb_error_class_has_a_row() -> None:
    names = {cls.__name__ for cls in _lmdb_error_classes()}
    assert names <= set(disk_errors.LMDB_ERRORS), sorted(names - set(disk_errors.LMDB_ERRORS))
    assert len(names) >= 29  # py-lmdb 3.0 has 29 subclasses under lmdb.Error


@pytest.mark.parametrize("lmdb_class", _lmdb_error_classes(), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_lmdb_error_maps_to_its_catalogued_name(lmdb_class: type[lmdb.Error], family: str) -> None:
    exc = lmdb_class("mdb_put", 0) if lmdb_class is not lmdb.Error else lmdb.Error("mdb_get: boom")
    mapped = disk_errors.map_lmdb_error(exc, getattr(disk_errors, family.upper()))
    expected = FIXED.get(lmdb_class.__name__, FAMILIES[family])
    assert type(mapped) is expected
    assert str(mapped).startswith(f"{expected.name}: ")
    assert lmdb_class.__name__ in str(mapped)


# -- configuration: paths and opening --------------------------------------------------------


def test_disk_path_error_for_a_directory_or_a_file_in_the_way(tmp_path: Path) -> None:
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=tmp_path / "file" / "s.lmdb")


def test_disk_path_error_for_a_directory_that_cannot_be_created(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    try:
        out = run_python(
            f"""
            from locust_kv import open_kv
            from locust_kv.errors import KVError
            try:
                open_kv(backend="disk", path={str(readonly / "sub" / "s.lmdb")!r})
            except KVError as err:
                print(err.name, type(err.__cause__).__name__)
            """,
            unprivileged=True,
        )
    finally:
        readonly.chmod(0o755)
    assert out.split() == ["DiskPathError", "PermissionError"]


def test_disk_store_open_error_in_a_read_only_directory(tmp_path: Path) -> None:
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    try:
        out = run_python(
            f"""
            from locust_kv import open_kv
            from locust_kv.errors import KVError
            try:
                open_kv(backend="disk", path={str(readonly / "s.lmdb")!r})
            except KVError as err:
                print(err.name, type(err.__cause__).__name__, "Permission denied" in str(err))
            """,
            unprivileged=True,
        )
    finally:
        readonly.chmod(0o755)
    name, cause, reason = out.split()
    assert name == "DiskStoreOpenError" and reason == "True"
    assert cause in ("PermissionError", "ReadonlyError")


def test_disk_store_open_error_for_a_file_that_is_not_lmdb(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text\n" * 2000)
    with pytest.raises(DiskStoreOpenError) as caught:
        open_kv(backend="disk", path=path)
    assert isinstance(caught.value.__cause__, lmdb.InvalidError)
    assert "not an LMDB file" in str(caught.value)
    assert path.read_bytes() == b"just some text\n" * 2000  # left alone


def test_disk_store_open_error_when_the_lock_file_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "s.lmdb-lock").mkdir()
    with pytest.raises(DiskStoreOpenError) as caught:
        open_kv(backend="disk", path=tmp_path / "s.lmdb")
    assert isinstance(caught.value.__cause__, lmdb.Error)


def test_disk_store_open_error_for_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    open_kv(backend="disk", path=path).close()
    with lmdb.open(str(path), subdir=False, max_dbs=8) as env, env.begin(write=True) as txn:
        txn.put(b"locust_kv.format", b"99")
    with pytest.raises(DiskStoreOpenError) as caught:
        open_kv(backend="disk", path=path)
    assert "format" in str(caught.value)


def test_a_damaged_page_found_while_opening_is_an_open_error(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k", 1)
    damage_page(path, main_root_page(path))
    with pytest.raises(DiskStoreOpenError) as caught:
        open_kv(backend="disk", path=path)
    assert isinstance(caught.value.__cause__, lmdb.CorruptedError)


# -- a foreign or damaged layout ---------------------------------------------------------------


def test_bucket_not_found_for_a_foreign_lmdb_file(tmp_path: Path) -> None:
    path = tmp_path / "other-tool.lmdb"
    with lmdb.open(str(path), subdir=False) as env, env.begin(write=True) as txn:
        txn.put(b"their-key", b"their value")
    with pytest.raises(BucketNotFoundError) as caught:
        open_kv(backend="disk", path=path)
    assert "not a locust_kv store" in str(caught.value)
    with lmdb.open(str(path), subdir=False) as env, env.begin() as txn:
        assert txn.get(b"their-key") == b"their value"  # untouched


def test_bucket_not_found_when_a_named_database_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    open_kv(backend="disk", path=path).close()
    with lmdb.open(str(path), subdir=False, max_dbs=8) as env:
        db = env.open_db(b"locust_kv.slots.1")
        with env.begin(write=True) as txn:
            txn.drop(db, delete=True)
    with pytest.raises(BucketNotFoundError) as caught:
        open_kv(backend="disk", path=path)
    assert isinstance(caught.value.__cause__, lmdb.NotFoundError)


def test_bucket_not_found_when_the_state_record_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    kv = open_kv(backend="disk", path=path)
    kv.set("k", 1)
    run_python(  # another program damages the running store
        f"""
        import lmdb
        with lmdb.open({str(path)!r}, subdir=False, max_dbs=8) as env, env.begin(write=True) as txn:
            txn.delete(b"locust_kv.state")
        """
    )
    with pytest.raises(BucketNotFoundError):
        kv.get("k")
    with pytest.raises(BucketNotFoundError):
        kv.set("k", 2)
    kv.close()


# -- a page damaged under the running store: each operation's own name -------------------------

OPERATIONS: list[tuple[str, Callable[[KV], object], type[KVError]]] = [
    ("get", lambda kv: kv.get("k"), DiskStoreReadError),
    ("exists", lambda kv: kv.exists("k"), DiskStoreExistsError),
    ("set", lambda kv: kv.set("k", 2), DiskStoreWriteError),
    ("increment_by", lambda kv: kv.increment_by("n", 1), DiskStoreWriteError),
    ("get_or_set", lambda kv: kv.get_or_set("k", 2), DiskStoreWriteError),
    ("swap", lambda kv: kv.swap("k", 2), DiskStoreWriteError),
    ("compare_and_swap", lambda kv: kv.compare_and_swap("k", 1, 2), DiskStoreWriteError),
    ("delete", lambda kv: kv.delete("k"), DiskStoreDeleteError),
    ("delete_if_exists", lambda kv: kv.delete_if_exists("k"), DiskStoreDeleteError),
    ("compare_and_delete", lambda kv: kv.compare_and_delete("k", 1), DiskStoreDeleteError),
    ("clear", lambda kv: kv.clear(), DiskStoreDeleteError),
    ("size", lambda kv: kv.size(), DiskStoreSizeError),
    ("scan", lambda kv: kv.scan(), DiskStoreScanError),
    ("list", lambda kv: kv.list(prefix="k"), DiskStoreScanError),
    ("random_key", lambda kv: kv.random_key(), DiskStoreIndexError),
    ("random_key_prefix", lambda kv: kv.random_key("k"), DiskStoreIndexError),
    ("rebuild_key_list", lambda kv: kv.rebuild_key_list(), KeyListRebuildError),
]


@pytest.fixture
def damaged_main(tmp_path: Path) -> Iterator[KV]:
    """A store whose main database root page is damaged after it opened: every transaction fails."""
    path = tmp_path / "s.lmdb"
    kv = open_kv(backend="disk", path=path)
    kv.set("k", 1)
    page = main_root_page(path)
    before = damage_page(path, page)
    yield kv
    repair_page(path, page, before)
    kv.close()


@pytest.mark.parametrize(("name", "call", "error"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_a_damaged_page_fails_each_operation_with_its_name(damaged_main: KV, name: str, call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error) as caught:
        call(damaged_main)
    err = caught.value
    assert isinstance(err.__cause__, lmdb.CorruptedError)
    assert err.backend == "disk" and err.operation == name.removesuffix("_prefix")
    assert "CorruptedError" in err.message


def test_a_damaged_data_page_fails_reads_and_writes_of_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k", 1)
        with kv._backend._env.begin() as txn:
            page = named_root_page(txn, b"locust_kv.data.0")
        before = damage_page(path, page)
        try:
            with pytest.raises(DiskStoreReadError):
                kv.get("k")
            with pytest.raises(DiskStoreWriteError):
                kv.set("k", 2)
            with pytest.raises(DiskStoreScanError):
                kv.list()
            assert kv.size() == 1  # the count is in the database's record, not its pages
        finally:
            repair_page(path, page, before)
        assert kv.get("k") == 1


def test_the_failing_key_stays_out_of_the_text(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    kv = open_kv(backend="disk", path=path)
    kv.set("user:98765", 1)
    page = main_root_page(path)
    before = damage_page(path, page)
    try:
        with pytest.raises(DiskStoreReadError) as caught:
            kv.get("user:98765")
    finally:
        repair_page(path, page, before)
        kv.close()
    assert caught.value.key == "user:98765"
    assert "98765" not in str(caught.value) and "98765" not in repr(caught.value)


# -- full, closed ----------------------------------------------------------------------------------


def test_disk_store_full_error_when_the_map_may_not_grow(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=1 << 16, max_map_size=1 << 20)
    with pytest.raises(DiskStoreFullError) as caught:
        for i in range(10_000):
            kv.set(f"k{i}", "v" * 1_000)
    # LMDB's MapFullError, or refused before it: the last part of the map is kept for deletes.
    assert isinstance(caught.value.__cause__, lmdb.MapFullError) or "kept for deletes" in str(caught.value)
    assert caught.value.operation == "set"
    with pytest.raises(DiskStoreFullError) as again:
        kv.get_or_set("another", "w" * 20_000)
    assert again.value.operation == "get_or_set"
    assert kv.exists("k0") and not kv.exists("another")
    kv.close()


def test_store_closed_error_after_close(tmp_path: Path) -> None:
    kv = open_kv(backend="disk", path=tmp_path / "s.lmdb")
    kv.set("k", 1)
    backend = kv._backend
    kv.close()
    with pytest.raises(StoreClosedError):
        kv.get("k")
    with pytest.raises(StoreClosedError):  # the backend itself refuses to reopen
        backend.get(b"k")


def test_errors_are_catalogued_and_never_raw(tmp_path: Path) -> None:
    """Whatever goes wrong above reaches the caller as a KVError: no lmdb.Error or OSError escapes."""
    path = tmp_path / "s.lmdb"
    path.write_bytes(os.urandom(10_000))
    with pytest.raises(KVError):
        open_kv(backend="disk", path=path)
