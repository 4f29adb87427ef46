"""The compatibility rules, case by case: schema changes with the verdict each level gives.

Each case names the rule it checks. Incompatible cases also name the rule id the
checker must report, so a verdict reached for the wrong reason fails too. Versions
are oldest first; the last schema is the one being registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from rivulet.registry._model import SchemaText
from rivulet.registry.compatibility import Compatibility, check, parse_schema

BACKWARD = Compatibility.BACKWARD
BACKWARD_T = Compatibility.BACKWARD_TRANSITIVE
FORWARD = Compatibility.FORWARD
FORWARD_T = Compatibility.FORWARD_TRANSITIVE
FULL = Compatibility.FULL
FULL_T = Compatibility.FULL_TRANSITIVE
NONE = Compatibility.NONE


@dataclass(frozen=True)
class Case:
    rule: str
    schema_type: str
    versions: tuple[Any, ...]
    new: Any
    level: Compatibility
    #: None: compatible; otherwise the rule id the checker must report.
    breaks: str | None


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def record(*fields: dict[str, Any], name: str = "Order", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


ID = field("id", "string")


def avro(
    rule: str, old: Any, new: Any, level: Compatibility, breaks: str | None, *more: Any
) -> Case:
    """``more``: further versions; then ``old`` is the oldest and ``more`` follow it."""
    return Case(rule, "AVRO", (old, *more), new, level, breaks)


def obj(closed: bool | None = None, required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed is not None:
        schema["additionalProperties"] = not closed
    return schema


def js(rule: str, old: Any, new: Any, level: Compatibility, breaks: str | None) -> Case:
    return Case(rule, "JSON", (old,), new, level, breaks)


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
DRAFT4 = "http://json-schema.org/draft-04/schema#"

CASES = [
    # ------------------------------------------------------------------ Avro: fields
    avro(
        "a reader field missing from the writer is filled from its default",
        record(ID),
        record(ID, field("qty", "int", default=1)),
        BACKWARD,
        None,
    ),
    avro(
        "a reader field missing from the writer needs a default",
        record(ID),
        record(ID, field("qty", "int")),
        BACKWARD,
        "avro.reader-field-missing-default",
    ),
    avro(
        "a writer field the reader lacks is skipped (adding a field is forward compatible)",
        record(ID),
        record(ID, field("qty", "int")),
        FORWARD,
        None,
    ),
    avro(
        "removing a field without default breaks old readers",
        record(ID, field("qty", "int")),
        record(ID),
        FORWARD,
        "avro.reader-field-missing-default",
    ),
    avro(
        "removing a field that had a default keeps old readers working",
        record(ID, field("qty", "int", default=0)),
        record(ID),
        FULL,
        None,
    ),
    avro(
        "a writer field the reader lacks is skipped (removing is backward compatible)",
        record(ID, field("qty", "int")),
        record(ID),
        BACKWARD,
        None,
    ),
    avro(
        "a field renamed with an alias matches the writer's old name",
        record(ID, field("qty", "int")),
        record(ID, field("quantity", "int", aliases=["qty"])),
        BACKWARD,
        None,
    ),
    avro(
        "a field renamed without alias or default is a missing field",
        record(ID, field("qty", "int")),
        record(ID, field("quantity", "int")),
        BACKWARD,
        "avro.reader-field-missing-default",
    ),
    # ------------------------------------------------------------------ Avro: promotions
    avro(
        "promotion: int is read as long",
        record(field("n", "int")),
        record(field("n", "long")),
        BACKWARD,
        None,
    ),
    avro(
        "promotion is one-way: an int reader cannot read a long",
        record(field("n", "int")),
        record(field("n", "long")),
        FORWARD,
        "avro.type-mismatch",
    ),
    avro(
        "narrowing long to int is not a promotion",
        record(field("n", "long")),
        record(field("n", "int")),
        BACKWARD,
        "avro.type-mismatch",
    ),
    avro(
        "promotion: int and long are read as float or double",
        record(field("a", "int"), field("b", "long"), field("c", "float")),
        record(field("a", "float"), field("b", "double"), field("c", "double")),
        BACKWARD,
        None,
    ),
    avro(
        "promotion: string and bytes are read as each other",
        record(field("a", "string"), field("b", "bytes")),
        record(field("a", "bytes"), field("b", "string")),
        FULL,
        None,
    ),
    avro(
        "a string cannot be read as an int",
        record(field("n", "string")),
        record(field("n", "int")),
        BACKWARD,
        "avro.type-mismatch",
    ),
    # ------------------------------------------------------------------ Avro: enums
    avro(
        "adding an enum symbol: the new reader knows every old symbol",
        record(field("s", enum("NEW", "PAID"))),
        record(field("s", enum("NEW", "PAID", "SHIPPED"))),
        BACKWARD,
        None,
    ),
    avro(
        "adding an enum symbol: an old reader lacks it",
        record(field("s", enum("NEW", "PAID"))),
        record(field("s", enum("NEW", "PAID", "SHIPPED"))),
        FORWARD,
        "avro.missing-enum-symbols",
    ),
    avro(
        "removing an enum symbol: the new reader lacks a symbol old data holds",
        record(field("s", enum("NEW", "PAID", "SHIPPED"))),
        record(field("s", enum("NEW", "PAID"))),
        BACKWARD,
        "avro.missing-enum-symbols",
    ),
    avro(
        "an enum default absorbs symbols the reader lacks",
        record(field("s", enum("NEW", "PAID", "SHIPPED"))),
        record(field("s", enum("NEW", "PAID", default="NEW"))),
        BACKWARD,
        None,
    ),
    # ------------------------------------------------------------------ Avro: named types
    avro(
        "records match by name: a rename breaks resolution",
        record(ID, name="Order"),
        record(ID, name="Purchase"),
        BACKWARD,
        "avro.name-mismatch",
    ),
    avro(
        "a renamed record whose aliases hold the old full name matches",
        record(ID, name="Order", namespace="shop"),
        record(ID, name="Purchase", namespace="shop", aliases=["shop.Order"]),
        BACKWARD,
        None,
    ),
    avro(
        "names match unqualified: moving a record to another namespace is compatible",
        record(ID, namespace="shop.v1"),
        record(ID, namespace="shop.v2"),
        FULL,
        None,
    ),
    avro(
        "fixed sizes must be equal",
        record(field("h", {"type": "fixed", "name": "Hash", "size": 16})),
        record(field("h", {"type": "fixed", "name": "Hash", "size": 32})),
        BACKWARD,
        "avro.fixed-size-mismatch",
    ),
    avro(
        "decimals match only with equal precision and scale",
        record(field("p", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2})),
        record(field("p", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3})),
        BACKWARD,
        "avro.decimal-mismatch",
    ),
    avro(
        "nested records are resolved field by field",
        record(field("to", record(field("city", "string"), name="Address"))),
        record(
            field("to", record(field("city", "string"), field("zip", "string"), name="Address"))
        ),
        BACKWARD,
        "avro.reader-field-missing-default",
    ),
    avro(
        "recursive records resolve (the comparison terminates)",
        record(field("value", "int"), field("next", ["null", "Node"]), name="Node"),
        record(
            field("value", "long"),
            field("next", ["null", "Node"]),
            field("label", "string", default=""),
            name="Node",
        ),
        BACKWARD,
        None,
    ),
    # ------------------------------------------------------------------ Avro: collections
    avro(
        "arrays resolve their items (with promotion)",
        record(field("xs", {"type": "array", "items": "int"})),
        record(field("xs", {"type": "array", "items": "long"})),
        BACKWARD,
        None,
    ),
    avro(
        "map values must resolve",
        record(field("m", {"type": "map", "values": "string"})),
        record(field("m", {"type": "map", "values": "int"})),
        BACKWARD,
        "avro.type-mismatch",
    ),
    avro(
        "an array is not a map",
        record(field("c", {"type": "array", "items": "string"})),
        record(field("c", {"type": "map", "values": "string"})),
        BACKWARD,
        "avro.type-mismatch",
    ),
    # ------------------------------------------------------------------ Avro: unions
    avro(
        "a reader union reads a writer value through its matching branch",
        record(field("note", "string")),
        record(field("note", ["null", "string"], default=None)),
        BACKWARD,
        None,
    ),
    avro(
        "every writer union branch must resolve against a non-union reader",
        record(field("note", ["null", "string"], default=None)),
        record(field("note", "string")),
        BACKWARD,
        "avro.type-mismatch",
    ),
    avro(
        "a non-union reader reads the writer union branches it matches (old reader, new union)",
        record(field("n", "long")),
        record(field("n", ["int", "long"])),
        FORWARD,
        None,
    ),
    avro(
        "removing a union branch leaves old values unreadable",
        record(field("v", ["null", "string", "int"])),
        record(field("v", ["null", "string"])),
        BACKWARD,
        "avro.missing-union-branch",
    ),
    # ------------------------------------------------------------------ Avro: levels
    avro(
        "NONE accepts any change",
        record(field("n", "string")),
        record(field("n", "int")),
        NONE,
        None,
    ),
    avro(
        "BACKWARD checks only the latest version",
        record(ID),
        record(ID, field("b", "string")),
        BACKWARD,
        None,
        record(ID, field("b", "string", default="")),
    ),
    avro(
        "BACKWARD_TRANSITIVE checks every version",
        record(ID),
        record(ID, field("b", "string")),
        BACKWARD_T,
        "avro.reader-field-missing-default",
        record(ID, field("b", "string", default="")),
    ),
    avro(
        "FORWARD checks only that the latest version reads the new data",
        record(ID, field("b", "string")),
        record(ID),
        FORWARD,
        None,
        record(ID, field("b", "string", default="")),
    ),
    avro(
        "FORWARD_TRANSITIVE checks that every version reads the new data",
        record(ID, field("b", "string")),
        record(ID),
        FORWARD_T,
        "avro.reader-field-missing-default",
        record(ID, field("b", "string", default="")),
    ),
    avro(
        "FULL_TRANSITIVE: both directions against every version",
        record(ID, field("b", "string", default="")),
        record(ID, field("c", "int", default=0)),
        FULL_T,
        None,
        record(ID),
    ),
    # ------------------------------------------------------------------ JSON Schema
    js(
        "a property added to a closed writer model: the writer never sends it",
        obj(closed=True, id=STR),
        obj(closed=True, id=STR, note=STR),
        BACKWARD,
        None,
    ),
    js(
        "a property added to an open writer model may meet other values",
        obj(id=STR),
        obj(id=STR, note=STR),
        BACKWARD,
        "json.property-added-to-open-content-model",
    ),
    js(
        "a property added to an open model is fine when the reader accepts any value",
        obj(id=STR),
        obj(id=STR, note={}),
        BACKWARD,
        None,
    ),
    js(
        "a property removed into an open reader model is accepted as additional",
        obj(id=STR, note=STR),
        obj(id=STR),
        BACKWARD,
        None,
    ),
    js(
        "a property removed from a closed reader model is rejected",
        obj(closed=True, id=STR, note=STR),
        obj(closed=True, id=STR),
        BACKWARD,
        "json.property-removed-from-closed-content-model",
    ),
    js(
        "a removed property must fit the reader's additionalProperties schema",
        obj(id=STR, qty=INT),
        {**obj(id=STR), "additionalProperties": STR},
        BACKWARD,
        "json.property-removed-not-covered",
    ),
    js(
        "a property added to a closed model breaks the old (closed) reader",
        obj(closed=True, id=STR),
        obj(closed=True, id=STR, note=STR),
        FORWARD,
        "json.property-removed-from-closed-content-model",
    ),
    js(
        "a newly required property may be missing from old documents",
        obj(closed=True, id=STR, note=STR),
        obj(closed=True, required=("note",), id=STR, note=STR),
        BACKWARD,
        "json.required-added",
    ),
    js(
        "dropping a requirement accepts more",
        obj(required=("id",), id=STR),
        obj(id=STR),
        BACKWARD,
        None,
    ),
    js(
        "widening integer to number",
        obj(qty=INT),
        obj(qty=NUM),
        BACKWARD,
        None,
    ),
    js(
        "narrowing number to integer",
        obj(qty=NUM),
        obj(qty=INT),
        BACKWARD,
        "json.type-narrowed",
    ),
    js(
        "a property made nullable (type list): old readers reject the null",
        obj(note=STR),
        obj(note={"type": ["string", "null"]}),
        FORWARD,
        "json.type-narrowed",  # the old reader rejects the null the new writer may send
    ),
    js(
        "anyOf: adding a branch accepts more",
        obj(note={"anyOf": [STR]}),
        obj(note={"anyOf": [STR, {"type": "null"}]}),
        BACKWARD,
        None,
    ),
    js(
        "anyOf: removing a branch leaves old values uncovered",
        obj(note={"anyOf": [STR, {"type": "null"}]}),
        obj(note={"anyOf": [STR]}),
        BACKWARD,
        "json.combined-branch-not-covered",
    ),
    js(
        "enum extended",
        obj(s={"enum": ["NEW", "PAID"]}),
        obj(s={"enum": ["NEW", "PAID", "SHIPPED"]}),
        BACKWARD,
        None,
    ),
    js(
        "enum narrowed",
        obj(s={"enum": ["NEW", "PAID", "SHIPPED"]}),
        obj(s={"enum": ["NEW", "PAID"]}),
        BACKWARD,
        "json.enum-narrowed",
    ),
    js(
        "an enum added where any string was allowed",
        obj(s=STR),
        obj(s={"type": "string", "enum": ["NEW"]}),
        BACKWARD,
        "json.enum-added",
    ),
    js(
        "a lower maximum rejects old values",
        obj(qty={"type": "integer", "maximum": 100}),
        obj(qty={"type": "integer", "maximum": 10}),
        BACKWARD,
        "json.maximum-tightened",
    ),
    js(
        "a minimum added where there was none",
        obj(qty=INT),
        obj(qty={"type": "integer", "exclusiveMinimum": 0}),
        BACKWARD,
        "json.minimum-tightened",
    ),
    js(
        "looser bounds accept more (draft-4 boolean exclusiveMinimum too)",
        {**obj(qty={"type": "integer", "minimum": 1, "maximum": 10}), "$schema": DRAFT4},
        {
            **obj(qty={"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 100}),
            "$schema": DRAFT4,
        },
        BACKWARD,
        None,
    ),
    js(
        "a shorter maxLength rejects old strings",
        obj(name={"type": "string", "maxLength": 64}),
        obj(name={"type": "string", "maxLength": 16}),
        BACKWARD,
        "json.max-length-tightened",
    ),
    js(
        "a pattern added constrains what was free",
        obj(sku=STR),
        obj(sku={"type": "string", "pattern": "^[A-Z]+$"}),
        BACKWARD,
        "json.pattern-changed",
    ),
    js(
        "a multipleOf that divides the old one accepts every old value",
        obj(cents={"type": "integer", "multipleOf": 10}),
        obj(cents={"type": "integer", "multipleOf": 5}),
        BACKWARD,
        None,
    ),
    js(
        "array items narrowed",
        obj(tags={"type": "array", "items": NUM}),
        obj(tags={"type": "array", "items": INT}),
        BACKWARD,
        "json.type-narrowed",
    ),
    js(
        "unique items required where duplicates were allowed",
        obj(tags={"type": "array", "items": STR}),
        obj(tags={"type": "array", "items": STR, "uniqueItems": True}),
        BACKWARD,
        "json.unique-items-added",
    ),
    js(
        "closing an open content model rejects undeclared properties",
        obj(id=STR),
        obj(closed=True, id=STR),
        BACKWARD,
        "json.additional-properties-narrowed",
    ),
    js(
        "opening a closed content model accepts more",
        obj(closed=True, id=STR),
        obj(closed=False, id=STR),
        BACKWARD,
        None,
    ),
    js(
        "$ref targets are compared (a narrowed definition)",
        {**obj(to={"$ref": "#/$defs/Address"}), "$defs": {"Address": obj(zip=NUM)}},
        {**obj(to={"$ref": "#/$defs/Address"}), "$defs": {"Address": obj(zip=INT)}},
        BACKWARD,
        "json.type-narrowed",
    ),
    js(
        "FULL: adding an optional property to a closed model is only backward compatible",
        obj(closed=True, id=STR),
        obj(closed=True, id=STR, note=STR),
        FULL,
        "json.property-removed-from-closed-content-model",
    ),
]


def _parse(schema_type: str, schema: Any) -> Any:
    return parse_schema(SchemaText(schema_type, json.dumps(schema)), resolve=None)


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_verdict(case: Case) -> None:
    previous = [(n, _parse(case.schema_type, s)) for n, s in enumerate(case.versions, 1)]
    problems = check(_parse(case.schema_type, case.new), previous, case.level)
    rules = {p.problem.rule for p in problems}
    if case.breaks is None:
        assert problems == [], [str(p) for p in problems]
    else:
        assert case.breaks in rules, [str(p) for p in problems]


def test_the_table_covers_both_formats_and_every_level() -> None:
    assert len(CASES) >= 40
    assert sum(c.schema_type == "AVRO" for c in CASES) >= 20
    assert sum(c.schema_type == "JSON" for c in CASES) >= 20
    assert {c.level for c in CASES} == set(Compatibility)
    assert sum(c.breaks is None for c in CASES) >= 15
    assert sum(c.breaks is not None for c in CASES) >= 15


def test_problems_say_where_and_why() -> None:
    [problem] = check(
        _parse("AVRO", record(field("to", record(field("zip", "string"), name="Address")))),
        [(1, _parse("AVRO", record(field("to", record(name="Address")))))],
        BACKWARD,
    )
    assert problem.version == 1
    assert problem.problem.path == "/Order.to/Address.zip"
    assert "'zip'" in str(problem)
    assert "no default" in str(problem)
