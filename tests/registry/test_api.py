"""The REST API over HTTP: answers, Confluent error codes, and bad input changing nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def avro_record(*fields: str, name: str = "Order", **extra: Any) -> str:
    """A record schema with string fields (``name`` or ``name=default``)."""
    out = []
    for spec in fields:
        fname, sep, default = spec.partition("=")
        f: dict[str, Any] = {"name": fname, "type": "string"}
        if sep:
            f["default"] = default
        out.append(f)
    return json.dumps({"type": "record", "name": name, "fields": out, **extra})


def register(http: httpx.Client, subject: str, schema: str, **body: Any) -> httpx.Response:
    return http.post(f"/subjects/{subject}/versions", json={"schema": schema, **body})


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return response.json()


def error(response: httpx.Response, status: int, code: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    body = response.json()
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    return str(body["message"])


def test_root_types_and_contexts(http: httpx.Client) -> None:
    assert ok(http.get("/")) == {}
    assert ok(http.get("/schemas/types")) == ["AVRO", "JSON"]
    assert ok(http.get("/contexts")) == ["."]


def test_register_is_idempotent_and_ids_are_shared(http: httpx.Client, subject: str) -> None:
    v1 = avro_record("id")
    first = ok(register(http, subject, v1))["id"]
    # The same schema spelled differently is the same schema.
    respelled = json.dumps(json.loads(v1), indent=4)
    assert ok(register(http, subject, respelled))["id"] == first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
    # Another subject with the same schema gets the same id, as version 1 of its own.
    assert ok(register(http, f"{subject}-copy", v1))["id"] == first
    v2 = ok(register(http, subject, avro_record("id", "note=")))["id"]
    assert v2 != first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 2]
    latest = ok(http.get(f"/subjects/{subject}/versions/latest"))
    assert latest == {
        "subject": subject,
        "version": 2,
        "id": v2,
        "schema": json.dumps(json.loads(avro_record("id", "note=")), separators=(",", ":")),
    }
    assert ok(http.get(f"/subjects/{subject}/versions/-1"))["version"] == 2
    assert ok(http.get(f"/subjects/{subject}/versions/1"))["id"] == first
    assert json.loads(http.get(f"/subjects/{subject}/versions/1/schema").text) == json.loads(v1)
    assert ok(http.get(f"/schemas/ids/{first}")) == {"schema": latest["schema"].replace(
        ',{"name":"note","type":"string","default":""}', "")}  # fmt: skip
    assert json.loads(http.get(f"/schemas/ids/{first}/schema").text) == json.loads(v1)
    assert ok(http.get(f"/schemas/ids/{first}/versions")) == [
        {"subject": subject, "version": 1},
        {"subject": f"{subject}-copy", "version": 1},
    ]
    assert ok(http.get(f"/schemas/ids/{first}/subjects")) == [subject, f"{subject}-copy"]
    assert {subject, f"{subject}-copy"} <= set(ok(http.get("/subjects")))
    assert ok(http.get("/subjects", params={"subjectPrefix": subject})) == [
        subject,
        f"{subject}-copy",
    ]


def test_lookup_by_subject(http: httpx.Client, subject: str) -> None:
    schema_id = ok(register(http, subject, avro_record("id")))["id"]
    found = ok(http.post(f"/subjects/{subject}", json={"schema": avro_record("id")}))
    assert (found["subject"], found["version"], found["id"]) == (subject, 1, schema_id)
    other = {"schema": avro_record("other")}
    error(http.post(f"/subjects/{subject}", json=other), 404, 40403)
    error(http.post(f"/subjects/{subject}-nope", json=other), 404, 40401)


def test_json_schemas(http: httpx.Client, subject: str) -> None:
    schema = json.dumps({"type": "object", "properties": {"id": {"type": "string"}}})
    schema_id = ok(register(http, subject, schema, schemaType="JSON"))["id"]
    got = ok(http.get(f"/schemas/ids/{schema_id}"))
    assert got["schemaType"] == "JSON"
    assert ok(http.get(f"/subjects/{subject}/versions/1"))["schemaType"] == "JSON"
    found = ok(http.post(f"/subjects/{subject}", json={"schema": schema, "schemaType": "JSON"}))
    assert found["id"] == schema_id
    # Same text as Avro would be another schema (and is not valid Avro at all).
    error(register(http, f"{subject}-avro", schema), 422, 42201)


def test_compatibility_endpoints(http: httpx.Client, subject: str) -> None:
    url = f"/compatibility/subjects/{subject}/versions"
    body = {"schema": avro_record("id", "qty")}
    # Nothing registered: any schema may be.
    assert ok(http.post(url, json=body)) == {"is_compatible": True}
    error(http.post(f"{url}/latest", json=body), 404, 40401)
    ok(register(http, subject, avro_record("id")))
    answer = ok(http.post(f"{url}/latest", params={"verbose": "true"}, json=body))
    assert answer["is_compatible"] is False
    assert any("avro.reader-field-missing-default" in m for m in answer["messages"])
    assert ok(http.post(f"{url}/1", json={"schema": avro_record("id", "qty=0")})) == {
        "is_compatible": True
    }
    error(http.post(f"{url}/7", json=body), 404, 40402)
    assert ok(http.post(url, json=body))["is_compatible"] is False
    # Registering it is refused with 409 and the reason.
    message = error(register(http, subject, avro_record("id", "qty")), 409, 409)
    assert "reader-field-missing-default" in message
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]


def test_subject_config_governs_registration(http: httpx.Client, subject: str) -> None:
    ok(register(http, subject, avro_record("id")))
    error(http.get(f"/config/{subject}"), 404, 40408)
    assert ok(http.get(f"/config/{subject}", params={"defaultToGlobal": "true"})) == {
        "compatibilityLevel": "BACKWARD"
    }
    assert ok(http.put(f"/config/{subject}", json={"compatibility": "none"})) == {
        "compatibility": "NONE"
    }
    assert ok(http.get(f"/config/{subject}")) == {"compatibilityLevel": "NONE"}
    ok(register(http, subject, avro_record("id", "qty")))
    assert ok(http.delete(f"/config/{subject}")) == {"compatibilityLevel": "NONE"}
    error(register(http, subject, avro_record("qty", "other")), 409, 409)


@pytest.fixture
def global_settings(http: httpx.Client) -> Iterator[None]:
    yield
    http.delete("/config")
    http.put("/mode", json={"mode": "READWRITE"})


@pytest.mark.usefixtures("global_settings")
def test_global_config_and_mode(http: httpx.Client, subject: str) -> None:
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
    assert ok(http.put("/config", json={"compatibility": "FULL_TRANSITIVE"})) == {
        "compatibility": "FULL_TRANSITIVE"
    }
    assert ok(http.get("/config")) == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert ok(http.delete("/config")) == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}
    ok(register(http, subject, avro_record("id")))
    assert ok(http.put("/mode", json={"mode": "READONLY"})) == {"mode": "READONLY"}
    error(register(http, subject, avro_record("id", "x=")), 422, 42205)
    error(http.delete(f"/subjects/{subject}"), 422, 42205)
    # Looking up what exists still works: read-only replicas serve serializers.
    assert ok(register(http, subject, avro_record("id")))["id"] > 0


def test_subject_mode(http: httpx.Client, subject: str) -> None:
    ok(register(http, subject, avro_record("id")))
    error(http.get(f"/mode/{subject}"), 404, 40409)
    assert ok(http.put(f"/mode/{subject}", json={"mode": "READONLY"})) == {"mode": "READONLY"}
    assert ok(http.get(f"/mode/{subject}")) == {"mode": "READONLY"}
    error(register(http, subject, avro_record("id", "x=")), 422, 42205)
    assert ok(http.delete(f"/mode/{subject}")) == {"mode": "READONLY"}
    ok(register(http, subject, avro_record("id", "x=")))


def test_soft_and_hard_delete_of_versions(http: httpx.Client, subject: str) -> None:
    first = ok(register(http, subject, avro_record("id", name="Deleted")))["id"]
    ok(register(http, subject, avro_record("id", "a=", name="Deleted")))
    error(http.delete(f"/subjects/{subject}/versions/1", params={"permanent": "true"}), 404, 40407)
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    error(http.delete(f"/subjects/{subject}/versions/1"), 404, 40406)
    assert ok(http.get(f"/subjects/{subject}/versions")) == [2]
    assert ok(http.get(f"/subjects/{subject}/versions", params={"deleted": "true"})) == [1, 2]
    error(http.get(f"/subjects/{subject}/versions/1"), 404, 40402)
    assert (
        ok(http.get(f"/subjects/{subject}/versions/1", params={"deleted": "true"}))["id"] == first
    )
    # Payloads written with a soft-deleted schema stay readable.
    assert "schema" in ok(http.get(f"/schemas/ids/{first}"))
    assert ok(http.get(f"/schemas/ids/{first}/versions")) == []
    # Registering it again makes a new version with the same id.
    assert ok(register(http, subject, avro_record("id", name="Deleted")))["id"] == first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [2, 3]
    ok(http.delete(f"/subjects/{subject}/versions/3"))
    for version in (1, 3):
        path = f"/subjects/{subject}/versions/{version}"
        assert ok(http.delete(path, params={"permanent": "true"})) == version
    error(http.get(f"/schemas/ids/{first}"), 404, 40403)
    again = ok(register(http, f"{subject}-again", avro_record("id", name="Deleted")))["id"]
    assert again > first  # a hard-deleted id is never given out again


def test_soft_and_hard_delete_of_subjects(http: httpx.Client, subject: str) -> None:
    schema_id = ok(register(http, subject, avro_record("id")))["id"]
    ok(http.put(f"/config/{subject}", json={"compatibility": "FULL"}))
    error(http.delete(f"/subjects/{subject}", params={"permanent": "true"}), 404, 40405)
    assert ok(http.delete(f"/subjects/{subject}")) == [1]
    error(http.delete(f"/subjects/{subject}"), 404, 40404)
    assert subject not in ok(http.get("/subjects"))
    assert subject in ok(http.get("/subjects", params={"deleted": "true"}))
    assert subject in ok(http.get("/subjects", params={"deleted_only": "true"}))
    error(http.get(f"/subjects/{subject}/versions"), 404, 40401)
    error(http.get(f"/config/{subject}"), 404, 40408)  # its config went with it
    # Re-registering after a soft delete continues the version numbers, with the same id.
    assert ok(register(http, subject, avro_record("id")))["id"] == schema_id
    assert ok(http.get(f"/subjects/{subject}/versions")) == [2]
    ok(http.delete(f"/subjects/{subject}"))
    assert ok(http.delete(f"/subjects/{subject}", params={"permanent": "true"})) == [1, 2]
    assert subject not in ok(http.get("/subjects", params={"deleted": "true"}))
    error(http.delete(f"/subjects/{subject}"), 404, 40401)


def test_references(http: httpx.Client, subject: str) -> None:
    address = avro_record("city", name="Address", namespace="shop")
    ok(register(http, f"{subject}-address", address))
    order = json.dumps(
        {"type": "record", "name": "Order", "fields": [{"name": "to", "type": "shop.Address"}]}
    )
    refs = [{"name": "shop.Address", "subject": f"{subject}-address", "version": 1}]
    error(register(http, subject, order), 422, 42201)
    order_id = ok(register(http, subject, order, references=refs))["id"]
    got = ok(http.get(f"/subjects/{subject}/versions/1"))
    assert got["references"] == refs
    assert ok(http.get(f"/schemas/ids/{order_id}"))["references"] == refs
    assert ok(http.get(f"/subjects/{subject}-address/versions/1/referencedby")) == [order_id]
    error(http.delete(f"/subjects/{subject}-address/versions/1"), 422, 42206)
    # "latest" (-1) in a reference resolves to the version it is now.
    latest_refs = [{**refs[0], "version": -1}]
    assert ok(register(http, subject, order, references=latest_refs))["id"] == order_id
    bad_refs = [{**refs[0], "subject": "no-such-subject"}]
    error(register(http, f"{subject}-2", order, references=bad_refs), 422, 42201)


BAD_REQUESTS: list[tuple[str, str, str, Any, int, int]] = [
    # (what, method, path ({s}: the test's subject), body, status, error code)
    ("body is not JSON", "POST", "/subjects/{s}/versions", b"{schema", 400, 400),
    ("body is not an object", "POST", "/subjects/{s}/versions", [], 422, 422),
    ("no schema in the body", "POST", "/subjects/{s}/versions", {}, 422, 42201),
    ("schema is not a string", "POST", "/subjects/{s}/versions", {"schema": {}}, 422, 42201),
    ("invalid Avro", "POST", "/subjects/{s}/versions", {"schema": '{"type":"rec"}'}, 422, 42201),
    (
        "invalid JSON Schema",
        "POST",
        "/subjects/{s}/versions",
        {"schema": '{"type": 5}', "schemaType": "JSON"},
        422,
        42201,
    ),
    (
        "PROTOBUF",
        "POST",
        "/subjects/{s}/versions",
        {"schema": 'syntax = "proto3";', "schemaType": "PROTOBUF"},
        422,
        42201,
    ),
    (
        "references not a list",
        "POST",
        "/subjects/{s}/versions",
        {"schema": '"string"', "references": {"name": "x"}},
        422,
        422,
    ),
    (
        "incompatible",
        "POST",
        "/subjects/{s}/versions",
        {"schema": avro_record("other")},
        409,
        409,
    ),
    ("unknown subject", "GET", "/subjects/{s}-nope/versions", None, 404, 40401),
    ("unknown version", "GET", "/subjects/{s}/versions/99", None, 404, 40402),
    ("version zero", "GET", "/subjects/{s}/versions/0", None, 422, 42202),
    ("version not a number", "GET", "/subjects/{s}/versions/first", None, 422, 42202),
    ("unknown schema id", "GET", "/schemas/ids/999999", None, 404, 40403),
    ("unknown version to delete", "DELETE", "/subjects/{s}/versions/9", None, 404, 40402),
    ("bad level", "PUT", "/config/{s}", {"compatibility": "SOMETIMES"}, 422, 42203),
    ("bad global level", "PUT", "/config", {"compatibility": None}, 422, 42203),
    ("unsupported mode", "PUT", "/mode", {"mode": "IMPORT"}, 422, 42204),
    ("config body not JSON", "PUT", "/config", b"FULL", 400, 400),
    ("unknown path", "GET", "/nothing/here", None, 404, 404),
    ("wrong method", "PUT", "/subjects", {}, 405, 405),
]


def _snapshot(http: httpx.Client, subject: str) -> Any:
    return (
        ok(http.get("/subjects", params={"deleted": "true"})),
        ok(http.get(f"/subjects/{subject}/versions", params={"deleted": "true"})),
        ok(http.get("/config")),
        ok(http.get("/mode")),
        http.get(f"/config/{subject}").json(),
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_confluent_errors_and_change_nothing(
    http: httpx.Client, subject: str, method: str, path: str, body: Any, status: int, code: int
) -> None:
    ok(register(http, subject, avro_record("id")))
    before = _snapshot(http, subject)
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    response = http.request(
        method,
        path.format(s=subject),
        content=content,
        headers={"Content-Type": CONTENT_TYPE},
    )
    error(response, status, code)
    assert _snapshot(http, subject) == before
