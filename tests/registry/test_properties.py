"""Properties of the codecs and rules over generated schemas (Hypothesis)."""

from __future__ import annotations

import doctest
import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import rivulet.registry.compatibility
from rivulet.registry._model import Reference, SchemaText
from rivulet.registry._records import (
    ConfigKey,
    ModeKey,
    SchemaKey,
    SchemaValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    schema_value,
)
from rivulet.registry.compatibility import Compatibility, check, parse_schema

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
subjects = st.text(min_size=1, max_size=30)
PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]


@st.composite
def avro_types(draw: st.DrawFn, depth: int = 2) -> Any:
    choices = ["primitive", "array", "map", "record", "enum", "union"] if depth else ["primitive"]
    kind = draw(st.sampled_from(choices))
    if kind == "primitive":
        return draw(st.sampled_from(PRIMITIVES[1:]))
    if kind == "array":
        return {"type": "array", "items": draw(avro_types(depth - 1))}
    if kind == "map":
        return {"type": "map", "values": draw(avro_types(depth - 1))}
    if kind == "enum":
        symbols = draw(st.lists(names, min_size=1, max_size=4, unique=True))
        return {"type": "enum", "name": draw(unique_name()), "symbols": symbols}
    if kind == "union":
        return draw(st.lists(st.sampled_from(PRIMITIVES), min_size=1, max_size=3, unique=True))
    return draw(records(depth - 1))


@st.composite
def unique_name(draw: st.DrawFn) -> str:
    return draw(names)  # made unique by renamed() once the whole schema is drawn


def renamed(schema: Any) -> Any:
    """The schema with its named types renamed T0, T1, ... (names must not repeat)."""
    counter = iter(range(10**6))

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            if value.get("type") in ("record", "enum"):
                out["name"] = f"T{next(counter)}"
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(schema)


@st.composite
def records(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    field_names = draw(st.lists(names, max_size=4, unique=True))
    fields = [{"name": n, "type": draw(avro_types(depth))} for n in field_names]
    schema = {"type": "record", "name": draw(unique_name()), "fields": fields}
    return renamed(schema) if depth == 2 else schema


def parse(schema: Any, schema_type: str = "AVRO") -> Any:
    return parse_schema(SchemaText(schema_type, json.dumps(schema)), resolve=None)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same schema with every object's keys in another order."""
    if isinstance(value, dict):
        items = [(k, shuffled(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@settings(max_examples=60, deadline=None)
@given(records(), st.randoms())
def test_avro_identity_ignores_key_order(schema: dict[str, Any], rng: random.Random) -> None:
    assert parse(schema).canonical == parse(shuffled(schema, rng)).canonical


@settings(max_examples=60, deadline=None)
@given(records())
def test_a_schema_is_fully_compatible_with_itself(schema: dict[str, Any]) -> None:
    parsed = parse(schema)
    assert check(parse(schema), [(1, parsed), (2, parsed)], Compatibility.FULL_TRANSITIVE) == []


@settings(max_examples=60, deadline=None)
@given(records(), avro_types(depth=1))
def test_adding_a_nullable_field_with_default_is_full_compatible(
    schema: dict[str, Any], new_type: Any
) -> None:
    taken = {f["name"] for f in schema["fields"]}
    name = next(f"added_{n}" for n in range(10) if f"added_{n}" not in taken)
    branches = new_type if isinstance(new_type, list) else [new_type]
    nullable = ["null", *(b for b in branches if b != "null")]
    added = {"name": name, "type": nullable, "default": None}
    grown = renamed({**schema, "fields": [*schema["fields"], added]})
    original = {**grown, "fields": grown["fields"][:-1]}
    assert check(parse(grown), [(1, parse(original))], Compatibility.FULL) == []


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(names, st.sampled_from(["string", "integer", "number", "boolean"]), max_size=5),
    st.booleans(),
)
def test_json_schema_is_compatible_with_itself(props: dict[str, str], closed: bool) -> None:
    schema = {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": sorted(props)[:2],
        "additionalProperties": not closed,
    }
    parsed = parse(schema, "JSON")
    assert check(parsed, [(1, parse(schema, "JSON"))], Compatibility.FULL) == []


references = st.lists(
    st.builds(Reference, names, subjects, st.integers(1, 2**31 - 1)), max_size=3
).map(tuple)


@given(
    subjects,
    st.integers(1, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["AVRO", "JSON"]),
    st.text(),
    references,
    st.booleans(),
)
def test_schema_records_round_trip(
    subject: str,
    version: int,
    schema_id: int,
    schema_type: str,
    text: str,
    refs: tuple[Reference, ...],
    deleted: bool,
) -> None:
    value = SchemaValue(subject, version, schema_id, SchemaText(schema_type, text, refs), deleted)
    raw = encode_value(value)
    decoded = decode_value(raw)
    assert decoded is not None
    assert schema_value(decoded) == value
    assert decode_key(encode_key(SchemaKey(subject, version))) == SchemaKey(subject, version)


@given(st.none() | subjects)
def test_config_and_mode_keys_round_trip(subject: str | None) -> None:
    assert decode_key(encode_key(ConfigKey(subject))) == ConfigKey(subject)
    assert decode_key(encode_key(ModeKey(subject))) == ModeKey(subject)


def test_compatibility_module_examples() -> None:
    failures, _ = doctest.testmod(rivulet.registry.compatibility)
    assert failures == 0
