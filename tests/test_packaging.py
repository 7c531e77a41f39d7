"""pyproject.toml installs every package of locust_kv (its package list is explicit)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_installed() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"])
    # Every directory with Python modules (locust_kv.backends has no __init__.py: a namespace package).
    found = {".".join(module.parent.relative_to(ROOT).parts) for module in (ROOT / "locust_kv").rglob("*.py")}
    assert listed == found, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(found)}"
