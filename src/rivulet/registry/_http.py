"""The Confluent Schema Registry REST API over the registry's operations (Starlette, ASGI).

Responses are ``application/vnd.schemaregistry.v1+json``; request bodies are read as
JSON whatever their declared content type (clients send ``application/json`` or the
registry's own types). Errors are ``{"error_code": N, "message": "..."}``. Boolean query
parameters accept any case (``deleted=True`` is what confluent-kafka sends).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rivulet.registry._errors import (
    InvalidSchemaError,
    MalformedRequestError,
    RegistryError,
    UnprocessableRequestError,
)
from rivulet.registry._model import AVRO, Reference, SchemaText
from rivulet.registry._records import SchemaValue
from rivulet.registry._service import Registry

__all__ = ["CONTENT_TYPE", "build_app"]

CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"

_log = logging.getLogger("rivulet.registry")

Handler = Callable[[Request], Awaitable[Any]]


class RegistryResponse(JSONResponse):
    """JSON with the registry's media type."""

    media_type = CONTENT_TYPE


def _error(status: int, code: int, message: str) -> Response:
    return RegistryResponse({"error_code": code, "message": message}, status_code=status)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").strip().lower() == "true"


def _subject(request: Request) -> str:
    return str(request.path_params["subject"])


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MalformedRequestError(f"The request body is not valid JSON: {exc}") from None


