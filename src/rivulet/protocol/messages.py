"""Kafka request and response messages, sans I/O.

Message bodies are the typed, frozen dataclasses of :mod:`kio`, which are
generated from Apache Kafka's own JSON message descriptors, one class per API
version. This module adds what kio leaves to a server:

* :func:`decode_request` reads a request frame (header and body) for any API
  and version kio knows, and reports unknown ones with the header already parsed
  so the broker can still answer.
* :func:`encode_response` builds the version-specific response dataclass from a
  plain, version-neutral mapping and writes the framed response. Handlers
  describe their answer once; fields a version lacks are dropped, fields it
  needs but the mapping omits take the schema's default.

Request header (v1, v2 adds tagged fields for flexible versions)::

    api_key int16 | api_version int16 | correlation_id int32 | client_id nullable string

Response header: correlation_id int32 (v1 adds tagged fields). ApiVersions
responses always use header v0 so a client can read them before it knows which
versions the broker speaks.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import struct
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from rivulet.protocol.errors import MalformedRequestError, UnsupportedVersionError

API_VERSIONS_KEY = 18

_HEADER = struct.Struct(">hhih")
_SIZE = struct.Struct(">i")
_UTC = datetime.UTC


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The fields every request starts with."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request: its header and its kio body dataclass."""

    header: RequestHeader
    body: Any


class UnsupportedRequestError(UnsupportedVersionError):
    """An API key or version kio has no schema for; carries the parsed header."""

    def __init__(self, header: RequestHeader) -> None:
        super().__init__(f"API key {header.api_key} version {header.api_version} is not supported")
        self.header = header


@functools.cache
def request_class(api_key: int, api_version: int) -> type[Any] | None:
    """The kio request dataclass for an API version, or ``None`` if there is none."""
    try:
        return load_request_schema(api_key, api_version)
    except (UnknownAPIKey, UnknownEntity):
        return None


@functools.cache
def response_class(api_key: int, api_version: int) -> type[Any]:
    """The kio response dataclass for an API version."""
    return load_response_schema(api_key, api_version)


_readers: dict[type[Any], Callable[[Any, int], tuple[Any, int]]] = {}
_writers: dict[type[Any], Callable[[io.BytesIO, Any], None]] = {}
_plans: dict[type[Any], tuple[_FieldPlan, ...]] = {}


def _reader(cls: type[Any]) -> Callable[[Any, int], tuple[Any, int]]:
    reader = _readers.get(cls)
    if reader is None:
        reader = _readers[cls] = entity_reader(cls)
    return reader


def _writer(cls: type[Any]) -> Callable[[io.BytesIO, Any], None]:
    writer = _writers.get(cls)
    if writer is None:
        writer = _writers[cls] = entity_writer(cls)
    return writer


