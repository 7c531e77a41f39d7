"""Fixtures shared by the test suite.

``kv`` is parametrized over every backend, so each contract test runs against
each; a backend joins the suite by being listed in ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from locust_kv import KV, open_kv

BACKENDS = ["memory", "disk"]


def store_options(backend: str, place: Path, name: str = "store") -> dict[str, Any]:
    """``open_kv`` options for a store of ``backend`` of its own, named ``name`` under ``place``.

    ``place`` is a temporary directory of the test; the same arguments name
    the same store, different ones different stores, on every backend.
    """
    if backend == "disk":
        return {"backend": "disk", "path": str(place / f"{name}.lmdb")}
    if backend == "memory":
        return {"backend": "memory", "name": f"{place}/{name}"}
    raise ValueError(f"no test options for backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(backend_name: str, tmp_path: Path) -> Iterator[Callable[..., KV]]:
    """Open a store on the test's backend (a fresh file under tmp_path for disk); closed after the test."""
    handles: list[KV] = []

    def opener(**options: Any) -> KV:
        backend = options.setdefault("backend", backend_name)
        for option, value in store_options(backend, tmp_path).items():
            options.setdefault(option, value)
        handle = open_kv(**options)
        handles.append(handle)
        return handle

    yield opener
    for handle in handles:
        handle.close()


@pytest.fixture
def kv(open_store: Callable[..., KV]) -> KV:
    """A json store on the test's backend."""
    return open_store()


@pytest.fixture
def kv_string(open_store: Callable[..., KV]) -> KV:
    """A string store on the test's backend."""
    return open_store(serialization="string")
