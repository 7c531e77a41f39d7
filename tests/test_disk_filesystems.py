"""The disk backend refuses network filesystems, where LMDB's map and locks are not safe between hosts.

A real NFS or SMB mount cannot be made here, so the refusal is shown with a
mount table of our own (the file the check reads, in proc(5)'s format); the
real table is checked to say that the test's own directory is local.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from locust_kv import open_kv
from locust_kv.backends import filesystems
from locust_kv.backends.filesystems import NETWORK_FILESYSTEMS, check_local, filesystem_of
from locust_kv.errors import UnsafeFilesystemError


def _mountinfo(tmp_path: Path, *mounts: tuple[str, str]) -> str:
    lines = [f"{20 + i} 1 0:{i} / {point.replace(' ', chr(92) + '040')} rw,relatime - {fstype} src rw" for i, (point, fstype) in enumerate(mounts)]
    table = tmp_path / "mountinfo"
    table.write_text("\n".join(lines) + "\n")
    return str(table)


@pytest.mark.skipif(not os.path.exists(filesystems.MOUNTINFO), reason="no /proc/self/mountinfo (not Linux)")
def test_the_test_directory_is_on_a_known_local_filesystem(tmp_path: Path) -> None:
    fstype = filesystem_of(str(tmp_path))
    assert fstype is not None
    assert fstype not in NETWORK_FILESYSTEMS
    check_local(str(tmp_path / "store.lmdb"))  # does not raise


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "fuse.sshfs"])
def test_a_network_filesystem_is_refused(tmp_path: Path, fstype: str) -> None:
    shared = tmp_path / "shared dir"
    shared.mkdir()
    table = _mountinfo(tmp_path, ("/", "ext4"), (str(tmp_path), "tmpfs"), (str(shared), fstype))
    with pytest.raises(UnsafeFilesystemError) as raised:
        check_local(str(shared / "store.lmdb"), table)
    assert fstype in str(raised.value) and "--kv-backend redis" in str(raised.value)
    check_local(str(tmp_path / "store.lmdb"), table)  # beside it, on tmpfs: fine


def test_the_innermost_and_latest_mount_decides(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    table = _mountinfo(tmp_path, ("/", "nfs4"), (str(inner), "nfs"), (str(inner), "ext4"))
    assert filesystem_of(str(inner), table) == "ext4"  # mounted over the nfs one
    assert filesystem_of(str(tmp_path), table) == "nfs4"
    assert filesystem_of(str(tmp_path), str(tmp_path / "missing")) is None  # no table: unknown, not refused


def test_open_kv_refuses_a_store_on_a_network_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _mountinfo(tmp_path, ("/", "ext4"), (str(tmp_path), "nfs4"))
    monkeypatch.setattr(filesystems, "MOUNTINFO", table)
    monkeypatch.setattr(filesystems.check_local, "__defaults__", (table,))
    with pytest.raises(UnsafeFilesystemError):
        open_kv(backend="disk", path=str(tmp_path / "store.lmdb"))
    assert not (tmp_path / "store.lmdb").exists()
