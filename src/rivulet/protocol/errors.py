"""Errors of the sans-I/O protocol layer. One root, :class:`ProtocolError`.

Each error knows the Kafka error code a broker answers with, so the layers above
can turn a local failure into a response instead of a crash.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode


class ProtocolError(Exception):
    """Root of every error raised while decoding or validating Kafka wire data."""

    error_code: ErrorCode = ErrorCode.corrupt_message


class FrameTooLargeError(ProtocolError):
    """A request frame is larger than ``socket.request.max.bytes``."""

    error_code = ErrorCode.invalid_request


class MalformedRequestError(ProtocolError):
    """A request's bytes do not decode as the API and version its header names."""

    error_code = ErrorCode.invalid_request


class UnsupportedVersionError(ProtocolError):
    """A request names an API key or version this broker does not implement."""

    error_code = ErrorCode.unsupported_version


class InvalidBatchError(ProtocolError):
    """Record batch data is truncated, of an unsupported magic, or fails its CRC."""

    error_code = ErrorCode.corrupt_message
