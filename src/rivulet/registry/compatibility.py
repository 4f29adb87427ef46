"""Compatibility levels, built on one question: can a reader schema read a writer's data?

==========================  ================================================
Level                       A new schema is accepted when
==========================  ================================================
``BACKWARD`` (default)      it can read data written with the latest version
``BACKWARD_TRANSITIVE``     it can read data written with every version
``FORWARD``                 the latest version can read data it writes
``FORWARD_TRANSITIVE``      every version can read data it writes
``FULL``                    both BACKWARD and FORWARD
``FULL_TRANSITIVE``         both, against every version
``NONE``                    always
==========================  ================================================

"Versions" are the subject's versions that are not (soft-)deleted. What "can read"
means is each format's: the Avro specification's resolution rules
(:mod:`rivulet.registry._avro`) and our JSON Schema rules
(:mod:`rivulet.registry._json_schema`).

>>> from rivulet.registry.compatibility import Compatibility, check, parse_schema
>>> from rivulet.registry._model import SchemaText
>>> def avro(fields: str):
...     text = '{"type":"record","name":"Order","fields":[' + fields + ']}'
...     return parse_schema(SchemaText("AVRO", text), resolve=None)
>>> v1 = avro('{"name":"id","type":"string"}')
>>> v2 = avro('{"name":"id","type":"string"},{"name":"qty","type":"int"}')
>>> [p.problem.rule for p in check(v2, [(1, v1)], Compatibility.BACKWARD)]
['avro.reader-field-missing-default']
>>> check(v2, [(1, v1)], Compatibility.FORWARD)
[]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from rivulet.registry._avro import parse_avro
from rivulet.registry._errors import InvalidSchemaError
from rivulet.registry._json_schema import parse_json_schema
from rivulet.registry._model import (
    AVRO,
    JSON,
    PROTOBUF,
    Incompatibility,
    ParsedSchema,
    Reference,
    Resolver,
    SchemaText,
)

__all__ = [
    "SCHEMA_TYPES",
    "Compatibility",
    "Incompatibility",
    "ParsedSchema",
    "VersionProblem",
    "check",
    "parse_schema",
]

#: The schema types this registry parses (``GET /schemas/types``).
SCHEMA_TYPES: Final = (AVRO, JSON)


class Compatibility(StrEnum):
    """A subject's (or the registry's) compatibility level."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        """Checked against every version, not only the latest."""
        return self.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        """The new schema must read the old versions' data."""
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """The old versions must read the new schema's data."""
        return self.startswith(("FORWARD", "FULL"))


@dataclass(frozen=True, slots=True)
class VersionProblem:
    """An incompatibility with one registered version."""

    version: int
    direction: str
    problem: Incompatibility

    def __str__(self) -> str:
        return f"version {self.version}, {self.direction}: {self.problem}"


def _no_references(ref: Reference) -> SchemaText:
    raise InvalidSchemaError(f"Invalid schema: reference {ref.name!r} cannot be resolved here")


def parse_schema(text: SchemaText, resolve: Resolver | None) -> ParsedSchema:
    """Parse schema text of any supported type; raise InvalidSchemaError when invalid."""
    resolver = resolve or _no_references
    if text.schema_type == AVRO:
        return parse_avro(text, resolver)
    if text.schema_type == JSON:
        return parse_json_schema(text, resolver)
    if text.schema_type == PROTOBUF:
        raise InvalidSchemaError(
            "Invalid schema: PROTOBUF schemas are not supported by this registry "
            "(it supports AVRO and JSON)"
        )
    raise InvalidSchemaError(
        f"Invalid schema: unknown schema type {text.schema_type!r} (supported: AVRO, JSON)"
    )


def check(
    new: ParsedSchema,
    previous: Sequence[tuple[int, ParsedSchema]],
    level: Compatibility,
) -> list[VersionProblem]:
    """Problems of ``new`` against ``previous`` (version, schema) pairs, oldest first."""
    if level is Compatibility.NONE or not previous:
        return []
    targets = previous if level.transitive else previous[-1:]
    problems: list[VersionProblem] = []
    for version, old in reversed(targets):
        if level.backward:
            problems.extend(
                VersionProblem(version, "the new schema reading data written with it", p)
                for p in new.read_problems(old)
            )
        if level.forward:
            problems.extend(
                VersionProblem(version, "it reading data written with the new schema", p)
                for p in old.read_problems(new)
            )
    return problems
