"""The error contract: names, groups, text, and ERRORS.md, pinned so drift fails loudly."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

import locust_kv
from locust_kv import errors
from locust_kv.errors import ErrorGroup, KVError, catalogue

T, U, C, S = ErrorGroup.TRANSIENT, ErrorGroup.USER, ErrorGroup.CONFIGURATION, ErrorGroup.SYSTEM

# Every released name and its group. A name is never renamed or removed: add rows only.
EXPECTED: dict[str, ErrorGroup] = {
    "BackupInProgressError": T,
    "RestoreInProgressError": T,
    "KeyNotFoundError": U,
    "InvalidKeyError": U,
    "KeyTooLongError": U,
    "InvalidCursorError": U,
    "InvalidArgumentError": U,
    "ValueNumberRequiredError": U,
    "ValueParseError": U,
    "UnsupportedValueTypeError": U,
    "SerializerError": U,
    "BackupOptionsRequiredError": U,
    "RestoreOptionsRequiredError": U,
    "SnapshotBudgetExceededError": U,
    "SnapshotNotFoundError": U,
    "SnapshotReadError": U,
    "SnapshotImportError": U,
    "SnapshotMismatchError": U,
    "StoreClosedError": U,
    "DatabaseNotOpenError": U,
    "QuotaExceededError": U,
    "ClaimLostError": U,
    "InvalidBackendError": C,
    "InvalidSerializationError": C,
    "InvalidOptionsError": C,
    "KVOptionsConflictError": C,
    "ReadOnlyStoreError": C,
    "MemoryBackendNotSharedError": C,
    "DiskPathError": C,
    "DiskStoreOpenError": C,
    "SnapshotPermissionError": C,
    "DiskStoreReadError": S,
    "DiskStoreWriteError": S,
    "DiskStoreDeleteError": S,
    "DiskStoreExistsError": S,
    "DiskStoreScanError": S,
    "DiskStoreSizeError": S,
    "DiskStoreIndexError": S,
    "DiskStoreFullError": S,
    "KeyListRebuildError": S,
    "BucketNotFoundError": S,
    "SnapshotExportError": S,
    "SnapshotIOError": S,
    "UnexpectedStoreOutputError": S,
    "UnknownError": S,
    "StoreUnavailableError": T,
    "StoreTimeoutError": T,
    "StoreNotSharedError": C,
    "StoreOpenError": C,
    "UnsafeFilesystemError": C,
    "StoreReadError": S,
    "StoreWriteError": S,
    "StoreFullError": S,
    "LockTimeoutError": T,
    "LockLostError": U,
}

# Backend-specific names and the backend-neutral family each belongs to, so
# that one ``except`` clause handles a failure on every backend.
FAMILIES: dict[str, str] = {
    "DiskStoreReadError": "StoreReadError",
    "DiskStoreExistsError": "StoreReadError",
    "DiskStoreScanError": "StoreReadError",
    "DiskStoreSizeError": "StoreReadError",
    "DiskStoreIndexError": "StoreReadError",
    "DiskStoreWriteError": "StoreWriteError",
    "DiskStoreDeleteError": "StoreWriteError",
    "DiskStoreFullError": "StoreFullError",
    "DiskStoreOpenError": "StoreOpenError",
    "MemoryBackendNotSharedError": "StoreNotSharedError",
    "LockLostError": "ClaimLostError",
}

# The names of xk6-kv's Error Manual, which locust_kv keeps with the same meaning.
ANCHOR_NAMES = {
    "KeyNotFoundError", "InvalidCursorError", "InvalidBackendError", "InvalidOptionsError",
    "InvalidSerializationError", "KVOptionsConflictError", "BackupOptionsRequiredError",
    "RestoreOptionsRequiredError", "SnapshotBudgetExceededError", "ValueNumberRequiredError",
    "UnsupportedValueTypeError", "ValueParseError", "SerializerError", "UnexpectedStoreOutputError",
    "UnknownError", "BackupInProgressError", "RestoreInProgressError", "StoreClosedError",
    "DatabaseNotOpenError", "SnapshotNotFoundError", "SnapshotPermissionError", "SnapshotExportError",
    "SnapshotIOError", "SnapshotReadError", "DiskPathError", "DiskStoreOpenError", "DiskStoreReadError",
    "DiskStoreWriteError", "DiskStoreDeleteError", "DiskStoreExistsError", "DiskStoreScanError",
    "DiskStoreSizeError", "DiskStoreIndexError", "KeyListRebuildError", "BucketNotFoundError",
}  # fmt: skip

ERRORS_MD = Path(__file__).resolve().parent.parent / "ERRORS.md"
GROUP_HEADING = re.compile(r"^## .*\(`(?P<group>[a-z ]+)`\)\s*$")
ROW = re.compile(r"^\| `(?P<name>\w+)` \| (?P<when>[^|]+) \| (?P<recover>[^|]+) \|\s*$")


def test_catalogue_is_exactly_the_pinned_table() -> None:
    assert {name: cls.group for name, cls in catalogue().items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_backend_names_belong_to_their_neutral_family(name: str) -> None:
    family = catalogue()[FAMILIES[name]]
    assert issubclass(catalogue()[name], family)
    assert catalogue()[name].group is family.group


def test_every_anchor_name_exists() -> None:
    assert ANCHOR_NAMES <= set(catalogue())


def test_every_error_is_a_kverror_named_after_its_class() -> None:
    for name, cls in catalogue().items():
        assert issubclass(cls, KVError)
        assert cls.name == cls.__name__ == name
        assert cls.__doc__, name
        assert getattr(errors, name) is cls


def test_errors_module_exports_every_name() -> None:
    assert sorted(errors.__all__) == errors.__all__
    assert set(errors.__all__) == set(catalogue()) | {"ErrorGroup", "KVError", "catalogue"}


def test_package_exports_are_sorted_and_public() -> None:
    public = {name for name in dir(locust_kv) if not name.startswith("_")} - {"annotations", "version", "PackageNotFoundError"}
    modules = {"backends", "cli", "errors", "locks", "options", "plugin", "results", "serialization", "snapshot", "store"}
    assert set(locust_kv.__all__) - {"__version__"} == public - modules
    assert locust_kv.__all__ == sorted(locust_kv.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_text_starts_with_the_name_and_keeps_the_key_out(name: str) -> None:
    cls = catalogue()[name]
    error = cls(key="user:12345", operation="get", backend="memory")
    assert str(error).startswith(f"{name}: ")
    assert repr(error).startswith(f"{name}(")
    assert "user:12345" not in str(error) + repr(error)
    assert error.group is EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_errors_survive_pickling_with_their_attributes(name: str) -> None:
    error = catalogue()[name]("detail", key="k", operation="set", backend="disk")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.message, copy.key, copy.operation, copy.backend) == ("detail", "k", "set", "disk")


def _documented() -> dict[str, tuple[ErrorGroup, str, str]]:
    documented: dict[str, tuple[ErrorGroup, str, str]] = {}
    group: ErrorGroup | None = None
    for line in ERRORS_MD.read_text(encoding="utf-8").splitlines():
        heading = GROUP_HEADING.match(line)
        if heading:
            group = ErrorGroup(heading["group"])
            continue
        row = ROW.match(line)
        if row and group is not None:
            assert row["name"] not in documented, f"{row['name']} documented twice"
            documented[row["name"]] = (group, row["when"].strip(), row["recover"].strip())
    return documented


def test_errors_md_lists_every_name_in_its_group() -> None:
    documented = _documented()
    assert set(documented) == set(catalogue()), "ERRORS.md and locust_kv/errors.py disagree"
    for name, (group, when, recover) in documented.items():
        assert group is catalogue()[name].group, f"{name} is documented under {group.value}"
        assert when and recover, name
