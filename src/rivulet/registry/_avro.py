"""Avro schemas: parsing, identity and the specification's schema-resolution rules.

Parsing validates twice: fastavro's ``parse_schema`` (types, defaults against their
field types, enum symbols and defaults, unknown named types) and our own walk, which
adds what fastavro leaves out but Avro's specification requires (legal names, unique
field names, union branches, fixed sizes). The walk builds the typed model that the
compatibility rules run on, with every named type resolved to one object, so recursive
and referenced types need no lookups later.

Identity (``canonical``) is the schema as JSON with names fully qualified, ``namespace``
folded into them, ``{"type": "int"}`` written as ``"int"``, keys sorted and no spaces.
It is deliberately *not* Avro's Parsing Canonical Form: that form drops defaults,
aliases and docs, and defaults and aliases change what a reader can resolve, so two
schemas differing only in a default must be two schemas.

Resolution (reader ``R`` reading what writer ``W`` wrote), from the specification's
"Schema Resolution" section; each rule's id is what an :class:`Incompatibility` names:

* same primitive type; or a promotion: int to long, float or double; long to float or
  double; float to double; string to bytes; bytes to string (``avro.type-mismatch``).
* decimals (bytes or fixed) match only with equal precision and scale
  (``avro.decimal-mismatch``).
* records, enums and fixed match by unqualified name, or when one of the reader's
  aliases is the writer's full name (``avro.name-mismatch``).
* record fields match by name or by one of the reader field's aliases; a reader field the
  writer lacks needs a default (``avro.reader-field-missing-default``); writer fields
  the reader lacks are skipped.
* a writer enum symbol the reader lacks is an error unless the reader enum has a
  ``default`` (``avro.missing-enum-symbols``).
* fixed sizes are equal (``avro.fixed-size-mismatch``).
* arrays resolve their items, maps their values.
* a writer union: every branch must resolve against the reader (a reader union: against
  the first branch that matches it); a reader union with a writer non-union: the first
  matching branch must resolve (``avro.missing-union-branch``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from rivulet.registry._errors import InvalidSchemaError
from rivulet.registry._model import (
    AVRO,
    Incompatibility,
    ParsedSchema,
    Reference,
    Resolver,
    SchemaText,
    load_json,
)

__all__ = [
    "AvroArray",
    "AvroEnum",
    "AvroField",
    "AvroFixed",
    "AvroMap",
    "AvroPrimitive",
    "AvroRecord",
    "AvroSchema",
    "AvroType",
    "AvroUnion",
    "parse_avro",
]

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Writer type -> reader types it may be promoted to (specification, "Schema Resolution").
_PROMOTIONS: Final[Mapping[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NO_DEFAULT: Final = object()


@dataclass(eq=False, slots=True)
class AvroPrimitive:
    type: str
    logical: str | None = None
    precision: int | None = None
    scale: int | None = None


@dataclass(eq=False, slots=True)
class AvroField:
    name: str
    type: AvroType
    aliases: tuple[str, ...] = ()
    default: object = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(eq=False, slots=True)
class AvroRecord:
    fullname: str
    aliases: tuple[str, ...] = ()
    fields: list[AvroField] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class AvroEnum:
    fullname: str
    symbols: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    default: str | None = None


@dataclass(eq=False, slots=True)
class AvroFixed:
    fullname: str
    size: int
    aliases: tuple[str, ...] = ()
    logical: str | None = None
    precision: int | None = None
    scale: int | None = None


@dataclass(eq=False, slots=True)
class AvroArray:
    items: AvroType


@dataclass(eq=False, slots=True)
class AvroMap:
    values: AvroType


@dataclass(eq=False, slots=True)
class AvroUnion:
    branches: tuple[AvroType, ...]


AvroType = AvroPrimitive | AvroRecord | AvroEnum | AvroFixed | AvroArray | AvroMap | AvroUnion
AvroNamed = AvroRecord | AvroEnum | AvroFixed


def _short(fullname: str) -> str:
    return fullname.rpartition(".")[2]


def _kind(node: AvroType) -> str:
    if isinstance(node, AvroPrimitive):
        return node.type
    return {
        AvroRecord: "record",
        AvroEnum: "enum",
        AvroFixed: "fixed",
        AvroArray: "array",
        AvroMap: "map",
        AvroUnion: "union",
    }[type(node)]


def _describe(node: AvroType) -> str:
    if isinstance(node, AvroRecord | AvroEnum | AvroFixed):
        return f"{_kind(node)} {node.fullname}"
    return _kind(node)


# ---------------------------------------------------------------------------- parsing


class _Parser:
    """Builds the model and the identity JSON in one walk over the schema."""

    def __init__(self, named: dict[str, AvroNamed]) -> None:
        self.named = named
        # Named types defined by this schema (not by its references) appear in full the
        # first time in the identity JSON and by name afterwards.
        self.defined: set[str] = set()

    def fail(self, message: str) -> InvalidSchemaError:
        return InvalidSchemaError(f"Invalid schema: {message}")

    def fullname(self, name: object, namespace: str | None, what: str) -> str:
        if not isinstance(name, str) or not name:
            raise self.fail(f"a {what} needs a non-empty string name")
        if "." in name:
            full = name
        elif namespace:
            full = f"{namespace}.{name}"
        else:
            full = name
        for part in full.split("."):
            if not _NAME.match(part):
                raise self.fail(
                    f"{what} name {full!r} is not a legal Avro name "
                    "(letters, digits and _, not starting with a digit)"
                )
        if _short(full) in PRIMITIVES:
            raise self.fail(f"{what} name {full!r} redefines the primitive type {_short(full)}")
        return full

    def aliases(self, node: Mapping[str, Any], namespace: str | None, what: str) -> list[str]:
        raw = node.get("aliases", [])
        if not isinstance(raw, list):
            raise self.fail(f"aliases of {what} must be a list of names")
        return [self.fullname(alias, namespace, f"alias of {what}") for alias in raw]

    def lookup(self, name: str, namespace: str | None) -> AvroNamed:
        candidates = (
            [name] if "." in name else [f"{namespace}.{name}", name] if namespace else [name]
        )
        for candidate in candidates:
            found = self.named.get(candidate)
            if found is not None:
                return found
        raise self.fail(f"unknown type {name!r} (not a primitive, defined earlier, or referenced)")

    def parse(self, node: Any, namespace: str | None) -> tuple[AvroType, Any]:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return AvroPrimitive(node), node
            named = self.lookup(node, namespace)
            return named, named.fullname
        if isinstance(node, list):
            return self.parse_union(node, namespace)
        if not isinstance(node, dict):
            raise self.fail(f"{json.dumps(node)} is not a schema (a name, a list or an object)")
        kind = node.get("type")
        if isinstance(kind, dict | list):
            # {"type": {...}} wraps another schema; other attributes are properties.
            inner, inner_json = self.parse(kind, namespace)
            extra = {k: v for k, v in node.items() if k != "type"}
            return inner, {**extra, "type": inner_json} if extra else inner_json
        if kind in PRIMITIVES:
            return self.parse_primitive(node)
        if kind in {"record", "error"}:
            return self.parse_record(node, namespace)
        if kind == "enum":
            return self.parse_enum(node, namespace)
        if kind == "fixed":
            return self.parse_fixed(node, namespace)
        if kind == "array":
            if "items" not in node:
                raise self.fail("an array needs 'items'")
            items, items_json = self.parse(node["items"], namespace)
            return AvroArray(items), {**node, "items": items_json}
        if kind == "map":
            if "values" not in node:
                raise self.fail("a map needs 'values'")
            values, values_json = self.parse(node["values"], namespace)
            return AvroMap(values), {**node, "values": values_json}
        if isinstance(kind, str):
            named = self.lookup(kind, namespace)
            return named, named.fullname
        raise self.fail(f"{json.dumps(node)} has no valid 'type'")

    def parse_primitive(self, node: dict[str, Any]) -> tuple[AvroType, Any]:
        logical = node.get("logicalType")
        precision, scale = node.get("precision"), node.get("scale", 0)
        primitive = AvroPrimitive(node["type"])
        if logical == "decimal" and node["type"] == "bytes":
            if _valid_decimal(precision, scale, None):
                primitive = AvroPrimitive("bytes", "decimal", precision, scale)
        elif isinstance(logical, str):
            # Other logical types annotate their underlying type; resolution ignores them.
            primitive = AvroPrimitive(node["type"], logical)
        return primitive, (node["type"] if len(node) == 1 else node)

    def define(self, named: AvroNamed) -> None:
        if named.fullname in self.named:
            raise self.fail(f"type {named.fullname!r} is defined twice")
        self.named[named.fullname] = named
        self.defined.add(named.fullname)

    def parse_record(self, node: dict[str, Any], namespace: str | None) -> tuple[AvroType, Any]:
        full = self.fullname(node.get("name"), node.get("namespace", namespace), "record")
        inner_namespace = full.rpartition(".")[0] or None
        record = AvroRecord(full, tuple(self.aliases(node, inner_namespace, f"record {full}")))
        self.define(record)
        raw_fields = node.get("fields")
        if not isinstance(raw_fields, list):
            raise self.fail(f"record {full} needs a list of 'fields'")
        fields_json = []
        seen: set[str] = set()
        for raw in raw_fields:
            if not isinstance(raw, dict) or "type" not in raw:
                raise self.fail(f"record {full}: every field is an object with a name and a type")
            name = raw.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise self.fail(f"record {full}: field name {name!r} is not a legal Avro name")
            if name in seen:
                raise self.fail(f"record {full}: field {name!r} is defined twice")
            seen.add(name)
            field_type, type_json = self.parse(raw["type"], inner_namespace)
            aliases = raw.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                raise self.fail(f"record {full}: aliases of field {name!r} must be names")
            record.fields.append(
                AvroField(name, field_type, tuple(aliases), raw.get("default", _NO_DEFAULT))
            )
            fields_json.append({**raw, "type": type_json})
        return record, self.named_json(node, full, record.aliases, fields=fields_json)

    def parse_enum(self, node: dict[str, Any], namespace: str | None) -> tuple[AvroType, Any]:
        full = self.fullname(node.get("name"), node.get("namespace", namespace), "enum")
        symbols = node.get("symbols")
        if not isinstance(symbols, list) or not all(
            isinstance(s, str) and _NAME.match(s) for s in symbols
        ):
            raise self.fail(f"enum {full}: symbols must be a list of legal Avro names")
        default = node.get("default")
        aliases = self.aliases(node, full.rpartition(".")[0] or None, f"enum {full}")
        enum = AvroEnum(full, tuple(symbols), tuple(aliases), default)
        self.define(enum)
        return enum, self.named_json(node, full, enum.aliases)

    def parse_fixed(self, node: dict[str, Any], namespace: str | None) -> tuple[AvroType, Any]:
        full = self.fullname(node.get("name"), node.get("namespace", namespace), "fixed")
        size = node.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise self.fail(f"fixed {full}: size must be a non-negative integer")
        aliases = tuple(self.aliases(node, full.rpartition(".")[0] or None, f"fixed {full}"))
        fixed = AvroFixed(full, size, aliases)
        precision, scale = node.get("precision"), node.get("scale", 0)
        if node.get("logicalType") == "decimal" and _valid_decimal(precision, scale, size):
            fixed = AvroFixed(full, size, aliases, "decimal", precision, scale)
        elif isinstance(node.get("logicalType"), str):
            fixed.logical = node["logicalType"]
        self.define(fixed)
        return fixed, self.named_json(node, full, aliases)

    def named_json(
        self, node: dict[str, Any], full: str, aliases: tuple[str, ...], **replace: Any
    ) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k != "namespace"}
        out["name"] = full
        if aliases:
            out["aliases"] = list(aliases)
        out.update(replace)
        return out

    def parse_union(self, node: list[Any], namespace: str | None) -> tuple[AvroType, Any]:
        branches: list[AvroType] = []
        branch_json = []
        seen: set[str] = set()
        for raw in node:
            branch, as_json = self.parse(raw, namespace)
            if isinstance(branch, AvroUnion):
                raise self.fail("a union may not directly contain another union")
            key = (
                branch.fullname
                if isinstance(branch, AvroRecord | AvroEnum | AvroFixed)
                else _kind(branch)
            )
            if key in seen:
                raise self.fail(f"a union may not contain {key!r} twice")
            seen.add(key)
            branches.append(branch)
            branch_json.append(as_json)
        return AvroUnion(tuple(branches)), branch_json


def _valid_decimal(precision: object, scale: object, size: int | None) -> bool:
    """Whether decimal attributes are usable; invalid ones make the logical type ignored."""
    if not isinstance(precision, int) or not isinstance(scale, int) or precision < 1:
        return False
    if not 0 <= scale <= precision:
        return False
    if size is None:
        return True
    # A fixed of n bytes holds at most floor(log10(2^(8n-1) - 1)) digits.
    return size > 0 and precision <= len(str(2 ** (8 * size - 1) - 1)) - 1


def _sorted_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True, eq=False)
class AvroSchema:
    """A parsed Avro schema: model, identity, and fastavro's parsed form for encoding."""

    root: AvroType
    canonical: str
    #: fastavro's parsed form (references' named types included), for encoding.
    parsed: Any
    schema_type: str = AVRO

    def read_problems(self, writer: ParsedSchema) -> list[Incompatibility]:
        """Why this schema, reading, cannot resolve data written with ``writer``."""
        if not isinstance(writer, AvroSchema):
            return [
                Incompatibility(
                    "schema-type-changed", "", f"writer schema is {writer.schema_type}, not AVRO"
                )
            ]
        checker = _Resolution()
        checker.check(writer.root, self.root, "")
        return checker.problems


