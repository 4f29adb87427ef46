"""Schemas of event models: Avro and JSON Schema derived from the pydantic model.

Both start from pydantic's JSON Schema in *serialization* mode, the shape of what the
serializers write (``model_dump(mode="json")``), so the schema and the payload agree:
datetimes and UUIDs are strings, bytes are strings, enums are their values.

Avro mapping: ``str`` -> string, ``int`` -> long (Python ints are 64-bit at least),
``float`` -> double, ``bool`` -> boolean, ``list[X]`` -> array, ``dict[str, X]`` -> map,
``X | None`` -> ``["null", X]``, nested models -> records, string enums whose values are
Avro names -> enums. A field with a default gets it as its Avro default (the union
branch of the default comes first, as Avro requires). Values with no Avro equivalent
(``Any``, ``dict[str, Any]``) are refused with a message; a model can declare its own
schema instead with a ``__avro_schema__`` (or ``__json_schema__``) class attribute.

JSON Schema: pydantic's, with ``$schema`` (2020-12) and every object closed
(``additionalProperties: false``, true of what the serializer writes), so adding an
optional field is a BACKWARD-compatible change (see the JSON Schema rules).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Final

from pydantic import BaseModel

from rivulet.framework import ConfigurationError

__all__ = ["avro_schema_for", "json_schema_for", "record_name"]

_JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_AVRO_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRIMITIVE: Final = {
    "string": "string",
    "integer": "long",
    "number": "double",
    "boolean": "boolean",
    "null": "null",
}


def _declared(model: type[BaseModel], attribute: str) -> dict[str, Any] | None:
    declared = getattr(model, attribute, None)
    if declared is None:
        return None
    schema = json.loads(declared) if isinstance(declared, str) else copy.deepcopy(declared)
    if not isinstance(schema, dict):
        raise ConfigurationError(f"{model.__qualname__}.{attribute} must be a JSON object")
    return schema


def record_name(model: type[BaseModel]) -> str:
    """The Avro record name of a model: its event type when that is a legal Avro full
    name (so renaming the class keeps the schema's name), else its class name."""
    event_type = getattr(model, "__event_type__", "")
    if event_type and all(_AVRO_NAME.match(part) for part in event_type.split(".")):
        return str(event_type)
    return _avro_name(model.__name__)


def _avro_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if _AVRO_NAME.match(name) else f"_{name}"


def json_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema a model's events are registered with."""
    declared = _declared(model, "__json_schema__")
    if declared is not None:
        return declared
    schema = model.model_json_schema(mode="serialization")
    _close_objects(schema)
    return {"$schema": _JSON_SCHEMA_DIALECT, **schema}


def _close_objects(node: Any) -> None:
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


def avro_schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The Avro schema a model's events are registered with."""
    declared = _declared(model, "__avro_schema__")
    if declared is not None:
        return declared
    schema = model.model_json_schema(mode="serialization")
    converter = _ToAvro(schema.get("$defs", {}), model.__qualname__)
    result = converter.convert(schema, record_name(model), "")
    assert isinstance(result, dict)
    return result


class _ToAvro:
    def __init__(self, defs: dict[str, Any], model: str) -> None:
        self.defs = defs
        self.model = model
        self.defined: set[str] = set()

    def fail(self, path: str, why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{self.model}{path}: {why} has no Avro equivalent; use a concrete type or "
            "declare the schema with __avro_schema__"
        )

    def convert(self, node: Any, name: str, path: str) -> Any:
        if not isinstance(node, dict) or not node:
            raise self.fail(path, "a value of any type")
        if "$ref" in node:
            ref_name = str(node["$ref"]).rsplit("/", 1)[-1]
            avro_name = _avro_name(ref_name)
            if avro_name in self.defined:
                return avro_name
            return self.convert(self.defs[ref_name], avro_name, path)
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                return self.union(node[combinator], name, path)
        if "allOf" in node and len(node["allOf"]) == 1:
            return self.convert(node["allOf"][0], name, path)
        if "enum" in node:
            return self.enum(node, name, path)
        if "const" in node:
            return self.value_type(node["const"], path)
        kind = node.get("type")
        if isinstance(kind, list):
            return self.union([{"type": k} for k in kind], name, path)
        if kind in _PRIMITIVE:
            return _PRIMITIVE[kind]
        if kind == "array":
            return {
                "type": "array",
                "items": self.convert(node.get("items", {}), f"{name}Item", f"{path}[]"),
            }
        if kind == "object" and "properties" in node:
            return self.record(node, name, path)
        if kind == "object" and isinstance(node.get("additionalProperties"), dict):
            values = self.convert(node["additionalProperties"], f"{name}Value", f"{path}{{}}")
            return {"type": "map", "values": values}
        raise self.fail(path, f"schema {json.dumps(node)}")

    def value_type(self, value: Any, path: str) -> str:
        for kind, avro in (
            (bool, "boolean"),
            (int, "long"),
            (float, "double"),
            (str, "string"),
            (type(None), "null"),
        ):
            if isinstance(value, kind):
                return avro
        raise self.fail(path, f"the constant {value!r}")

    def enum(self, node: dict[str, Any], name: str, path: str) -> Any:
        symbols = node["enum"]
        if all(isinstance(s, str) and _AVRO_NAME.match(s) for s in symbols) and len(
            set(symbols)
        ) == len(symbols):
            avro_name = _avro_name(str(node.get("title", name)))
            if avro_name in self.defined:
                return avro_name
            self.defined.add(avro_name)
            return {"type": "enum", "name": avro_name, "symbols": list(symbols)}
        types = list(dict.fromkeys(self.value_type(s, path) for s in symbols))
        return types[0] if len(types) == 1 else types

    def union(self, branches: list[Any], name: str, path: str) -> Any:
        converted: list[Any] = []
        for index, branch in enumerate(branches):
            avro = self.convert(branch, f"{name}{index}", path)
            for item in avro if isinstance(avro, list) else [avro]:
                if item not in converted:
                    converted.append(item)
        return converted[0] if len(converted) == 1 else converted

    def record(self, node: dict[str, Any], name: str, path: str) -> Any:
        if name in self.defined:
            return name
        self.defined.add(name)
        required = set(node.get("required", []))
        fields = []
        for field_name, field_schema in node["properties"].items():
            if not _AVRO_NAME.match(field_name):
                raise self.fail(f"{path}.{field_name}", "a field name that is not an Avro name")
            hint = _avro_name(f"{name}_{field_name}")
            avro_type = self.convert(field_schema, hint, f"{path}.{field_name}")
            field: dict[str, Any] = {"name": field_name, "type": avro_type}
            if field_name not in required and "default" in field_schema:
                default = field_schema["default"]
                field["type"] = _default_first(avro_type, default)
                field["default"] = default
            fields.append(field)
        return {"type": "record", "name": name, "fields": fields}


def _default_first(avro_type: Any, default: Any) -> Any:
    """Avro takes a union field's default from its first branch: put that branch first."""
    if not isinstance(avro_type, list):
        return avro_type
    wanted = {
        type(None): ("null",),
        bool: ("boolean",),
        int: ("long", "double"),
        float: ("double",),
        str: ("string", "enum"),
        list: ("array",),
        dict: ("map", "record"),
    }.get(type(default), ())
    for branch in avro_type:
        kind = branch if isinstance(branch, str) else branch.get("type")
        if kind in wanted:
            return [branch, *(b for b in avro_type if b is not branch)]
    return avro_type
