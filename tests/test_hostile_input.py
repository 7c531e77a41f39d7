"""Hostile input: paths that are not files, values that cannot be read back, absurd limits.

Each test reproduces, against the real backends, a call that used to hang,
store something unreadable, or escape the catalogue as UnknownError.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from locust_kv import KV, open_kv
from locust_kv.errors import DiskPathError, KVError, SerializerError, UnknownError

from .disk_helpers import python_child

# ---------------------------------------------------------------------------
# Item 4: a disk path that exists but is not a regular file is refused before it is opened.


def _refused_without_hanging(path: Path) -> str:
    """Open ``path`` as a disk store in a child interpreter (a FIFO would block it forever); its failure name."""
    child = python_child(
        f"""
        from locust_kv import open_kv
        from locust_kv.errors import KVError
        try:
            open_kv(backend="disk", path={str(path)!r})
        except KVError as err:
            print(err.name)
        else:
            print("opened")
        """
    )
    try:
        out, err = child.communicate(timeout=20)
    except BaseException:
        child.kill()
        child.communicate()
        raise
    assert child.returncode == 0, err
    return out.strip()


def _special_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    yield "fifo", fifo
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    sock.close()
    yield "socket", sock_path


def test_a_fifo_or_socket_as_the_store_path_is_a_path_error(tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path):
        assert _refused_without_hanging(path) == "DiskPathError", kind
        with pytest.raises(DiskPathError) as caught:
            open_kv(backend="disk", path=path)
        assert "not a regular file" in str(caught.value), kind
        assert stat.S_ISREG(os.stat(path).st_mode) is False  # untouched


def test_a_device_node_as_the_store_path_is_a_path_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    node = tmp_path / "null-device"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the memory device "null", under tmp_path
    except OSError as exc:
        pytest.skip(f"mknod refused here: {exc}")
    assert _refused_without_hanging(node) == "DiskPathError"
    with pytest.raises(DiskPathError):
        open_kv(backend="disk", path=node)


@pytest.mark.parametrize("suffix", ["-lock", "-kvlock"])
def test_a_fifo_as_a_side_file_is_a_path_error(tmp_path: Path, suffix: str) -> None:
    store = tmp_path / "store.lmdb"
    os.mkfifo(str(store) + suffix)
    assert _refused_without_hanging(store) == "DiskPathError"
    with pytest.raises(DiskPathError) as caught:
        open_kv(backend="disk", path=store)
    assert suffix in str(caught.value)


def test_a_symlink_to_a_fifo_is_a_path_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "link.lmdb").symlink_to(fifo)
    assert _refused_without_hanging(tmp_path / "link.lmdb") == "DiskPathError"


# ---------------------------------------------------------------------------
# Item 5: under "string", what cannot be read back is refused at the write.

_NOT_UTF8 = [b"\xff", bytearray(b"ok\xc3"), memoryview(b"\xed\xa0\x80")]  # bad byte, truncated, a surrogate


@pytest.mark.parametrize("bad", _NOT_UTF8, ids=["ff", "truncated", "surrogate"])
def test_string_serialization_refuses_bytes_that_are_not_utf8_at_every_write(
    open_store: Callable[..., KV], bad: object
) -> None:
    kv = open_store(serialization="string")
    kv.set("good", b"caf\xc3\xa9")
    writes: list[tuple[str, Callable[[], object]]] = [
        ("set", lambda: kv.set("k", bad)),
        ("get_or_set", lambda: kv.get_or_set("k", bad)),
        ("swap", lambda: kv.swap("k", bad)),
        ("compare_and_swap", lambda: kv.compare_and_swap("k", None, bad)),
        ("compare_and_swap", lambda: kv.compare_and_swap("good", bad, "x")),
        ("compare_and_swap", lambda: kv.compare_and_swap("good", "café", bad)),
        ("compare_and_delete", lambda: kv.compare_and_delete("good", bad)),
    ]
    for operation, write in writes:
        with pytest.raises(SerializerError) as caught:
            write()
        assert caught.value.operation == operation
        assert str(caught.value) == "SerializerError: string value is not valid UTF-8"
    # Nothing was written, and the whole store still reads back.
    assert kv.size() == 1
    assert kv.get("good") == "café"
    assert [(e.key, e.value) for e in kv.list()] == [("good", "café")]
    assert kv.scan().entries[0].value == "café"


def test_string_serialization_still_takes_utf8_bytes(open_store: Callable[..., KV]) -> None:
    kv = open_store(serialization="string")
    assert kv.set("k", bytearray("ünï".encode())) == bytearray("ünï".encode())
    assert kv.get("k") == "ünï"
    assert kv.swap("k", memoryview(b"plain")).previous == "ünï"
    assert kv.compare_and_swap("k", b"plain", "new") is True
    assert kv.get("k") == "new"


# ---------------------------------------------------------------------------
# Item 6: a huge limit means "everything", a limit <= 0 too; never an overflow.


@pytest.mark.parametrize("limit", [2**63 - 1, 2**63, 2**64, 10**100])
def test_a_huge_limit_returns_every_entry(open_store: Callable[..., KV], limit: int) -> None:
    kv = open_store()
    for i in range(5):
        kv.set(f"k{i}", i)
    page = kv.scan(limit=limit)
    assert [e.key for e in page.entries] == [f"k{i}" for i in range(5)]
    assert page.done is True and page.cursor == ""
    assert [e.key for e in kv.list(prefix="k", limit=limit)] == [f"k{i}" for i in range(5)]
    page = kv.scan(limit=2)
    rest = kv.scan(limit=limit, cursor=page.cursor)
    assert [e.key for e in rest.entries] == ["k2", "k3", "k4"] and rest.done


@pytest.mark.parametrize("limit", [0, -1, -(2**63), -(2**64)])
def test_a_limit_of_zero_or_less_returns_every_entry(open_store: Callable[..., KV], limit: int) -> None:
    kv = open_store()
    for i in range(3):
        kv.set(f"k{i}", i)
    page = kv.scan(limit=limit)
    assert [e.key for e in page.entries] == ["k0", "k1", "k2"] and page.done
    assert len(kv.list(limit=limit)) == 3


def test_scan_limit_contract_on_empty_store(open_store: Callable[..., KV]) -> None:
    kv = open_store()
    for limit in (2**64, 2**63 - 1, 1, 0, -1):
        page = kv.scan(limit=limit)
        assert page.entries == [] and page.done and page.cursor == ""


def _no_unknown(call: Callable[[], object]) -> None:
    try:
        call()
    except KVError as err:
        assert not isinstance(err, UnknownError), repr(err.__cause__)