def parse_avro(text: SchemaText, resolve: Resolver) -> AvroSchema:
    """Parse an Avro schema and its references; raise InvalidSchemaError when invalid."""
    named: dict[str, AvroNamed] = {}
    fastavro_named: dict[str, Any] = {}
    for ref_text in _referenced_texts(text.references, resolve, set()):
        ref_json = load_json(ref_text.schema, "referenced")
        _Parser(named).parse(ref_json, None)
        _fastavro_parse(ref_json, fastavro_named)
    document = load_json(text.schema, "Avro")
    # Ours first: its messages say more; fastavro's adds the checks of default values.
    root, identity = _Parser(named).parse(document, None)
    parsed = _fastavro_parse(document, fastavro_named)
    return AvroSchema(root, _sorted_json(identity), parsed)


def _referenced_texts(
    references: tuple[Reference, ...], resolve: Resolver, seen: set[tuple[str, int]]
) -> Iterator[SchemaText]:
    """Referenced schemas, depth first, each once: a reference's own references come first."""
    for ref in references:
        if (ref.subject, ref.version) in seen:
            continue
        seen.add((ref.subject, ref.version))
        referenced = resolve(ref)
        if referenced.schema_type != AVRO:
            raise InvalidSchemaError(
                f"Invalid schema: reference {ref.name!r} ({ref.subject} version {ref.version}) "
                f"is a {referenced.schema_type} schema; an Avro schema can only reference Avro"
            )
        yield from _referenced_texts(referenced.references, resolve, seen)
        yield referenced


