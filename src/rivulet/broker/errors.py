"""Errors of the broker layer. One root, :class:`BrokerError`.

Every error carries the Kafka error code a response should hold, so a handler
turns a failed operation into a per-topic or per-partition error code and a
message, never into an exception on the wire.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

__all__ = [
    "BrokerError",
    "ConfigError",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidReplicaAssignmentError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidTopicError",
    "TopicAlreadyExistsError",
    "UnknownTopicError",
    "UnknownTopicIdError",
]


class BrokerError(Exception):
    """Root of every error the broker raises; ``error_code`` goes into the response."""

    error_code: ErrorCode = ErrorCode.unknown_server_error


class ConfigError(BrokerError):
    """The broker's own configuration is invalid (raised at start-up, at the edge)."""

    error_code = ErrorCode.invalid_config


class InvalidConfigError(BrokerError):
    """A topic config name or value is not accepted."""

    error_code = ErrorCode.invalid_config


class InvalidRequestError(BrokerError):
    """A request is well formed but asks for something contradictory."""

    error_code = ErrorCode.invalid_request


class InvalidTopicError(BrokerError):
    """A topic name is not legal, or the operation is not allowed on that topic."""

    error_code = ErrorCode.invalid_topic_exception


class TopicAlreadyExistsError(BrokerError):
    error_code = ErrorCode.topic_already_exists


class UnknownTopicError(BrokerError):
    error_code = ErrorCode.unknown_topic_or_partition


class UnknownTopicIdError(BrokerError):
    error_code = ErrorCode.unknown_topic_id


class InvalidPartitionsError(BrokerError):
    error_code = ErrorCode.invalid_partitions


class InvalidReplicationFactorError(BrokerError):
    error_code = ErrorCode.invalid_replication_factor


class InvalidReplicaAssignmentError(BrokerError):
    error_code = ErrorCode.invalid_replica_assignment
