"""Parsing schemas: what is invalid (and says why), and when two texts are one schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rivulet.registry._errors import InvalidSchemaError
from rivulet.registry._model import Reference, SchemaText
from rivulet.registry.compatibility import Compatibility, check, parse_schema


def parse(schema: Any, schema_type: str = "AVRO", refs: dict[str, Any] | None = None) -> Any:
    texts = {name: SchemaText(schema_type, json.dumps(doc)) for name, doc in (refs or {}).items()}
    references = tuple(Reference(name, f"{name}-subject", 1) for name in texts)

    def resolve(ref: Reference) -> SchemaText:
        return texts[ref.name]

    text = schema if isinstance(schema, str) else json.dumps(schema)
    return parse_schema(SchemaText(schema_type, text, references), resolve)


def record(*fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": "Order", "fields": list(fields), **extra}


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("{not json", "not valid JSON"),
        ({"type": "bogus"}, "unknown type 'bogus'"),
        (record({"name": "x", "type": "Missing"}), "Missing"),
        (record({"name": "x", "type": "int", "default": "one"}), "Default value"),
        (record({"name": "x", "type": "int"}, {"name": "x", "type": "long"}), "defined twice"),
        (record({"name": "1x", "type": "int"}), "not a legal Avro name"),
        ({"type": "record", "name": "my-order", "fields": []}, "not a legal Avro name"),
        ({"type": "enum", "name": "E", "symbols": ["A", "A"]}, "unique"),
        ({"type": "enum", "name": "E", "symbols": ["A"], "default": "B"}, "symbols"),
        ({"type": "fixed", "name": "F", "size": -1}, "non-negative"),
        (["int", "int"], "twice"),
        (["null", ["int"]], "another union"),
        ({"type": "array"}, "items"),
        ({"type": "record", "name": "int", "fields": []}, "primitive"),
    ],
)
def test_invalid_avro_is_refused_with_a_reason(schema: Any, says: str) -> None:
    with pytest.raises(InvalidSchemaError, match="Invalid schema") as info:
        parse(schema)
    assert says in info.value.message


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "strnig"}, "metaschema"),
        ({"properties": {"a": {"type": 5}}}, "/properties/a/type"),
        ([1, 2], "object or a boolean"),
        ({"$ref": "#/$defs/Missing"}, "points at nothing"),
        ({"$ref": "other.json"}, "names no reference"),
    ],
)
def test_invalid_json_schema_is_refused_with_a_reason(schema: Any, says: str) -> None:
    with pytest.raises(InvalidSchemaError) as info:
        parse(schema, "JSON")
    assert says in info.value.message


def test_protobuf_is_refused_clearly() -> None:
    with pytest.raises(InvalidSchemaError, match="PROTOBUF schemas are not supported"):
        parse('syntax = "proto3";', "PROTOBUF")


def test_avro_identity_ignores_spelling() -> None:
    a = parse(record({"name": "n", "type": "int"}, namespace="shop"))
    b = parse(
        '{"fields": [{"type": {"type": "int"}, "name": "n"}], "name": "shop.Order",'
        ' "type": "record"}'
    )
    assert a.canonical == b.canonical


def test_avro_identity_keeps_what_resolution_reads() -> None:
    # Parsing Canonical Form would erase these differences; the registry must not.
    plain = parse(record({"name": "n", "type": "int"}))
    with_default = parse(record({"name": "n", "type": "int", "default": 0}))
    with_alias = parse(record({"name": "n", "type": "int", "aliases": ["m"]}))
    assert len({plain.canonical, with_default.canonical, with_alias.canonical}) == 3


def test_json_identity_ignores_key_order_and_spaces() -> None:
    a = parse('{"type": "object", "properties": {"a": {"type": "string"}}}', "JSON")
    b = parse('{"properties":{"a":{"type":"string"}},"type":"object"}', "JSON")
    assert a.canonical == b.canonical


def test_avro_references_provide_named_types() -> None:
    address = {"type": "record", "name": "Address", "namespace": "shop", "fields": [
        {"name": "city", "type": "string"}]}  # fmt: skip
    order = record({"name": "to", "type": "shop.Address"})
    parsed = parse(order, refs={"shop.Address": address})
    widened = {**address, "fields": [*address["fields"], {"name": "zip", "type": "string"}]}
    newer = parse(order, refs={"shop.Address": widened})
    [problem] = check(newer, [(1, parsed)], Compatibility.BACKWARD)
    assert problem.problem.rule == "avro.reader-field-missing-default"


def test_avro_without_its_reference_is_invalid() -> None:
    with pytest.raises(InvalidSchemaError, match=r"shop\.Address"):
        parse(record({"name": "to", "type": "shop.Address"}))


def test_json_references_resolve_by_name_and_pointer() -> None:
    address = {"type": "object", "$defs": {"Zip": {"type": "integer"}},
               "properties": {"zip": {"$ref": "#/$defs/Zip"}}}  # fmt: skip
    order = {"type": "object", "properties": {"to": {"$ref": "address.json"},
             "zip": {"$ref": "address.json#/$defs/Zip"}}}  # fmt: skip
    old = parse(order, "JSON", refs={"address.json": address})
    narrowed = {**address, "$defs": {"Zip": {"type": "integer", "maximum": 99999}}}
    new = parse(order, "JSON", refs={"address.json": narrowed})
    problems = check(new, [(1, old)], Compatibility.BACKWARD)
    assert {p.problem.path for p in problems} == {
        "/properties/to/properties/zip",
        "/properties/zip",
    }
    assert {p.problem.rule for p in problems} == {"json.maximum-tightened"}


def test_recursive_json_schema_terminates() -> None:
    tree = {"$defs": {"Node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
        "$ref": "#/$defs/Node"}  # fmt: skip
    parsed = parse(tree, "JSON")
    assert check(parsed, [(1, parsed)], Compatibility.FULL_TRANSITIVE) == []


def test_a_format_change_is_incompatible() -> None:
    avro = parse(record({"name": "n", "type": "int"}))
    json_schema = parse({"type": "object"}, "JSON")
    [problem] = check(json_schema, [(1, avro)], Compatibility.BACKWARD)
    assert problem.problem.rule == "schema-type-changed"
