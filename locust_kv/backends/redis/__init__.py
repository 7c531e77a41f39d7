"""The redis backend: one store in a Redis (or Valkey) server, shared by every host that reaches it.

``open_kv(backend="redis", url="redis://127.0.0.1:6379/0", namespace="default")``.
See :mod:`.backend` for the layout and the atomicity, and docs/redis-backend.md.
"""

from __future__ import annotations

import math
from typing import Final
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.connection import parse_url

from ...errors import InvalidOptionsError
from ..base import Scope, check_quota, reject_unknown
from .backend import RedisBackend

__all__ = ["DEFAULT_URL", "SCOPE", "RedisBackend", "RedisSpec", "configure"]

SCOPE: Final[Scope] = "network"
"""Who shares a store of this backend (see ``backends.base.Scope``): every host that reaches the server."""

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_SCHEMES = ("redis", "rediss", "unix")
_MAX_NAMESPACE = 128


@dataclass(frozen=True)
class RedisSpec:
    """Options of the redis backend. Two specs with the same server and namespace denote one store.

    ``url`` may hold a password; it is left out of ``repr``, ``identity``,
    ``describe()`` and ``location``.
    """

    url: str = field(repr=False)
    public_url: str
    password: str | None = field(repr=False)
    namespace: str = "default"
    track_keys: bool = True
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    lease_timeout: float = 30.0
    max_connections: int = 64
    max_keys: int | None = None
    max_bytes: int | None = None
    kind: str = "redis"
    scope: Scope = SCOPE

    @property
    def identity(self) -> tuple[str, str, str]:
        return ("redis", self.public_url, self.namespace)

    @property
    def location(self) -> str:
        return f"{self.public_url} namespace {self.namespace!r}"

    def describe(self) -> dict[str, object]:
        return {
            "backend": "redis",
            "url": self.public_url,
            "namespace": self.namespace,
            "track_keys": self.track_keys,
            "socket_timeout": self.socket_timeout,
            "connect_timeout": self.connect_timeout,
            "lease_timeout": self.lease_timeout,
            "max_connections": self.max_connections,
            "max_keys": self.max_keys,
            "max_bytes": self.max_bytes,
        }

    def create(self) -> RedisBackend:
        """Connect (one round trip: PING and the scripts); raises StoreUnavailableError, StoreOpenError..."""
        return RedisBackend(self)


def configure(
    *,
    url: object = DEFAULT_URL,
    namespace: object = "default",
    track_keys: object = True,
    socket_timeout: object = 5.0,
    connect_timeout: object = 5.0,
    lease_timeout: object = 30.0,
    max_connections: object = 64,
    max_keys: object = None,
    max_bytes: object = None,
    **options: object,
) -> RedisSpec:
    """The redis backend's spec: validate the options; no I/O.

    Options:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
            for TLS (with redis-py's ``ssl_*`` query options), or
            ``unix:///path/to/socket``. The password is never shown.
        namespace: tells stores on one server apart; every key of the store
            is under the hash tag ``{namespace}``. A non-empty str of at most
            128 characters without ``{`` or ``}``.
        track_keys: accepted for compatibility and has no effect: the sorted
            key index that ``random_key`` and ``scan`` use is always kept.
        socket_timeout: seconds to wait for a reply before StoreTimeoutError.
        connect_timeout: seconds to wait for a connection (and for a free
            connection of the pool) before StoreUnavailableError.
        lease_timeout: seconds a backup or restore lease lives without being
            renewed (each page or batch renews it); a process killed while it
            held one blocks others for at most this long.
        max_connections: connections of this process's pool; callers beyond
            it wait for a free one.
        max_keys, max_bytes: this handle's quota on the namespace (None or
            0: none), checked inside each write's script: a write that would
            store more keys, or more key+value bytes, raises QuotaExceededError.

    Raises InvalidOptionsError for unknown options, values of the wrong type
    and a URL that does not parse (its text is not repeated, as it may hold a
    password).
    """
    reject_unknown("redis", options)
    if not isinstance(url, str):
        raise InvalidOptionsError(f"url must be a str, not {type(url).__name__}")
    public_url, password = _redact(url)
    if not isinstance(namespace, str) or not namespace or len(namespace) > _MAX_NAMESPACE:
        raise InvalidOptionsError(f"namespace must be a non-empty str of at most {_MAX_NAMESPACE} characters")
    if "{" in namespace or "}" in namespace:
        raise InvalidOptionsError("namespace must not contain { or } (it is the store's hash tag)")
    if not isinstance(track_keys, bool):
        raise InvalidOptionsError(f"track_keys must be a bool, not {type(track_keys).__name__}")
    if type(max_connections) is not int or not 1 <= max_connections <= 10_000:
        raise InvalidOptionsError("max_connections must be an int between 1 and 10000")
    return RedisSpec(
        url=url,
        public_url=public_url,
        password=password,
        namespace=namespace,
        track_keys=track_keys,
        socket_timeout=_seconds("socket_timeout", socket_timeout),
        connect_timeout=_seconds("connect_timeout", connect_timeout),
        lease_timeout=_seconds("lease_timeout", lease_timeout),
        max_connections=max_connections,
        max_keys=check_quota("max_keys", max_keys),
        max_bytes=check_quota("max_bytes", max_bytes),
    )


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOptionsError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 < value <= 86_400:
        raise InvalidOptionsError(f"{name} must be more than 0 and at most 86400 seconds")
    return float(value)


def _redact(url: str) -> tuple[str, str | None]:
    """The URL without its password, and the password; InvalidOptionsError when it does not parse."""
    refused = InvalidOptionsError("url must be a redis://, rediss:// or unix:// URL with a valid host, port and database")
    try:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise refused
        parsed = parse_url(url)  # redis-py's own parser: what the pool will use
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except (ValueError, TypeError):
        raise refused from None
    if parts.scheme != "unix" and not parts.hostname:
        raise refused
    database = parts.path.strip("/") if parts.scheme != "unix" else dict(parse_qsl(parts.query)).get("db", "0")
    if database and not database.isdigit():
        raise refused
    password = parsed.get("password")
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, "")), password or None