async def _object_body(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise UnprocessableRequestError("The request body must be a JSON object")
    return body


async def _schema_body(request: Request) -> SchemaText:
    """The ``{"schema", "schemaType", "references"}`` body of register, lookup and test."""
    body = await _object_body(request)
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise InvalidSchemaError(
            "Invalid schema: the body needs a non-empty 'schema' string (the schema as text)"
        )
    schema_type = body.get("schemaType") or AVRO
    if not isinstance(schema_type, str):
        raise UnprocessableRequestError("'schemaType' must be a string: AVRO or JSON")
    raw_refs = body.get("references")
    if raw_refs is None:
        raw_refs = []
    if not isinstance(raw_refs, list):
        raise UnprocessableRequestError("'references' must be a list")
    references = []
    for ref in raw_refs:
        if (
            not isinstance(ref, dict)
            or not isinstance(ref.get("name"), str)
            or not isinstance(ref.get("subject"), str)
            or not isinstance(ref.get("version"), int)
            or isinstance(ref.get("version"), bool)
        ):
            raise UnprocessableRequestError(
                'each reference must be {"name": str, "subject": str, "version": int}'
            )
        references.append(Reference(ref["name"], ref["subject"], ref["version"]))
    return SchemaText(schema_type.upper(), schema, tuple(references))


def _schema_fields(text: SchemaText) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if text.schema_type != AVRO:
        fields["schemaType"] = text.schema_type
    if text.references:
        fields["references"] = [r.to_json() for r in text.references]
    fields["schema"] = text.schema
    return fields


def _version_json(record: SchemaValue) -> dict[str, Any]:
    return {
        "subject": record.subject,
        "version": record.version,
        "id": record.id,
        **_schema_fields(record.text),
    }


def _raw_schema(text: SchemaText) -> Response:
    # The schema itself as the body: JSON text as stored.
    return Response(text.schema, media_type=CONTENT_TYPE)


def build_app(registry: Registry) -> Starlette:
    """The ASGI app serving ``registry``."""

    async def root(request: Request) -> Any:
        return {}

    async def schema_types(request: Request) -> Any:
        return registry.schema_types()

    async def contexts(request: Request) -> Any:
        return ["."]

    async def schema_by_id(request: Request) -> Any:
        record = registry.schema(
            request.path_params["id"], subject=request.query_params.get("subject")
        )
        return _schema_fields(record.text)

    async def raw_schema_by_id(request: Request) -> Any:
        return _raw_schema(registry.schema(request.path_params["id"]).text)

    async def schema_id_versions(request: Request) -> Any:
        records = registry.schema_versions(
            request.path_params["id"], deleted=_flag(request, "deleted")
        )
        return [{"subject": r.subject, "version": r.version} for r in records]

    async def schema_id_subjects(request: Request) -> Any:
        records = registry.schema_versions(
            request.path_params["id"], deleted=_flag(request, "deleted")
        )
        return list(dict.fromkeys(r.subject for r in records))

    async def subjects(request: Request) -> Any:
        return registry.subjects(
            prefix=request.query_params.get("subjectPrefix", ""),
            deleted=_flag(request, "deleted"),
            deleted_only=_flag(request, "deleted_only"),
        )

    async def versions(request: Request) -> Any:
        return registry.versions(
            _subject(request),
            deleted=_flag(request, "deleted"),
            deleted_only=_flag(request, "deleted_only"),
        )

    async def register(request: Request) -> Any:
        text = await _schema_body(request)
        return {"id": await registry.register(_subject(request), text)}

    async def get_version(request: Request) -> Any:
        record = registry.version(
            _subject(request), request.path_params["version"], deleted=_flag(request, "deleted")
        )
        return _version_json(record)

    async def get_version_schema(request: Request) -> Any:
        record = registry.version(
            _subject(request), request.path_params["version"], deleted=_flag(request, "deleted")
        )
        return _raw_schema(record.text)

    async def referenced_by(request: Request) -> Any:
        return registry.referenced_by(_subject(request), request.path_params["version"])

    async def delete_version(request: Request) -> Any:
        return await registry.delete_version(
            _subject(request), request.path_params["version"], permanent=_flag(request, "permanent")
        )

    async def lookup(request: Request) -> Any:
        text = await _schema_body(request)
        record = registry.lookup(_subject(request), text, deleted=_flag(request, "deleted"))
        return _version_json(record)

    async def delete_subject(request: Request) -> Any:
        return await registry.delete_subject(
            _subject(request), permanent=_flag(request, "permanent")
        )

    async def compatibility(request: Request) -> Any:
        text = await _schema_body(request)
        version = request.path_params.get("version")
        result = registry.test_compatibility(_subject(request), text, version)
        answer: dict[str, Any] = {"is_compatible": result.is_compatible}
        if _flag(request, "verbose"):
            answer["messages"] = result.messages
        return answer

    def subject_of(request: Request) -> str | None:
        subject = request.path_params.get("subject")
        return None if subject is None else str(subject)

    async def get_config(request: Request) -> Any:
        level = registry.config(
            subject_of(request), default_to_global=_flag(request, "defaultToGlobal")
        )
        return {"compatibilityLevel": level.value}

    async def put_config(request: Request) -> Any:
        body = await _object_body(request)
        level = await registry.set_config(subject_of(request), body.get("compatibility"))
        return {"compatibility": level.value}

    async def delete_config(request: Request) -> Any:
        return {"compatibilityLevel": (await registry.delete_config(subject_of(request))).value}

    async def get_mode(request: Request) -> Any:
        mode = registry.mode(
            subject_of(request), default_to_global=_flag(request, "defaultToGlobal")
        )
        return {"mode": mode}

    async def put_mode(request: Request) -> Any:
        body = await _object_body(request)
        return {"mode": await registry.set_mode(subject_of(request), body.get("mode"))}

    async def delete_mode(request: Request) -> Any:
        return {"mode": await registry.delete_mode(_subject(request))}

    def route(path: str, handler: Handler, method: str = "GET") -> Route:
        async def endpoint(request: Request) -> Response:
            result = await handler(request)
            return result if isinstance(result, Response) else RegistryResponse(result)

        return Route(path, endpoint, methods=[method])

    subject = "/subjects/{subject}"
    version = subject + "/versions/{version}"
    routes = [
        route("/", root),
        route("/schemas/types", schema_types),
        route("/contexts", contexts),
        route("/schemas/ids/{id:int}", schema_by_id),
        route("/schemas/ids/{id:int}/schema", raw_schema_by_id),
        route("/schemas/ids/{id:int}/versions", schema_id_versions),
        route("/schemas/ids/{id:int}/subjects", schema_id_subjects),
        route("/subjects", subjects),
        route(subject, lookup, "POST"),
        route(subject, delete_subject, "DELETE"),
        route(subject + "/versions", versions),
        route(subject + "/versions", register, "POST"),
        route(version, get_version),
        route(version, delete_version, "DELETE"),
        route(version + "/schema", get_version_schema),
        route(version + "/referencedby", referenced_by),
        route("/compatibility" + subject + "/versions", compatibility, "POST"),
        route("/compatibility" + version, compatibility, "POST"),
        route("/config", get_config),
        route("/config", put_config, "PUT"),
        route("/config", delete_config, "DELETE"),
        route("/config/{subject}", get_config),
        route("/config/{subject}", put_config, "PUT"),
        route("/config/{subject}", delete_config, "DELETE"),
        route("/mode", get_mode),
        route("/mode", put_mode, "PUT"),
        route("/mode/{subject}", get_mode),
        route("/mode/{subject}", put_mode, "PUT"),
        route("/mode/{subject}", delete_mode, "DELETE"),
    ]

    async def registry_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RegistryError)
        return _error(exc.status, exc.error_code, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.status_code, f"HTTP {exc.status_code}: {exc.detail}")

    async def unexpected(request: Request, exc: Exception) -> Response:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, 50001, f"Error in the registry: {type(exc).__name__}: {exc}")

    return Starlette(
        routes=routes,
        exception_handlers={
            RegistryError: registry_error,
            HTTPException: http_error,
            Exception: unexpected,
        },
    )
