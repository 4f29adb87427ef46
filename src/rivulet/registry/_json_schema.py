"""JSON Schema: parsing, identity and our documented compatibility rules.

Validity is checked by the ``jsonschema`` library against the metaschema the document
names in ``$schema`` (draft 7 when it names none, as Confluent's registry assumes), and
every ``$ref`` must resolve: within the document (``#/$defs/X``), or to a reference
registered with the schema (``{"$ref": "address.json"}`` with a reference named
``address.json``, optionally with a ``#/pointer``).

Identity (``canonical``) is the document as JSON with keys sorted and no spaces.

Compatibility asks one question, conservatively: does the reader accept every document
the writer accepts? A rule reports a problem whenever it cannot show that it does. The
rules, by the id an :class:`Incompatibility` names:

``json.type-narrowed``
    Every type the writer allows must be allowed by the reader; ``integer`` is a subset
    of ``number`` (widening integer to number is compatible, narrowing is not). No
    ``type`` means any type (or, with ``enum``/``const``, the types of those values).
``json.enum-added`` / ``json.enum-narrowed``
    A reader ``enum``/``const`` must contain every value the writer's allows.
``json.minimum-tightened`` / ``json.maximum-tightened`` / ``json.multiple-of-changed``
    Reader bounds (inclusive or exclusive, draft-4 boolean form too) must be no
    stricter than the writer's; a reader ``multipleOf`` must divide the writer's.
``json.min-length-tightened`` / ``json.max-length-tightened`` / ``json.pattern-changed`` /
``json.format-changed``
    Likewise for strings; a reader ``pattern`` or ``format`` must equal the writer's
    (regular languages are not compared).
``json.items-changed`` / ``json.min-items-tightened`` / ``json.max-items-tightened`` /
``json.unique-items-added``
    Array items are compared recursively (tuple forms must be equal); counts as above.
``json.required-added``
    A property the reader requires must be required by the writer too.
``json.property-added-to-open-content-model``
    A property the reader declares but the writer does not: writer documents may carry
    it with any value its ``additionalProperties`` (absent: ``true``) or matching
    ``patternProperties`` allow, so the reader's schema for it must accept those.
    Compatible when the writer's content model is closed (``additionalProperties:
    false``): the writer never sends it.
``json.property-removed-from-closed-content-model`` / ``json.property-removed-not-covered``
    A property the writer declares but the reader does not: the reader's
    ``additionalProperties`` (or a matching pattern) must accept the writer's values.
    Compatible when the reader's content model is open.
``json.additional-properties-narrowed``
    For undeclared properties, the reader's ``additionalProperties`` must accept the
    writer's (closing an open content model is not compatible).
``json.min-properties-tightened`` / ``json.max-properties-tightened``
``json.combined-branch-not-covered``
    ``anyOf``/``oneOf``: every writer branch must be accepted by the reader; a reader
    ``anyOf``/``oneOf`` accepts a writer when one of its branches does (``oneOf``'s
    exclusivity is not proven). ``allOf``: the writer must satisfy each reader part.
``json.not-changed`` / ``json.keyword-changed``
    ``not``, ``if``/``then``/``else``, ``dependencies``, ``propertyNames``, ``contains``,
    ``unevaluated*``: compatible only when the reader's value equals the writer's.
``json.false-schema``
    A reader ``false`` schema accepts nothing.

Annotations (``title``, ``description``, ``default``, ``examples``, ...) never matter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from rivulet.registry._errors import InvalidSchemaError
from rivulet.registry._model import (
    JSON,
    Incompatibility,
    ParsedSchema,
    Reference,
    Resolver,
    SchemaText,
    load_json,
)

__all__ = ["JsonSchema", "parse_json_schema"]

_ALL_TYPES: Final = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})
_ANNOTATIONS: Final = frozenset(
    {
        "$schema", "$id", "id", "$anchor", "$dynamicAnchor", "$vocabulary", "$comment",
        "definitions", "$defs", "title", "description", "default", "examples", "readOnly",
        "writeOnly", "deprecated", "contentMediaType", "contentEncoding", "contentSchema",
    }
)  # fmt: skip
# Constraint keywords the rules below do not model: equal on both sides, or a problem.
_COMPARED_AS_WHOLE: Final = (
    "if", "then", "else", "dependencies", "dependentRequired", "dependentSchemas",
    "propertyNames", "contains", "minContains", "maxContains", "unevaluatedProperties",
    "unevaluatedItems", "$dynamicRef", "$recursiveRef",
)  # fmt: skip
_MODELLED: Final = frozenset(
    {
        "$ref", "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "format",
        "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems",
        "properties", "required", "additionalProperties", "patternProperties",
        "minProperties", "maxProperties", "anyOf", "oneOf", "allOf", "not",
        *_COMPARED_AS_WHOLE,
    }
)  # fmt: skip


def _sorted_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class _Located:
    """A schema node and the document its local ``$ref``s resolve in."""

    node: Any
    document: Any


@dataclass(frozen=True, slots=True, eq=False)
class JsonSchema:
    """A parsed JSON Schema with the documents its references name."""

    document: Any
    #: Referenced documents by the name the schemas use in ``$ref``.
    referenced: Mapping[str, Any]
    canonical: str
    schema_type: str = JSON

    def read_problems(self, writer: ParsedSchema) -> list[Incompatibility]:
        """Why this schema, validating, may reject documents valid under ``writer``."""
        if not isinstance(writer, JsonSchema):
            return [
                Incompatibility(
                    "schema-type-changed", "/", f"writer schema is {writer.schema_type}, not JSON"
                )
            ]
        check = _Check(writer.referenced, self.referenced)
        check.check(
            _Located(writer.document, writer.document), _Located(self.document, self.document), ""
        )
        return check.problems


def parse_json_schema(text: SchemaText, resolve: Resolver) -> JsonSchema:
    """Parse and validate a JSON Schema and its references; raise InvalidSchemaError."""
    referenced: dict[str, Any] = {}
    for ref, ref_text in _referenced_texts(text.references, resolve, set()):
        ref_document = load_json(ref_text.schema, f"referenced ({ref.name})")
        _check_valid(ref_document, f"referenced schema {ref.name!r}")
        referenced.setdefault(ref.name, ref_document)
    document = load_json(text.schema, "JSON")
    _check_valid(document, "schema")
    for located in (document, *referenced.values()):
        for ref_value in _refs_in(located):
            _resolve(ref_value, located, referenced)
    return JsonSchema(document, referenced, _sorted_json(document))


def _referenced_texts(
    references: tuple[Reference, ...], resolve: Resolver, seen: set[tuple[str, int]]
) -> Iterator[tuple[Reference, SchemaText]]:
    for ref in references:
        if (ref.subject, ref.version) in seen:
            continue
        seen.add((ref.subject, ref.version))
        referenced = resolve(ref)
        if referenced.schema_type != JSON:
            raise InvalidSchemaError(
                f"Invalid schema: reference {ref.name!r} ({ref.subject} version {ref.version}) "
                f"is a {referenced.schema_type} schema; a JSON schema can only reference JSON"
            )
        yield ref, referenced
        yield from _referenced_texts(referenced.references, resolve, seen)


def _check_valid(document: Any, what: str) -> None:
    if not isinstance(document, dict | bool):
        raise InvalidSchemaError(f"Invalid schema: a JSON {what} is an object or a boolean")
    try:
        validator = jsonschema.validators.validator_for(
            document, default=jsonschema.Draft7Validator
        )
        validator.check_schema(cast(Any, document))
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidSchemaError(
            f"Invalid schema: the {what} breaks its metaschema at /{where}: {exc.message}"
        ) from None


def _refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key not in {"enum", "const", "default", "examples"}:
                yield from _refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs_in(item)


def _resolve(ref: str, document: Any, referenced: Mapping[str, Any]) -> _Located:
    base, _, fragment = ref.partition("#")
    if base:
        target = referenced.get(base)
        if target is None:
            target = next(
                (
                    doc
                    for doc in referenced.values()
                    if isinstance(doc, dict) and doc.get("$id") == base
                ),
                None,
            )
        if target is None:
            raise InvalidSchemaError(
                f"Invalid schema: $ref {ref!r} names no reference; register the schema with "
                f"a reference whose name is {base!r}"
            )
        document = target
    node = document
    if fragment:
        if not fragment.startswith("/"):
            raise InvalidSchemaError(
                f"Invalid schema: $ref {ref!r}: only JSON pointers (#/...) are supported"
            )
        for raw in fragment[1:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InvalidSchemaError(f"Invalid schema: $ref {ref!r} points at nothing")
    return _Located(node, document)


# ---------------------------------------------------------------------------- rules


def _constraints(node: Any) -> dict[str, Any]:
    """The keywords of a schema node that constrain documents (``True`` has none)."""
    if node is True:
        return {}
    if node is False:
        return {"not": {}}
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k not in _ANNOTATIONS}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _values(node: Mapping[str, Any]) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    enum = node.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _types(node: Mapping[str, Any]) -> frozenset[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(declared)
    values = _values(node)
    if values is not None:
        return frozenset(_json_type(v) for v in values)
    return _ALL_TYPES


def _accepts_type(reader: frozenset[str], writer_type: str) -> bool:
    return writer_type in reader or (writer_type == "integer" and "number" in reader)


Bound = tuple[float, bool]  # (value, exclusive)


def _bound(node: Mapping[str, Any], inclusive: str, exclusive: str, *, lower: bool) -> Bound | None:
    found: list[Bound] = []
    plain = node.get(inclusive)
    flag = node.get(exclusive)
    if isinstance(plain, int | float) and not isinstance(plain, bool):
        found.append((plain, flag is True))  # draft 4: a boolean exclusive flag
    if isinstance(flag, int | float) and not isinstance(flag, bool):
        found.append((flag, True))
    if not found:
        return None
    # The tightest bound: highest lower bound (or lowest upper), exclusive winning a tie.
    if lower:
        return max(found, key=lambda b: (b[0], b[1]))
    return min(found, key=lambda b: (b[0], not b[1]))


def _within(writer: Bound | None, reader: Bound | None, *, lower: bool) -> bool:
    """Whether the writer's bound is at least as tight as the reader's."""
    if reader is None:
        return True
    if writer is None:
        return False
    if writer[0] != reader[0]:
        return writer[0] > reader[0] if lower else writer[0] < reader[0]
    return writer[1] or not reader[1]


class _Check:
    def __init__(self, writer_refs: Mapping[str, Any], reader_refs: Mapping[str, Any]) -> None:
        self.writer_refs = writer_refs
        self.reader_refs = reader_refs
        self.problems: list[Incompatibility] = []
        self._active: set[tuple[int, int]] = set()

    def add(self, rule: str, path: str, message: str) -> None:
        self.problems.append(Incompatibility(rule, path or "/", message))

    def sub(self, writer: _Located, reader: _Located, path: str) -> list[Incompatibility]:
        """Problems of a nested comparison, without recording them."""
        nested = _Check(self.writer_refs, self.reader_refs)
        nested._active = self._active
        nested.check(writer, reader, path)
        return nested.problems

    def check(self, writer: _Located, reader: _Located, path: str) -> None:
        w, r = writer.node, reader.node
        if isinstance(w, dict) and isinstance(w.get("$ref"), str):
            # A writer's other keywords only narrow it further: the target alone is safe.
            self.check(_resolve(w["$ref"], writer.document, self.writer_refs), reader, path)
            return
        key = (id(w), id(r))
        if key in self._active:
            return  # a recursive schema met itself again
        self._active.add(key)
        try:
            self.check_nodes(writer, reader, path)
        finally:
            self._active.discard(key)

    def check_nodes(self, writer: _Located, reader: _Located, path: str) -> None:
        w, r = _constraints(writer.node), _constraints(reader.node)
        if isinstance(r.get("$ref"), str):
            target = _resolve(r["$ref"], reader.document, self.reader_refs)
            self.check(writer, target, path)
            rest = {k: v for k, v in r.items() if k != "$ref"}
            if rest:
                self.check(writer, _Located(rest, reader.document), path)
            return
        if not r or writer.node is False:
            return
        if reader.node is False:
            self.add("json.false-schema", path, "the reader's schema is false: it accepts nothing")
            return
        for combinator in ("anyOf", "oneOf"):
            if isinstance(w.get(combinator), list):
                for index, branch in enumerate(w[combinator]):
                    self.check(
                        _Located(branch, writer.document), reader, f"{path}/{combinator}/{index}"
                    )
                return
        if isinstance(w.get("allOf"), list):
            parts = [*w["allOf"], {k: v for k, v in w.items() if k != "allOf"}]
            attempts = [self.sub(_Located(p, writer.document), reader, path) for p in parts]
            if not all(attempts):
                return
            self.problems.extend(attempts[0])
            return
        if self.check_reader_combinators(writer, w, reader, r, path):
            return
        self.check_keywords(writer, w, reader, r, path)

    def check_reader_combinators(
        self,
        writer: _Located,
        w: dict[str, Any],
        reader: _Located,
        r: dict[str, Any],
        path: str,
    ) -> bool:
        for combinator in ("allOf", "anyOf", "oneOf"):
            branches = r.get(combinator)
            if not isinstance(branches, list):
                continue
            rest = _Located({k: v for k, v in r.items() if k != combinator}, reader.document)
            if combinator == "allOf":
                for index, branch in enumerate(branches):
                    self.check(writer, _Located(branch, reader.document), f"{path}/allOf/{index}")
            elif not any(
                not self.sub(writer, _Located(branch, reader.document), path) for branch in branches
            ):
                self.add(
                    "json.combined-branch-not-covered",
                    path,
                    f"no branch of the reader's {combinator} accepts everything the writer allows",
                )
            self.check(writer, rest, path)
            return True
        return False

    def check_keywords(
        self,
        writer: _Located,
        w: dict[str, Any],
        reader: _Located,
        r: dict[str, Any],
        path: str,
    ) -> None:
        if "not" in r and w.get("not") != r["not"]:
            self.add("json.not-changed", path, "the reader's 'not' differs from the writer's")
        for keyword in _COMPARED_AS_WHOLE:
            if keyword in r and w.get(keyword) != r[keyword]:
                self.add(
                    "json.keyword-changed",
                    path,
                    f"the reader's {keyword!r} differs from the writer's; compatibility cannot "
                    "be shown",
                )
        writer_types, reader_types = _types(w), _types(r)
        narrowed = sorted(t for t in writer_types if not _accepts_type(reader_types, t))
        if narrowed:
            self.add(
                "json.type-narrowed",
                path,
                f"the writer allows {narrowed} but the reader only {sorted(reader_types)}",
            )
        shared = {t for t in writer_types if _accepts_type(reader_types, t)}
        self.check_values(w, r, path)
        if shared & {"integer", "number"}:
            self.check_numbers(w, r, path)
        if "string" in shared:
            self.check_strings(w, r, path)
        if "array" in shared:
            self.check_arrays(writer, w, reader, r, path)
        if "object" in shared:
            self.check_objects(writer, w, reader, r, path)

    def check_values(self, w: Mapping[str, Any], r: Mapping[str, Any], path: str) -> None:
        reader_values = _values(r)
        if reader_values is None:
            return
        writer_values = _values(w)
        if writer_values is None:
            self.add(
                "json.enum-added", path, f"the reader allows only {reader_values}; the writer any"
            )
            return
        allowed = {_sorted_json(v) for v in reader_values}
        missing = [v for v in writer_values if _sorted_json(v) not in allowed]
        if missing:
            self.add(
                "json.enum-narrowed",
                path,
                f"the reader does not allow the writer's values {missing}",
            )

    def check_numbers(self, w: Mapping[str, Any], r: Mapping[str, Any], path: str) -> None:
        for lower, inclusive, exclusive, rule in (
            (True, "minimum", "exclusiveMinimum", "json.minimum-tightened"),
            (False, "maximum", "exclusiveMaximum", "json.maximum-tightened"),
        ):
            reader_bound = _bound(r, inclusive, exclusive, lower=lower)
            writer_bound = _bound(w, inclusive, exclusive, lower=lower)
            if not _within(writer_bound, reader_bound, lower=lower):
                self.add(
                    rule,
                    path,
                    f"the reader's {inclusive} {_show(reader_bound)} is stricter than the "
                    f"writer's {_show(writer_bound)}",
                )
        reader_step = r.get("multipleOf")
        if isinstance(reader_step, int | float):
            writer_step = w.get("multipleOf")
            ratio = writer_step / reader_step if isinstance(writer_step, int | float) else None
            if ratio is None or not float(ratio).is_integer():
                self.add(
                    "json.multiple-of-changed",
                    path,
                    f"the reader's multipleOf {reader_step} does not divide the writer's "
                    f"{writer_step}",
                )

    def check_counts(
        self, w: Mapping[str, Any], r: Mapping[str, Any], path: str, noun: str
    ) -> None:
        low, high = f"min{noun.title()}", f"max{noun.title()}"
        reader_high, writer_high = r.get(high), w.get(high)
        if reader_high is not None and (writer_high is None or writer_high > reader_high):
            self.add(
                f"json.max-{noun}-tightened",
                path,
                f"the reader's {high} {reader_high} is below the writer's {writer_high}",
            )
        reader_low, writer_low = r.get(low) or 0, w.get(low) or 0
        if reader_low > writer_low:
            self.add(
                f"json.min-{noun}-tightened",
                path,
                f"the reader's {low} {reader_low} is above the writer's {writer_low}",
            )

    def check_strings(self, w: Mapping[str, Any], r: Mapping[str, Any], path: str) -> None:
        self.check_counts(w, r, path, "length")
        for keyword in ("pattern", "format"):
            if keyword in r and w.get(keyword) != r[keyword]:
                self.add(
                    f"json.{keyword}-changed",
                    path,
                    f"the reader's {keyword} {r[keyword]!r} differs from the writer's "
                    f"{w.get(keyword)!r}",
                )

    def check_arrays(
        self,
        writer: _Located,
        w: Mapping[str, Any],
        reader: _Located,
        r: Mapping[str, Any],
        path: str,
    ) -> None:
        self.check_counts(w, r, path, "items")
        if r.get("uniqueItems") is True and w.get("uniqueItems") is not True:
            self.add("json.unique-items-added", path, "the reader requires unique items")
        tuple_form = any(
            "prefixItems" in s or isinstance(s.get("items"), list) or "additionalItems" in s
            for s in (w, r)
        )
        if tuple_form:
            keys = ("prefixItems", "items", "additionalItems")
            if any(w.get(k) != r.get(k) for k in keys):
                self.add("json.items-changed", path, "tuple item schemas differ")
            return
        self.check(
            _Located(w.get("items", True), writer.document),
            _Located(r.get("items", True), reader.document),
            f"{path}/items",
        )

    def check_objects(
        self,
        writer: _Located,
        w: Mapping[str, Any],
        reader: _Located,
        r: Mapping[str, Any],
        path: str,
    ) -> None:
        self.check_counts(w, r, path, "properties")
        writer_required = set(w.get("required", []))
        for name in r.get("required", []):
            if name not in writer_required:
                self.add(
                    "json.required-added",
                    f"{path}/properties/{name}",
                    f"the reader requires {name!r}, which the writer may leave out",
                )
        writer_props: Mapping[str, Any] = w.get("properties", {})
        reader_props: Mapping[str, Any] = r.get("properties", {})
        for name in dict.fromkeys([*writer_props, *reader_props]):
            where = f"{path}/properties/{name}"
            if name in writer_props and name in reader_props:
                self.check(
                    _Located(writer_props[name], writer.document),
                    _Located(reader_props[name], reader.document),
                    where,
                )
            elif name in reader_props:
                sent = _undeclared(w, name)
                if sent is False:
                    continue  # a closed writer never sends it
                if self.sub(
                    _Located(sent, writer.document),
                    _Located(reader_props[name], reader.document),
                    where,
                ):
                    self.add(
                        "json.property-added-to-open-content-model",
                        where,
                        f"the reader declares {name!r}, which the writer's open content model "
                        "may already carry with other values; close the writer's model "
                        "(additionalProperties: false) or accept any value",
                    )
            else:
                accepted = _undeclared(r, name)
                if self.sub(
                    _Located(writer_props[name], writer.document),
                    _Located(accepted, reader.document),
                    where,
                ):
                    closed = accepted is False
                    self.add(
                        "json.property-removed-from-closed-content-model"
                        if closed
                        else "json.property-removed-not-covered",
                        where,
                        f"the writer sends {name!r}, which the reader no longer declares and its "
                        + (
                            "closed content model rejects"
                            if closed
                            else "additionalProperties reject"
                        ),
                    )
        writer_extra = w.get("additionalProperties", True)
        reader_extra = r.get("additionalProperties", True)
        if self.sub(
            _Located(writer_extra, writer.document),
            _Located(reader_extra, reader.document),
            f"{path}/additionalProperties",
        ):
            self.add(
                "json.additional-properties-narrowed",
                f"{path}/additionalProperties",
                "the reader's additionalProperties reject undeclared properties the writer allows",
            )
        writer_patterns = w.get("patternProperties", {})
        for pattern, schema in r.get("patternProperties", {}).items():
            sent = writer_patterns.get(pattern, writer_extra)
            self.check(
                _Located(sent, writer.document),
                _Located(schema, reader.document),
                f"{path}/patternProperties/{pattern}",
            )


def _undeclared(node: Mapping[str, Any], name: str) -> Any:
    """The schema a node applies to property ``name`` when ``properties`` lacks it."""
    for pattern, schema in node.get("patternProperties", {}).items():
        try:
            if re.search(pattern, name):
                return schema
        except re.error:
            continue
    return node.get("additionalProperties", True)


def _show(bound: Bound | None) -> str:
    if bound is None:
        return "(none)"
    return f"{bound[0]}{' (exclusive)' if bound[1] else ''}"
