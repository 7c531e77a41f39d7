"""The disk backend's package keeps its shape: one way dependencies, modules a reader can take in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BACKENDS = Path(__file__).resolve().parent.parent / "locust_kv" / "backends"
LMDB = BACKENDS / "lmdb"
FORBIDDEN = ("locust_kv.options", "locust_kv.plugin")


def _imports(path: Path) -> list[str]:
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(BACKENDS.parent.parent).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names += [module, *(f"{module}.{alias.name}" for alias in node.names)]  # "from ... import x" is the root
    return names


@pytest.mark.parametrize("path", sorted(BACKENDS.rglob("*.py")), ids=lambda p: str(p.relative_to(BACKENDS)))
def test_backends_import_neither_options_nor_the_plugin_nor_the_package_root(path: Path) -> None:
    for name in _imports(path):
        assert name != "locust_kv", f"{path.name} imports the package root"
        assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    "path", sorted(BACKENDS.parent.rglob("*.py")), ids=lambda p: str(p.relative_to(BACKENDS.parent))
)
def test_a_module_over_500_lines_says_why(path: Path) -> None:
    text = path.read_text()
    if text.count("\n") > 520:
        docstring = ast.get_docstring(ast.parse(text)) or ""
        assert "500 lines" in docstring, f"{path.name} has {text.count(chr(10))} lines and no reason at its top"


def test_the_specs_module_loads_no_lmdb() -> None:
    """Option parsing and ``scope_of`` import the backend's package, never py-lmdb (checked in a fresh process)."""
    import subprocess
    import sys

    code = (
        "import sys; from locust_kv.options import scope_of; scope_of('disk');"
        "from locust_kv.backends.lmdb import configure, is_store_file;"
        "assert 'lmdb' not in sys.modules, 'py-lmdb was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
