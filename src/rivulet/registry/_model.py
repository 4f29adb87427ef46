"""What every schema format shares: schema text as stored, references, parsed schemas.

A format module (:mod:`._avro`, :mod:`._json_schema`) parses :class:`SchemaText` into a
:class:`ParsedSchema`, which knows its identity (``canonical``: two registrations with
the same canonical text, type and references are the same schema and get the same id)
and how to read data written with another schema (``read_problems``). The compatibility
modes (:mod:`.compatibility`) are built on that one question.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from rivulet.registry._errors import InvalidSchemaError

__all__ = [
    "AVRO",
    "JSON",
    "PROTOBUF",
    "Incompatibility",
    "ParsedSchema",
    "Reference",
    "Resolver",
    "SchemaText",
    "load_json",
]

AVRO: Final = "AVRO"
JSON: Final = "JSON"
PROTOBUF: Final = "PROTOBUF"


@dataclass(frozen=True, slots=True)
class Reference:
    """A schema reference: ``name`` as the referring schema spells it, and where it lives."""

    name: str
    subject: str
    version: int

    def to_json(self) -> dict[str, Any]:
        """The REST and ``_schemas`` form."""
        return {"name": self.name, "subject": self.subject, "version": self.version}


@dataclass(frozen=True, slots=True)
class SchemaText:
    """A schema as registered: its type, its text and the schemas it references."""

    schema_type: str
    schema: str
    references: tuple[Reference, ...] = ()


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a reader schema cannot read what a writer schema wrote.

    ``rule`` names the rule that failed (``avro.reader-field-missing-default``,
    ``json.property-added-to-open-content-model``, ...); ``path`` locates it.
    """

    rule: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message} [{self.rule}]"


class ParsedSchema(Protocol):
    """A schema parsed by its format module."""

    @property
    def schema_type(self) -> str:
        """``AVRO`` or ``JSON``."""
        ...

    @property
    def canonical(self) -> str:
        """Identity text: equal for schemas that differ only in spelling (key order, ...)."""
        ...

    def read_problems(self, writer: ParsedSchema) -> list[Incompatibility]:
        """Why this schema, as the reader, cannot read data written with ``writer``."""
        ...


#: Fetches the text of a referenced schema; raises a RegistryError when it does not exist.
Resolver = Callable[[Reference], SchemaText]


def load_json(text: str, what: str) -> Any:
    """Parse schema text as JSON, or say why it is not a valid schema."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(
            f"Invalid schema: the {what} schema is not valid JSON: {exc}"
        ) from None
