"""A small client of the registry's REST API (ours or any Confluent-compatible one).

Used by the framework serializers and ``rivulet schemas``. Asynchronous calls serve
start-up (registering, checking); the few synchronous ones serve the serializers'
cache misses, which happen inside the (synchronous) encode and decode calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx

from rivulet.registry._model import AVRO, Reference, SchemaText

__all__ = ["RegistryClient", "RegistryClientError", "RegistryUnavailableError"]

_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"
_HEADERS: Final = {
    "Accept": f"{_CONTENT_TYPE}, application/vnd.schemaregistry+json, application/json",
    "Content-Type": _CONTENT_TYPE,
}


class RegistryClientError(Exception):
    """The registry answered with an error (``status``, Confluent ``error_code``)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, error code {error_code})")
        self.status = status
        self.error_code = error_code
        self.message = message


class RegistryUnavailableError(Exception):
    """The registry could not be reached; retrying later may succeed."""


def _body(text: SchemaText) -> dict[str, Any]:
    body: dict[str, Any] = {"schema": text.schema}
    if text.schema_type != AVRO:
        body["schemaType"] = text.schema_type
    if text.references:
        body["references"] = [r.to_json() for r in text.references]
    return body


def _schema_text(answer: Mapping[str, Any]) -> SchemaText:
    references = tuple(
        Reference(str(r["name"]), str(r["subject"]), int(r["version"]))
        for r in answer.get("references") or ()
    )
    return SchemaText(str(answer.get("schemaType") or AVRO), str(answer["schema"]), references)


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json() if response.content else None
    try:
        error = response.json()
        code, message = int(error.get("error_code", response.status_code)), str(error["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message = response.status_code, response.text[:500]
    raise RegistryClientError(response.status_code, code, message)


def _path(*parts: str | int) -> str:
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


class RegistryClient:
    """Talks to a registry at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._async: httpx.AsyncClient | None = None
        self._sync: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    async def _request(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.url, headers=_HEADERS, timeout=self.timeout_s
            )
        try:
            response = await self._async.request(
                method, path, content=None if body is None else json.dumps(body), params=params
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(f"schema registry {self.url}: {exc!r}") from exc
        return _answer(response)

    def _request_sync(self, method: str, path: str, body: Any = None) -> Any:
        if self._sync is None:
            self._sync = httpx.Client(base_url=self.url, headers=_HEADERS, timeout=self.timeout_s)
        try:
            response = self._sync.request(
                method, path, content=None if body is None else json.dumps(body)
            )
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(f"schema registry {self.url}: {exc!r}") from exc
        return _answer(response)

    async def register(self, subject: str, text: SchemaText) -> int:
        """Register ``text`` under ``subject`` (idempotent); its schema id."""
        answer = await self._request("POST", _path("subjects", subject, "versions"), _body(text))
        return int(answer["id"])

    async def lookup(self, subject: str, text: SchemaText) -> int | None:
        """The id of ``text`` under ``subject``, or ``None`` when it is not registered there."""
        try:
            answer = await self._request("POST", _path("subjects", subject), _body(text))
        except RegistryClientError as exc:
            if exc.error_code in {40401, 40403}:
                return None
            raise
        return int(answer["id"])

    async def test_compatibility(self, subject: str, text: SchemaText) -> tuple[bool, list[str]]:
        """Whether ``text`` may be registered under ``subject`` now, and why not."""
        answer = await self._request(
            "POST",
            _path("compatibility", "subjects", subject, "versions"),
            _body(text),
            verbose="true",
        )
        return bool(answer["is_compatible"]), [str(m) for m in answer.get("messages") or ()]

    async def latest(self, subject: str) -> tuple[int, int, SchemaText] | None:
        """``(version, id, schema)`` of the subject's latest version, or ``None``."""
        try:
            answer = await self._request("GET", _path("subjects", subject, "versions", "latest"))
        except RegistryClientError as exc:
            if exc.error_code in {40401, 40402}:
                return None
            raise
        return int(answer["version"]), int(answer["id"]), _schema_text(answer)

    async def compatibility_level(self, subject: str) -> str:
        """The level in force for ``subject``."""
        answer = await self._request("GET", _path("config", subject), defaultToGlobal="true")
        return str(answer["compatibilityLevel"])

    async def schema(self, schema_id: int) -> SchemaText:
        """The schema with id ``schema_id``."""
        return _schema_text(await self._request("GET", _path("schemas", "ids", schema_id)))

    def schema_sync(self, schema_id: int) -> SchemaText:
        """The schema with id ``schema_id``, blocking (for cache misses while decoding)."""
        return _schema_text(self._request_sync("GET", _path("schemas", "ids", schema_id)))

    def version_sync(self, subject: str, version: int) -> SchemaText:
        """The schema of ``subject`` version ``version``, blocking (to resolve references)."""
        answer = self._request_sync("GET", _path("subjects", subject, "versions", version))
        return _schema_text(answer)

    def register_sync(self, subject: str, text: SchemaText) -> int:
        """:meth:`register`, blocking (for events published to undeclared topics)."""
        answer = self._request_sync("POST", _path("subjects", subject, "versions"), _body(text))
        return int(answer["id"])

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
