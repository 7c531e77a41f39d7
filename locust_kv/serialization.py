"""Serializers: how values become the bytes a backend stores, and back.

Both serializers are stateless. ``dumps`` raises UnsupportedValueTypeError for
a value whose type the serialization cannot hold and SerializerError for a
value of a supported type that still cannot be encoded; ``loads`` raises
SerializerError for stored bytes it cannot decode.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from .errors import InvalidSerializationError, SerializerError, UnsupportedValueTypeError

__all__ = ["JsonSerializer", "Serializer", "StringSerializer", "get_serializer"]


class Serializer:
    """Turns values into bytes and back. Subclasses define ``name``, ``dumps`` and ``loads``."""

    name: str = ""

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError


class _Unsupported(TypeError):
    """Raised from orjson's ``default`` hook for a type we refuse to store."""


def _refuse(value: Any) -> Any:
    raise _Unsupported(type(value).__name__)


# Sorted keys make equal dicts serialize to equal bytes, which is what
# compare_and_swap and compare_and_delete compare. The passthrough options
# send dataclasses, datetimes and subclasses of the JSON types to ``_refuse``
# instead of converting them into something that would not round-trip.
_JSON_OPTIONS: Final = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if type(value) is dict:
        return any(_has_non_finite(v) for v in value.values())
    if type(value) in (list, tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _json_dumps(
    value: Any, _dumps: Any = orjson.dumps, _default: Any = _refuse, _option: int = _JSON_OPTIONS
) -> bytes:
    try:
        data: bytes = _dumps(value, _default, _option)
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, _Unsupported):
            raise UnsupportedValueTypeError(
                f"json serialization cannot store a value of type {exc.__cause__}"
            ) from exc
        raise SerializerError(f"json encoding failed: {exc}") from exc
    # orjson writes NaN and infinities as null; refuse them rather than
    # store a value that reads back different. Scalars skip the search.
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise SerializerError("json encoding failed: NaN and infinity have no JSON form")
    elif kind is not str and kind is not int and b"null" in data and _has_non_finite(value):
        raise SerializerError("json encoding failed: NaN and infinity have no JSON form")
    return data


def _json_loads(data: bytes, _loads: Any = orjson.loads) -> Any:
    try:
        return _loads(data)
    except orjson.JSONDecodeError as exc:
        raise SerializerError(f"stored value is not valid JSON: {exc}") from exc


class JsonSerializer(Serializer):
    """JSON through orjson: dict, list (and tuple, read back as list), str, int, float, bool, None.

    Integers must fit in 64 bits; NaN and infinities are refused because
    JSON has no spelling for them. Object keys are sorted, so equal dicts
    serialize to equal bytes.
    """

    name = "json"
    dumps = staticmethod(_json_dumps)
    loads = staticmethod(_json_loads)


class StringSerializer(Serializer):
    """Text as UTF-8: str is stored encoded, bytes as they are; values read back as str.

    Bytes must be valid UTF-8: what ``loads`` could not decode is refused
    at the write (SerializerError), so a stored value always reads back.
    """

    name = "string"

    def dumps(self, value: Any) -> bytes:
        if type(value) is str:
            try:
                return value.encode()
            except UnicodeEncodeError as exc:
                raise SerializerError("string value is not encodable as UTF-8") from exc
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            try:
                data.decode()
            except UnicodeDecodeError as exc:
                raise SerializerError("string value is not valid UTF-8") from exc
            return data
        raise UnsupportedValueTypeError(
            f"string serialization stores str or bytes, not {type(value).__name__}"
        )

    def loads(self, data: bytes) -> Any:
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise SerializerError("stored value is not valid UTF-8 text") from exc


_SERIALIZERS: Final[dict[str, Serializer]] = {
    "json": JsonSerializer(),
    "string": StringSerializer(),
}


def get_serializer(name: object) -> Serializer:
    """The serializer called ``name``; InvalidSerializationError for any other name."""
    serializer = _SERIALIZERS.get(name) if isinstance(name, str) else None
    if serializer is None:
        raise InvalidSerializationError(f'serialization must be "json" or "string", not {name!r}')
    return serializer
