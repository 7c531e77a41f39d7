"""The installed distribution's version, in a module of its own so that any module can import it without a cycle."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("locust-kv")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