def read_request_header(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, int]:
    """Parse the fixed part of a request header; return it and the offset after it.

    Tagged header fields (flexible versions) are not skipped here: that needs the
    schema, see :func:`decode_request`.
    """
    if len(frame) < _HEADER.size:
        raise MalformedRequestError(f"request of {len(frame)} bytes is too short for a header")
    api_key, api_version, correlation_id, client_len = _HEADER.unpack_from(frame, 0)
    pos = _HEADER.size
    client_id: str | None = None
    if client_len >= 0:
        end = pos + client_len
        if end > len(frame):
            raise MalformedRequestError("request header's client id runs past the frame")
        try:
            client_id = bytes(frame[pos:end]).decode()
        except UnicodeDecodeError as exc:
            raise MalformedRequestError("request header's client id is not UTF-8") from exc
        pos = end
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def read_uvarint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return it and the offset after it."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 28:
            raise MalformedRequestError("truncated or overlong unsigned varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def skip_tagged_fields(buf: bytes | bytearray | memoryview, pos: int) -> int:
    """Skip a tagged-field section (flexible versions); return the offset after it."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
    if pos > len(buf):
        raise MalformedRequestError("tagged fields run past the end of the frame")
    return pos


BodyReader = Callable[[bytearray | bytes | memoryview, int, int], Any]
"""``read(frame, position, api_version) -> body``: reads a request body in
place of kio, for an API whose body the broker wants in another form (see
:mod:`rivulet.protocol.produce`)."""


def decode_request(
    frame: bytes | bytearray | memoryview, body_reader: BodyReader | None = None
) -> Request:
    """Decode a whole request frame (without its size prefix).

    The body is kio's dataclass for the API version, or what ``body_reader``
    makes of it when given. Raises :class:`UnsupportedRequestError` for an API
    key or version with no schema, and :class:`MalformedRequestError` when the
    bytes do not decode.
    Bytes after the body are ignored, as Kafka ignores them: librdkafka 2.x
    sends Metadata v9+ requests for all topics with the null topics array
    written as four zero bytes instead of one, three bytes more than the
    schema reads.
    """
    header, pos = read_request_header(frame)
    cls = request_class(header.api_key, header.api_version)
    if cls is None:
        raise UnsupportedRequestError(header)
    if cls.__flexible__:
        pos = skip_tagged_fields(frame, pos)
    try:
        if body_reader is not None:
            body = body_reader(frame, pos, header.api_version)
        else:
            # kio's native reader takes only read-only buffers.
            readable = frame if isinstance(frame, bytes) else memoryview(frame).toreadonly()
            body, _size = _reader(cls)(readable, pos)
    except Exception as exc:
        # kio's native reader raises several exception types on bad input; each
        # means the same thing to the broker: this request is malformed.
        raise MalformedRequestError(
            f"cannot decode {cls.__name__} v{header.api_version}: {exc}"
        ) from exc
    return Request(header, body)


def response_header_flexible(api_key: int, api_version: int) -> bool:
    """Whether the response header carries tagged fields (header v1)."""
    if api_key == API_VERSIONS_KEY:
        return False
    return bool(response_class(api_key, api_version).__flexible__)


def encode_response_header(correlation_id: int, *, flexible: bool) -> bytes:
    """The response header bytes (without the frame's size prefix)."""
    return _SIZE.pack(correlation_id) + (b"\x00" if flexible else b"")


def encode_response(header: RequestHeader, data: Mapping[str, Any]) -> bytes:
    """Build and write the framed response to ``header``'s request from ``data``."""
    cls = response_class(header.api_key, header.api_version)
    body = build(cls, data)
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00")
    out.write(
        encode_response_header(
            header.correlation_id,
            flexible=response_header_flexible(header.api_key, header.api_version),
        )
    )
    _writer(cls)(out, body)
    buf = out.getbuffer()
    _SIZE.pack_into(buf, 0, len(buf) - 4)
    del buf
    return out.getvalue()


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    data: Mapping[str, Any],
) -> bytes:
    """Write a framed request. Used by tests and tools that speak to a broker raw."""
    cls = request_class(api_key, api_version)
    if cls is None:
        raise UnsupportedRequestError(
            RequestHeader(api_key, api_version, correlation_id, client_id)
        )
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00")
    client = None if client_id is None else client_id.encode()
    out.write(
        _HEADER.pack(api_key, api_version, correlation_id, -1 if client is None else len(client))
    )
    if client is not None:
        out.write(client)
    if cls.__flexible__:
        out.write(b"\x00")
    _writer(cls)(out, build(cls, data))
    buf = out.getbuffer()
    _SIZE.pack_into(buf, 0, len(buf) - 4)
    del buf
    return out.getvalue()


def decode_response(api_key: int, api_version: int, frame: bytes | memoryview) -> tuple[int, Any]:
    """Decode a response frame (without size prefix): ``(correlation_id, body)``."""
    (correlation_id,) = _SIZE.unpack_from(frame, 0)
    pos = 4
    if response_header_flexible(api_key, api_version):
        pos = skip_tagged_fields(frame, pos)
    body, _size = _reader(response_class(api_key, api_version))(frame, pos)
    return correlation_id, body


# --- building version-specific dataclasses from version-neutral mappings ---------


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    kafka_type: str | None
    nested: type[Any] | None
    is_tuple: bool
    required: bool


def _plan(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    cached = _plans.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    plans = []
    for f in dataclasses.fields(cls):
        # Nullable fields are ``X | None``; nullable arrays are ``tuple[X, ...] | None``,
        # so the optional wrapper comes off before looking for the tuple.
        hint = _strip_optional(hints[f.name])
        is_tuple = typing.get_origin(hint) is tuple
        inner = _strip_optional(typing.get_args(hint)[0]) if is_tuple else hint
        nested = inner if dataclasses.is_dataclass(inner) and isinstance(inner, type) else None
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        plans.append(_FieldPlan(f.name, f.metadata.get("kafka_type"), nested, is_tuple, required))
    result = _plans[cls] = tuple(plans)
    return result


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return hint


def _convert(plan: _FieldPlan, value: Any) -> Any:
    if plan.nested is not None:
        if plan.is_tuple:
            if value is None:
                return None
            return tuple(build(plan.nested, item) for item in value)
        return None if value is None else build(plan.nested, value)
    if plan.is_tuple:
        return None if value is None else tuple(value)
    kafka_type = plan.kafka_type
    if kafka_type == "error_code" and not isinstance(value, ErrorCode):
        return ErrorCode(value)
    if kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    if kafka_type == "datetime_i64" and isinstance(value, int):
        return None if value < 0 else datetime.datetime.fromtimestamp(value / 1000, _UTC)
    return value


def build(cls: type[Any], data: Any) -> Any:
    """Instantiate the kio dataclass ``cls`` from a mapping (or return ``data`` as is).

    Keys the class has no field for are ignored, so one mapping serves every
    version. Millisecond integers become the ``timedelta``/``datetime`` values
    kio uses for duration and timestamp fields. A required field missing from the
    mapping raises ``KeyError`` naming it: a handler bug, not bad input.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"cannot build {cls.__name__} from {type(data).__name__}")
    kwargs = {}
    for plan in _plan(cls):
        if plan.name in data:
            kwargs[plan.name] = _convert(plan, data[plan.name])
        elif plan.required:
            raise KeyError(f"{cls.__name__} v{cls.__version__} needs field {plan.name!r}")
    return cls(**kwargs)


def supported_versions(api_key: int) -> Sequence[int]:
    """Every version of ``api_key`` that has a kio schema, ascending."""
    return [v for v in range(32) if request_class(api_key, v) is not None]
