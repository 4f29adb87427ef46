"""The records of the ``_schemas`` topic: JSON keys and values, as Confluent writes them.

The topic has one partition and ``cleanup.policy=compact``; the last record of each key
is the state of that key, and a null value (tombstone) removes it. Keys are serialized
with a fixed field order, because compaction compares key bytes.

Records (key, then value):

* a schema version: ``{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}`` ->
  ``{"subject":S,"version":V,"id":N,"schemaType":T,"references":[...],"schema":TEXT,
  "deleted":false}`` (``schemaType`` left out for AVRO, ``references`` when empty); a
  tombstone is a hard delete.
* compatibility: ``{"keytype":"CONFIG","subject":S|null,"magic":0}`` ->
  ``{"compatibilityLevel":"FULL"}``; a tombstone goes back to the default.
* mode: ``{"keytype":"MODE","subject":S|null,"magic":0}`` -> ``{"mode":"READONLY"}``.
* subject deleted: ``{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}`` ->
  ``{"subject":S,"version":V}``: versions up to V are soft-deleted. Read, never
  written: we soft-delete with one SCHEMA record per version instead.
* no-op: ``{"keytype":"NOOP","magic":0}``, ignored.
* id floor (ours): ``{"keytype":"ID_FLOOR","magic":0}`` -> ``{"id":N}``: ids up to N were
  given out.

Schema ids are not stored apart from the versions: the next id is one more than the
largest id in any version record or the id floor. The id floor is written before a
hard delete, so an id whose last version is deleted (and later compacted away) is never
given to another schema: consumers may still hold payloads carrying it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from rivulet.registry._model import AVRO, Reference, SchemaText

__all__ = [
    "ConfigKey",
    "DeleteSubjectKey",
    "IdFloorKey",
    "Key",
    "ModeKey",
    "SchemaKey",
    "SchemaValue",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
]

_COMPACT: Final = (",", ":")


@dataclass(frozen=True, slots=True)
class SchemaKey:
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class ConfigKey:
    subject: str | None


@dataclass(frozen=True, slots=True)
class ModeKey:
    subject: str | None


@dataclass(frozen=True, slots=True)
class DeleteSubjectKey:
    subject: str


@dataclass(frozen=True, slots=True)
class IdFloorKey:
    pass


@dataclass(frozen=True, slots=True)
class NoopKey:
    pass


Key = SchemaKey | ConfigKey | ModeKey | DeleteSubjectKey | IdFloorKey | NoopKey


@dataclass(frozen=True, slots=True)
class SchemaValue:
    """One version of a subject."""

    subject: str
    version: int
    id: int
    text: SchemaText
    deleted: bool = False


def encode_key(key: Key) -> bytes:
    """Key bytes, fields in Confluent's order."""
    fields: dict[str, Any]
    if isinstance(key, SchemaKey):
        fields = {"keytype": "SCHEMA", "subject": key.subject, "version": key.version, "magic": 1}
    elif isinstance(key, ConfigKey):
        fields = {"keytype": "CONFIG", "subject": key.subject, "magic": 0}
    elif isinstance(key, ModeKey):
        fields = {"keytype": "MODE", "subject": key.subject, "magic": 0}
    elif isinstance(key, DeleteSubjectKey):
        fields = {"keytype": "DELETE_SUBJECT", "subject": key.subject, "magic": 0}
    elif isinstance(key, IdFloorKey):
        fields = {"keytype": "ID_FLOOR", "magic": 0}
    else:
        fields = {"keytype": "NOOP", "magic": 0}
    return json.dumps(fields, separators=_COMPACT, ensure_ascii=False).encode()


def decode_key(raw: bytes) -> Key | None:
    """The key of a record; ``None`` for key types this registry does not know."""
    fields = json.loads(raw)
    keytype = fields.get("keytype")
    subject = fields.get("subject")
    if keytype == "SCHEMA":
        return SchemaKey(str(subject), int(fields["version"]))
    if keytype == "CONFIG":
        return ConfigKey(subject)
    if keytype == "MODE":
        return ModeKey(subject)
    if keytype == "DELETE_SUBJECT":
        return DeleteSubjectKey(str(subject))
    if keytype == "ID_FLOOR":
        return IdFloorKey()
    if keytype == "NOOP":
        return NoopKey()
    return None


def encode_value(value: SchemaValue | dict[str, Any] | None) -> bytes | None:
    """Value bytes: a schema version, a small JSON object, or a tombstone."""
    if value is None:
        return None
    if isinstance(value, SchemaValue):
        fields: dict[str, Any] = {
            "subject": value.subject,
            "version": value.version,
            "id": value.id,
        }
        if value.text.schema_type != AVRO:
            fields["schemaType"] = value.text.schema_type
        if value.text.references:
            fields["references"] = [ref.to_json() for ref in value.text.references]
        fields["schema"] = value.text.schema
        fields["deleted"] = value.deleted
        return json.dumps(fields, separators=_COMPACT, ensure_ascii=False).encode()
    return json.dumps(value, separators=_COMPACT, ensure_ascii=False).encode()


def decode_value(raw: bytes | None) -> dict[str, Any] | None:
    """A value's JSON object, or ``None`` for a tombstone."""
    if raw is None:
        return None
    decoded = json.loads(raw)
    return decoded if isinstance(decoded, dict) else None


def schema_value(fields: dict[str, Any]) -> SchemaValue:
    """A schema version from its value's JSON object."""
    references = tuple(
        Reference(str(r["name"]), str(r["subject"]), int(r["version"]))
        for r in fields.get("references") or ()
    )
    return SchemaValue(
        subject=str(fields["subject"]),
        version=int(fields["version"]),
        id=int(fields["id"]),
        text=SchemaText(str(fields.get("schemaType") or AVRO), str(fields["schema"]), references),
        deleted=bool(fields.get("deleted", False)),
    )