def _fastavro_parse(document: Any, named: dict[str, Any]) -> Any:
    try:
        return fastavro.parse_schema(document, named_schemas=named)
    except (
        SchemaParseException,
        UnknownType,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
    ) as exc:
        raise InvalidSchemaError(f"Invalid schema: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------- resolution


class _Resolution:
    """The specification's resolution rules, collecting every problem with its path."""

    def __init__(self) -> None:
        self.problems: list[Incompatibility] = []
        # Pairs of named types being compared: a recursive type meets itself again.
        self._active: set[tuple[int, int]] = set()

    def add(self, rule: str, path: str, message: str) -> None:
        self.problems.append(Incompatibility(rule, path or "/", message))

    def check(self, writer: AvroType, reader: AvroType, path: str) -> None:
        if isinstance(writer, AvroUnion):
            for index, branch in enumerate(writer.branches):
                self.resolve_branch(branch, reader, f"{path}/{index}")
            return
        if isinstance(reader, AvroUnion):
            self.resolve_branch(writer, reader, path)
            return
        self.check_same_kind(writer, reader, path)

    def resolve_branch(self, writer: AvroType, reader: AvroType, path: str) -> None:
        if not isinstance(reader, AvroUnion):
            self.check_same_kind(writer, reader, path)
            return
        chosen = _first_match(writer, reader.branches)
        if chosen is None:
            self.add(
                "avro.missing-union-branch",
                path,
                f"the reader's union {[_describe(b) for b in reader.branches]} has no branch "
                f"for the writer's {_describe(writer)}",
            )
            return
        self.check_same_kind(writer, chosen, path)

    def check_same_kind(self, writer: AvroType, reader: AvroType, path: str) -> None:
        if isinstance(writer, AvroPrimitive) and isinstance(reader, AvroPrimitive):
            self.check_primitives(writer, reader, path)
        elif isinstance(writer, AvroRecord) and isinstance(reader, AvroRecord):
            if self.check_names(writer, reader, path):
                self.check_records(writer, reader, path)
        elif isinstance(writer, AvroEnum) and isinstance(reader, AvroEnum):
            if self.check_names(writer, reader, path):
                missing = [s for s in writer.symbols if s not in reader.symbols]
                if missing and reader.default is None:
                    self.add(
                        "avro.missing-enum-symbols",
                        path,
                        f"enum {reader.fullname} lacks the writer's symbols {missing} "
                        "and has no default symbol",
                    )
        elif isinstance(writer, AvroFixed) and isinstance(reader, AvroFixed):
            if self.check_names(writer, reader, path):
                if writer.size != reader.size:
                    self.add(
                        "avro.fixed-size-mismatch",
                        path,
                        f"fixed {reader.fullname} has size {reader.size}, "
                        f"the writer's has {writer.size}",
                    )
                else:
                    self.check_decimals(writer, reader, path)
        elif isinstance(writer, AvroArray) and isinstance(reader, AvroArray):
            self.check(writer.items, reader.items, f"{path}/items")
        elif isinstance(writer, AvroMap) and isinstance(reader, AvroMap):
            self.check(writer.values, reader.values, f"{path}/values")
        else:
            self.add(
                "avro.type-mismatch",
                path,
                f"the reader's {_describe(reader)} cannot read the writer's {_describe(writer)}",
            )

    def check_primitives(self, writer: AvroPrimitive, reader: AvroPrimitive, path: str) -> None:
        if writer.type != reader.type and reader.type not in _PROMOTIONS.get(
            writer.type, frozenset()
        ):
            self.add(
                "avro.type-mismatch",
                path,
                f"the reader's {reader.type} cannot read the writer's {writer.type} "
                "(not the same type nor a promotion)",
            )
            return
        self.check_decimals(writer, reader, path)

    def check_decimals(
        self,
        writer: AvroPrimitive | AvroFixed,
        reader: AvroPrimitive | AvroFixed,
        path: str,
    ) -> None:
        both = writer.logical == "decimal" and reader.logical == "decimal"
        if both and (writer.precision, writer.scale) != (reader.precision, reader.scale):
            self.add(
                "avro.decimal-mismatch",
                path,
                f"decimal({reader.precision},{reader.scale}) cannot read "
                f"decimal({writer.precision},{writer.scale}): precision and scale must match",
            )

    def check_names(self, writer: AvroNamed, reader: AvroNamed, path: str) -> bool:
        if _names_match(writer, reader):
            return True
        self.add(
            "avro.name-mismatch",
            path,
            f"the reader's {_kind(reader)} is named {reader.fullname}, the writer's "
            f"{writer.fullname}; rename back, or add the old name to the reader's aliases",
        )
        return False

    def check_records(self, writer: AvroRecord, reader: AvroRecord, path: str) -> None:
        key = (id(writer), id(reader))
        if key in self._active:
            return
        self._active.add(key)
        try:
            by_name = {f.name: f for f in writer.fields}
            for reader_field in reader.fields:
                where = f"{path}/{_short(reader.fullname)}.{reader_field.name}"
                writer_field = by_name.get(reader_field.name)
                if writer_field is None:
                    writer_field = next(
                        (by_name[a] for a in reader_field.aliases if a in by_name), None
                    )
                if writer_field is not None:
                    self.check(writer_field.type, reader_field.type, where)
                elif not reader_field.has_default:
                    self.add(
                        "avro.reader-field-missing-default",
                        where,
                        f"field {reader_field.name!r} is not in the writer's record "
                        f"{writer.fullname} and has no default",
                    )
        finally:
            self._active.discard(key)


def _names_match(writer: AvroNamed, reader: AvroNamed) -> bool:
    return _short(writer.fullname) == _short(reader.fullname) or writer.fullname in reader.aliases


def _matches(writer: AvroType, reader: AvroType, *, promote: bool) -> bool:
    """The specification's "match" of a writer schema and one reader union branch."""
    if isinstance(writer, AvroPrimitive) and isinstance(reader, AvroPrimitive):
        return writer.type == reader.type or (
            promote and reader.type in _PROMOTIONS.get(writer.type, frozenset())
        )
    if isinstance(writer, AvroArray) and isinstance(reader, AvroArray):
        return _matches(writer.items, reader.items, promote=True)
    if isinstance(writer, AvroMap) and isinstance(reader, AvroMap):
        return _matches(writer.values, reader.values, promote=True)
    if isinstance(writer, AvroUnion) or isinstance(reader, AvroUnion):
        return False
    if type(writer) is type(reader) and isinstance(writer, AvroRecord | AvroEnum | AvroFixed):
        assert isinstance(reader, AvroRecord | AvroEnum | AvroFixed)
        return _names_match(writer, reader)
    return False


def _first_match(writer: AvroType, branches: tuple[AvroType, ...]) -> AvroType | None:
    """The reader branch a writer value resolves to: an exact match first, then a promotion."""
    for promote in (False, True):
        for branch in branches:
            if _matches(writer, branch, promote=promote):
                return branch
    return None
