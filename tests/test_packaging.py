"""pyproject.toml installs every package of locust_kv (its package list is explicit)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_installed() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "locust_kv").rglob("__init__.py")
    }
    assert listed == found, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(found)}"
