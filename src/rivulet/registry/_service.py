"""The registry's operations, independent of HTTP: what each REST endpoint does.

Reads answer from the :class:`RegistryState`; writes check everything first (schema
validity, references, compatibility, mode), then hand records to the store and return
once they have been read back and applied. A write that fails a check raises a
:class:`RegistryError` before anything is written, so it changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rivulet.registry._errors import (
    IncompatibleSchemaError,
    InvalidCompatibilityLevelError,
    InvalidModeError,
    InvalidSchemaError,
    InvalidVersionError,
    OperationNotPermittedError,
    ReferenceExistsError,
    SchemaNotFoundError,
    StoreError,
    SubjectConfigNotFoundError,
    SubjectModeNotFoundError,
    SubjectNotFoundError,
    SubjectNotSoftDeletedError,
    SubjectSoftDeletedError,
    VersionNotFoundError,
    VersionNotSoftDeletedError,
    VersionSoftDeletedError,
)
from rivulet.registry._model import ParsedSchema, Reference, SchemaText
from rivulet.registry._records import (
    ConfigKey,
    IdFloorKey,
    ModeKey,
    SchemaKey,
    SchemaValue,
    encode_key,
    encode_value,
)
from rivulet.registry._state import MODES, RegistryState
from rivulet.registry.compatibility import SCHEMA_TYPES, Compatibility, check, parse_schema

__all__ = ["Registry", "Write"]

#: Hands records (key bytes, value bytes or None) to the store; returns once applied.
Write = Callable[[Sequence[tuple[bytes, bytes | None]]], Awaitable[None]]

_MAX_VERSION: Final = 2**31 - 1
_READ_ONLY: Final = frozenset({"READONLY", "READONLY_OVERRIDE"})

Identity = tuple[str, str, tuple[Reference, ...]]


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
    """The answer of a compatibility test."""

    is_compatible: bool
    messages: list[str]


class Registry:
    """Schema registry operations over a state and a way to write records."""

    def __init__(self, state: RegistryState, write: Write) -> None:
        self.state = state
        self._write = write
        # Writes choose ids and versions from the state: one at a time.
        self._lock = asyncio.Lock()
        self._parsed: dict[int, ParsedSchema] = {}

    # ------------------------------------------------------------------ parsing

    def _resolver(self, *, live_only: bool) -> Callable[[Reference], SchemaText]:
        def resolve(ref: Reference) -> SchemaText:
            record = self.state.version(ref.subject, ref.version)
            if record is None or (live_only and record.deleted):
                raise InvalidSchemaError(
                    f"Invalid schema: reference {ref.name!r} names {ref.subject!r} version "
                    f"{ref.version}, which is not registered; register it first"
                )
            return record.text

        return resolve

    def _parse_new(self, text: SchemaText) -> tuple[SchemaText, ParsedSchema]:
        """Parse a schema a client sent; references to ``-1`` become the latest version."""
        references = []
        for ref in text.references:
            if not ref.name or not ref.subject:
                raise InvalidSchemaError("Invalid schema: a reference needs a name and a subject")
            version = ref.version
            if version == -1:
                live = self.state.versions(ref.subject)
                if not live:
                    raise InvalidSchemaError(
                        f"Invalid schema: reference {ref.name!r} names subject {ref.subject!r}, "
                        "which has no versions"
                    )
                version = live[-1].version
            references.append(Reference(ref.name, ref.subject, version))
        resolved = SchemaText(text.schema_type, text.schema, tuple(references))
        parsed = parse_schema(resolved, self._resolver(live_only=True))
        # Stored compact, as Confluent stores its canonical string (key order is kept).
        compact = json.dumps(json.loads(text.schema), separators=(",", ":"), ensure_ascii=False)
        return SchemaText(text.schema_type, compact, resolved.references), parsed

    def parsed(self, record: SchemaValue) -> ParsedSchema:
        """The parsed schema of a stored version (cached by id: an id's schema never changes)."""
        found = self._parsed.get(record.id)
        if found is None:
            try:
                found = parse_schema(record.text, self._resolver(live_only=False))
            except InvalidSchemaError as exc:
                raise StoreError(
                    f"schema id {record.id} ({record.subject} version {record.version}) in the "
                    f"store does not parse: {exc.message}"
                ) from None
            self._parsed[record.id] = found
        return found

    def _identity(self, text: SchemaText, parsed: ParsedSchema) -> Identity:
        return (text.schema_type, parsed.canonical, text.references)

    def _stored_identity(self, record: SchemaValue) -> Identity:
        try:
            return self._identity(record.text, self.parsed(record))
        except StoreError:
            return (record.text.schema_type, record.text.schema, record.text.references)

    def _find_id(self, identity: Identity) -> int | None:
        for schema_id in self.state.schema_ids():
            if self._stored_identity(self.state.holders(schema_id)[0]) == identity:
                return schema_id
        return None

    # ------------------------------------------------------------------ reads

    @staticmethod
    def schema_types() -> list[str]:
        """``GET /schemas/types``."""
        return list(SCHEMA_TYPES)

    def subjects(
        self, *, prefix: str = "", deleted: bool = False, deleted_only: bool = False
    ) -> list[str]:
        """``GET /subjects``."""
        if deleted_only:
            live = set(self.state.subject_names())
            names = [s for s in self.state.subject_names(deleted=True) if s not in live]
        else:
            names = self.state.subject_names(deleted=deleted)
        return [s for s in names if s.startswith(prefix)]

    def versions(
        self, subject: str, *, deleted: bool = False, deleted_only: bool = False
    ) -> list[int]:
        """``GET /subjects/{subject}/versions``."""
        found = self.state.versions(subject, deleted=deleted or deleted_only)
        if deleted_only:
            found = [r for r in found if r.deleted]
        if not found and not self.state.versions(subject, deleted=deleted or deleted_only):
            raise SubjectNotFoundError(f"Subject '{subject}' not found.")
        return [r.version for r in found]

    def version(self, subject: str, version: str, *, deleted: bool = False) -> SchemaValue:
        """``GET /subjects/{subject}/versions/{version}`` (``latest`` or ``-1`` too)."""
        records = self.state.versions(subject, deleted=deleted)
        if not records:
            raise SubjectNotFoundError(f"Subject '{subject}' not found.")
        number = _version_number(version)
        if number is None:
            return records[-1]
        record = self.state.version(subject, number)
        if record is None or (record.deleted and not deleted):
            raise VersionNotFoundError(f"Version {number} not found.")
        return record

    def schema(self, schema_id: int, *, subject: str | None = None) -> SchemaValue:
        """``GET /schemas/ids/{id}``: any version holding the id (soft-deleted too)."""
        holders = self.state.holders(schema_id)
        if subject:
            holders = [r for r in holders if r.subject == subject] or holders[:0]
        if not holders:
            raise SchemaNotFoundError(f"Schema {schema_id} not found")
        return holders[0]

    def schema_versions(self, schema_id: int, *, deleted: bool = False) -> list[SchemaValue]:
        """``GET /schemas/ids/{id}/versions``."""
        holders = self.state.holders(schema_id)
        if not holders:
            raise SchemaNotFoundError(f"Schema {schema_id} not found")
        return [r for r in holders if deleted or not r.deleted]

    def referenced_by(self, subject: str, version: str) -> list[int]:
        """``GET /subjects/{subject}/versions/{version}/referencedby``."""
        record = self.version(subject, version)
        return self.state.referenced_by(record.subject, record.version)

    def lookup(self, subject: str, text: SchemaText, *, deleted: bool = False) -> SchemaValue:
        """``POST /subjects/{subject}``: the version of ``subject`` holding this schema."""
        records = self.state.versions(subject, deleted=deleted)
        if not records:
            raise SubjectNotFoundError(f"Subject '{subject}' not found.")
        resolved, parsed = self._parse_new(text)
        identity = self._identity(resolved, parsed)
        for record in reversed(records):
            if self._stored_identity(record) == identity:
                return record
        raise SchemaNotFoundError("Schema not found")

    # ------------------------------------------------------------------ compatibility

    def test_compatibility(
        self, subject: str, text: SchemaText, version: str | None
    ) -> CompatibilityResult:
        """``POST /compatibility/subjects/{subject}/versions[/{version}]``."""
        _, parsed = self._parse_new(text)
        level = self.state.compatibility(subject)
        if version is None:
            previous = self.state.versions(subject)
        else:
            previous = [self.version(subject, version)]
            # One named version: its direction, without transitivity.
            level = Compatibility(level.removesuffix("_TRANSITIVE"))
        problems = check(parsed, [(r.version, self.parsed(r)) for r in previous], level)
        messages = [str(p) for p in problems]
        if problems:
            messages.append(f"compatibility: {level.value}")
        return CompatibilityResult(not problems, messages)

    # ------------------------------------------------------------------ writes

    def _check_writable(self, subject: str) -> None:
        mode = self.state.mode(subject)
        if mode in _READ_ONLY:
            raise OperationNotPermittedError(
                f"Subject {subject} is in read-only mode ({mode}); set the mode to READWRITE "
                "to change it"
            )

    async def register(self, subject: str, text: SchemaText) -> int:
        """``POST /subjects/{subject}/versions``: the schema's id, registering it if new."""
        async with self._lock:
            resolved, parsed = self._parse_new(text)
            identity = self._identity(resolved, parsed)
            live = self.state.versions(subject)
            for record in reversed(live):
                if self._stored_identity(record) == identity:
                    return record.id
            self._check_writable(subject)
            level = self.state.compatibility(subject)
            problems = check(parsed, [(r.version, self.parsed(r)) for r in live], level)
            if problems:
                details = "; ".join(str(p) for p in problems)
                raise IncompatibleSchemaError(
                    "Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}" ({level.value}), details: [{details}]'
                )
            schema_id = self._find_id(identity)
            if schema_id is None:
                schema_id = self.state.next_id()
            value = SchemaValue(subject, self.state.next_version(subject), schema_id, resolved)
            key = SchemaKey(subject, value.version)
            await self._write([(encode_key(key), encode_value(value))])
            self._parsed.setdefault(schema_id, parsed)
            return schema_id

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        """``DELETE /subjects/{subject}``: soft, or hard once soft-deleted."""
        async with self._lock:
            everything = self.state.versions(subject, deleted=True)
            if not everything:
                raise SubjectNotFoundError(f"Subject '{subject}' not found.")
            self._check_writable(subject)
            live = [r for r in everything if not r.deleted]
            if permanent:
                if live:
                    raise SubjectNotSoftDeletedError(
                        f"Subject '{subject}' was not deleted first before being permanently "
                        "deleted; delete it without permanent=true first"
                    )
                self._check_unreferenced(everything, include_deleted=True)
                records = [(encode_key(IdFloorKey()), encode_value({"id": self.state.max_id()}))]
                records += [(encode_key(SchemaKey(subject, r.version)), None) for r in everything]
                await self._write(records)
                return [r.version for r in everything]
            if not live:
                raise SubjectSoftDeletedError(
                    f"Subject '{subject}' was soft deleted. "
                    "Set permanent=true to delete permanently"
                )
            self._check_unreferenced(live, include_deleted=False)
            writes: list[tuple[bytes, bytes | None]] = [
                (
                    encode_key(SchemaKey(subject, r.version)),
                    encode_value(SchemaValue(r.subject, r.version, r.id, r.text, deleted=True)),
                )
                for r in live
            ]
            # Confluent forgets a deleted subject's own settings with it.
            if subject in self.state.subject_compatibility:
                writes.append((encode_key(ConfigKey(subject)), None))
            if subject in self.state.subject_mode:
                writes.append((encode_key(ModeKey(subject)), None))
            await self._write(writes)
            return [r.version for r in live]

    async def delete_version(self, subject: str, version: str, *, permanent: bool) -> int:
        """``DELETE /subjects/{subject}/versions/{version}``: soft, or hard once soft-deleted."""
        async with self._lock:
            everything = self.state.versions(subject, deleted=True)
            if not everything:
                raise SubjectNotFoundError(f"Subject '{subject}' not found.")
            self._check_writable(subject)
            number = _version_number(version)
            if number is None:
                candidates = everything if permanent else [r for r in everything if not r.deleted]
                if not candidates:
                    raise VersionNotFoundError(f"Version {version} not found.")
                number = candidates[-1].version
            record = self.state.version(subject, number)
            if record is None:
                raise VersionNotFoundError(f"Version {number} not found.")
            key = encode_key(SchemaKey(subject, number))
            if permanent:
                if not record.deleted:
                    raise VersionNotSoftDeletedError(
                        f"Subject '{subject}' Version {number} was not deleted first before being "
                        "permanently deleted; delete it without permanent=true first"
                    )
                self._check_unreferenced([record], include_deleted=True)
                floor = (encode_key(IdFloorKey()), encode_value({"id": self.state.max_id()}))
                await self._write([floor, (key, None)])
                return number
            if record.deleted:
                raise VersionSoftDeletedError(
                    f"Subject '{subject}' Version {number} was soft deleted. Set permanent=true to "
                    "delete permanently"
                )
            self._check_unreferenced([record], include_deleted=False)
            value = SchemaValue(record.subject, number, record.id, record.text, deleted=True)
            await self._write([(key, encode_value(value))])
            return number

    def _check_unreferenced(self, records: Sequence[SchemaValue], *, include_deleted: bool) -> None:
        for record in records:
            referrers = [
                other
                for versions in self.state.subjects.values()
                for other in versions.values()
                if (include_deleted or not other.deleted)
                and any(
                    r.subject == record.subject and r.version == record.version
                    for r in other.text.references
                )
            ]
            if referrers:
                ids = sorted({r.id for r in referrers})
                raise ReferenceExistsError(
                    f"One or more references exist to the schema {{subject={record.subject}, "
                    f"version={record.version}}}: schema ids {ids}; delete those first"
                )

    # ------------------------------------------------------------------ config and mode

    def config(self, subject: str | None, *, default_to_global: bool = False) -> Compatibility:
        """``GET /config[/{subject}]``."""
        if subject is not None and subject not in self.state.subject_compatibility:
            if not default_to_global:
                raise SubjectConfigNotFoundError(
                    f"Subject '{subject}' does not have subject-level compatibility configured"
                )
            return self.state.compatibility(None)
        return self.state.compatibility(subject)

    async def set_config(self, subject: str | None, level: Any) -> Compatibility:
        """``PUT /config[/{subject}]``."""
        known = {c.value: c for c in Compatibility}
        compatibility = known.get(level.upper()) if isinstance(level, str) else None
        if compatibility is None:
            raise InvalidCompatibilityLevelError(
                f"Invalid compatibility level {level!r}: use one of {', '.join(known)}"
            )
        async with self._lock:
            value = {"compatibilityLevel": compatibility.value}
            await self._write([(encode_key(ConfigKey(subject)), encode_value(value))])
        return compatibility

    async def delete_config(self, subject: str | None) -> Compatibility:
        """``DELETE /config[/{subject}]``: back to the global level (or the default)."""
        async with self._lock:
            previous = self.config(subject)
            await self._write([(encode_key(ConfigKey(subject)), None)])
        return previous

    def mode(self, subject: str | None, *, default_to_global: bool = False) -> str:
        """``GET /mode[/{subject}]``."""
        if subject is not None and subject not in self.state.subject_mode:
            if not default_to_global:
                raise SubjectModeNotFoundError(
                    f"Subject '{subject}' does not have a mode configured"
                )
            return self.state.mode(None)
        return self.state.mode(subject)

    async def set_mode(self, subject: str | None, mode: Any) -> str:
        """``PUT /mode[/{subject}]``."""
        wanted = mode.upper() if isinstance(mode, str) else ""
        if wanted not in MODES:
            raise InvalidModeError(
                f"Invalid mode {mode!r}: this registry supports {', '.join(MODES)} "
                "(IMPORT is not supported)"
            )
        async with self._lock:
            await self._write([(encode_key(ModeKey(subject)), encode_value({"mode": wanted}))])
        return wanted

    async def delete_mode(self, subject: str) -> str:
        """``DELETE /mode/{subject}``."""
        async with self._lock:
            previous = self.mode(subject)
            await self._write([(encode_key(ModeKey(subject)), None)])
        return previous


def _version_number(version: str) -> int | None:
    """A version path segment: a number, or ``None`` for the latest (``latest``, ``-1``)."""
    if version in {"latest", "-1"}:
        return None
    if version.isdigit() and 1 <= int(version) <= _MAX_VERSION:
        return int(version)
    raise InvalidVersionError(
        f"The specified version '{version}' is not a valid version id. Allowed values are "
        f'between [1, {_MAX_VERSION}] and the string "latest"'
    )
