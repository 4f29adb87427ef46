"""The registry's errors: one root, each carrying its HTTP status and Confluent error code.

Confluent Schema Registry answers errors with ``{"error_code": N, "message": "..."}``
where ``N`` is the HTTP status followed by a two-digit detail (40401 subject not found)
or the bare status (409 incompatible). Clients (confluent-kafka's ``SchemaRegistryError``,
Karapace's, Java's ``RestClientException``) branch on those codes, so ours are the same.
Every operation raises before it writes anything, so a failed request changes nothing.
"""

from __future__ import annotations

__all__ = [
    "IncompatibleSchemaError",
    "InvalidCompatibilityLevelError",
    "InvalidModeError",
    "InvalidSchemaError",
    "InvalidVersionError",
    "MalformedRequestError",
    "OperationNotPermittedError",
    "ReferenceExistsError",
    "RegistryError",
    "SchemaNotFoundError",
    "StoreError",
    "StoreTimeoutError",
    "SubjectConfigNotFoundError",
    "SubjectModeNotFoundError",
    "SubjectNotFoundError",
    "SubjectNotSoftDeletedError",
    "SubjectSoftDeletedError",
    "UnprocessableRequestError",
    "VersionNotFoundError",
    "VersionNotSoftDeletedError",
    "VersionSoftDeletedError",
]


class RegistryError(Exception):
    """Root of the registry's errors; ``status`` and ``error_code`` go into the response."""

    status: int = 500
    error_code: int = 50001

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequestError(RegistryError):
    """The request body is not JSON."""

    status = 400
    error_code = 400


class SubjectNotFoundError(RegistryError):
    status = 404
    error_code = 40401


class VersionNotFoundError(RegistryError):
    status = 404
    error_code = 40402


class SchemaNotFoundError(RegistryError):
    status = 404
    error_code = 40403


class SubjectSoftDeletedError(RegistryError):
    """Soft-deleting a subject whose versions are all soft-deleted already."""

    status = 404
    error_code = 40404


class SubjectNotSoftDeletedError(RegistryError):
    """Hard-deleting a subject that was not soft-deleted first."""

    status = 404
    error_code = 40405


class VersionSoftDeletedError(RegistryError):
    status = 404
    error_code = 40406


class VersionNotSoftDeletedError(RegistryError):
    status = 404
    error_code = 40407


class SubjectConfigNotFoundError(RegistryError):
    status = 404
    error_code = 40408


class SubjectModeNotFoundError(RegistryError):
    status = 404
    error_code = 40409


class IncompatibleSchemaError(RegistryError):
    status = 409
    error_code = 409


class UnprocessableRequestError(RegistryError):
    """The body is JSON but not the shape the endpoint takes."""

    status = 422
    error_code = 422


class InvalidSchemaError(RegistryError):
    status = 422
    error_code = 42201


class InvalidVersionError(RegistryError):
    status = 422
    error_code = 42202


class InvalidCompatibilityLevelError(RegistryError):
    status = 422
    error_code = 42203


class InvalidModeError(RegistryError):
    status = 422
    error_code = 42204


class OperationNotPermittedError(RegistryError):
    """A write while the registry or subject is read-only."""

    status = 422
    error_code = 42205


class ReferenceExistsError(RegistryError):
    """Deleting a schema version that other registered schemas reference."""

    status = 422
    error_code = 42206


class StoreError(RegistryError):
    """The ``_schemas`` topic could not be written or read."""

    status = 500
    error_code = 50001


class StoreTimeoutError(RegistryError):
    """A write was not read back in time."""

    status = 500
    error_code = 50002
