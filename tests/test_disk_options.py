"""Opening a disk store: the default path, paths that cannot hold a store, options and their types."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from locust_kv import open_kv
from locust_kv.backends import lmdb as disk
from locust_kv.errors import DiskPathError, InvalidOptionsError, KVOptionsConflictError


def test_default_path_is_a_file_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert disk.DEFAULT_PATH == ".locust-kv.lmdb"
    with open_kv() as kv:  # the disk backend is the default
        kv.set("k", 1)
        assert kv.backend == "disk"
        assert kv.location == str(tmp_path / ".locust-kv.lmdb")
    assert (tmp_path / ".locust-kv.lmdb").is_file()
    assert (tmp_path / ".locust-kv.lmdb-lock").is_file()
    with open_kv(path=".locust-kv.lmdb") as again:
        assert again.get("k") == 1


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.lmdb"
    with open_kv(backend="disk", path=path) as kv:
        kv.set("k", "v")
    assert path.is_file()


def test_path_like_and_str_spellings_of_one_file_share_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    first = open_kv(backend="disk", path=tmp_path / "real" / "s.lmdb")
    second = open_kv(backend="disk", path="link/../real/./s.lmdb")
    third = open_kv(backend="disk", path=str(tmp_path / "link" / "s.lmdb"))
    try:
        first.set("k", 1)
        assert second.get("k") == 1 and third.get("k") == 1
        assert first._store is second._store is third._store
    finally:
        for kv in (first, second, third):
            kv.close()


def test_a_directory_is_a_path_error(tmp_path: Path) -> None:
    with pytest.raises(DiskPathError) as caught:
        open_kv(backend="disk", path=tmp_path)
    assert "directory" in str(caught.value)
    (tmp_path / "dirlink").symlink_to(tmp_path)
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=tmp_path / "dirlink")


def test_a_file_where_a_directory_is_expected_is_a_path_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(DiskPathError) as caught:
        open_kv(backend="disk", path=tmp_path / "plain" / "store.lmdb")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=tmp_path / "plain" / "deeper" / "store.lmdb")


@pytest.mark.parametrize("path", ["", "bad\0name"])
def test_empty_or_nul_path_is_a_path_error(path: str) -> None:
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=path)


def test_bytes_path_is_an_options_error() -> None:
    class BytesPath:
        def __fspath__(self) -> bytes:
            return b"/tmp/x.lmdb"

    with pytest.raises(InvalidOptionsError):
        open_kv(backend="disk", path=BytesPath())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"durable": 1},
        {"writemap": "yes"},
        {"map_size": 1.5},
        {"map_size": True},
        {"map_size": 1024},
        {"map_size": 1 << 60},
        {"max_map_size": 1 << 16, "map_size": 1 << 20},
        {"max_map_size": (1 << 20) - 4096},
        {"max_map_size": "big"},
        {"max_readers": 0},
        {"max_readers": True},
        {"compression": "zstd"},
        {"name": "other"},
    ],
)
def test_bad_options_are_options_errors(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(InvalidOptionsError):
        open_kv(backend="disk", path=tmp_path / "s.lmdb", **options)
    assert not (tmp_path / "s.lmdb").exists()


def test_options_are_described_as_plain_values(tmp_path: Path) -> None:
    with open_kv(backend="disk", path=tmp_path / "s.lmdb", map_size=(1 << 20) + 1, durable=True) as kv:
        assert kv.options == {
            "backend": "disk",
            "path": str(tmp_path / "s.lmdb"),
            "track_keys": True,
            "durable": True,
            "writemap": True,
            "map_size": (1 << 20) + os.sysconf("SC_PAGE_SIZE"),  # whole pages
            "max_map_size": None,
            "max_readers": 126,
            "max_keys": None,
            "max_bytes": None,
            "serialization": "json",
        }
        kv.set("k", [1])
        assert kv.get("k") == [1]


def test_one_path_opened_with_other_options_conflicts(tmp_path: Path) -> None:
    with open_kv(backend="disk", path=tmp_path / "s.lmdb") as kv:
        with pytest.raises(KVOptionsConflictError):
            open_kv(backend="disk", path=tmp_path / "s.lmdb", durable=True)
        with pytest.raises(KVOptionsConflictError):
            open_kv(backend="disk", path=tmp_path / "s.lmdb", track_keys=False)
        with open_kv(backend="disk", path=tmp_path / "other.lmdb", durable=True) as other:
            other.set("k", 2)
            kv.set("k", 1)
            assert (kv.get("k"), other.get("k")) == (1, 2)


@pytest.mark.parametrize("options", [{"durable": True}, {"writemap": False}, {"durable": True, "writemap": False}])
def test_every_mode_stores_and_reopens(tmp_path: Path, options: dict[str, object]) -> None:
    path = tmp_path / "s.lmdb"
    with open_kv(backend="disk", path=path, **options) as kv:
        for i in range(200):
            kv.set(f"k{i}", i)
        kv.increment_by("n", 5)
    with open_kv(backend="disk", path=path, **options) as kv:
        assert kv.size() == 201 and kv.get("k199") == 199 and kv.get("n") == 5


def test_a_store_closed_and_reopened_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    kv = open_kv(backend="disk", path=path)
    kv.set("kept", {"a": 1})
    kv.close()
    with open_kv(backend="disk", path=path, serialization="json") as again:
        assert again.get("kept") == {"a": 1}
        assert again.random_key() == "kept"
