"""The registry's state: what the ``_schemas`` records say, applied in offset order.

Pure data: no I/O, no parsing. The store feeds it every record it reads back from the
topic (at start-up and after each write), so replaying the topic rebuilds it exactly.
Records it cannot decode are skipped and counted, never fatal: the topic may hold
records from other registry versions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace

from rivulet.registry._records import (
    ConfigKey,
    DeleteSubjectKey,
    IdFloorKey,
    ModeKey,
    SchemaKey,
    SchemaValue,
    decode_key,
    decode_value,
    schema_value,
)
from rivulet.registry.compatibility import Compatibility

__all__ = ["DEFAULT_COMPATIBILITY", "DEFAULT_MODE", "MODES", "RegistryState"]

_log = logging.getLogger("rivulet.registry")

DEFAULT_COMPATIBILITY = Compatibility.BACKWARD
DEFAULT_MODE = "READWRITE"
#: Modes this registry accepts; READONLY_OVERRIDE behaves as READONLY.
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE")


@dataclass
class RegistryState:
    """Subjects and their versions, schema ids, compatibility and mode settings."""

    subjects: dict[str, dict[int, SchemaValue]] = field(default_factory=dict)
    global_compatibility: Compatibility | None = None
    subject_compatibility: dict[str, Compatibility] = field(default_factory=dict)
    global_mode: str | None = None
    subject_mode: dict[str, str] = field(default_factory=dict)
    id_floor: int = 0
    skipped: int = 0
    #: (subject, version) pairs holding each schema id.
    _by_id: dict[int, set[tuple[str, int]]] = field(default_factory=dict)

    # ----------------------------------------------------------------- applying

    def apply(self, raw_key: bytes | None, raw_value: bytes | None) -> None:
        """Apply one record of the ``_schemas`` topic."""
        try:
            key = decode_key(raw_key) if raw_key is not None else None
            value = decode_value(raw_value)
            if isinstance(key, SchemaKey):
                self._apply_schema(key, value)
            elif isinstance(key, ConfigKey):
                self._apply_config(key, value)
            elif isinstance(key, ModeKey):
                self._apply_mode(key, value)
            elif isinstance(key, DeleteSubjectKey) and value is not None:
                self._apply_delete_subject(key.subject, int(value["version"]))
            elif isinstance(key, IdFloorKey) and value is not None:
                self.id_floor = max(self.id_floor, int(value["id"]))
            elif key is None:
                self.skipped += 1
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            self.skipped += 1
            _log.warning("skipped a _schemas record it cannot read (%s): key=%r", exc, raw_key)

    def _apply_schema(self, key: SchemaKey, value: dict[str, object] | None) -> None:
        record = None if value is None else schema_value(value)  # may raise: nothing changed
        versions = self.subjects.setdefault(key.subject, {})
        old = versions.pop(key.version, None)
        if old is not None:
            self._unindex(old)
        if record is not None:
            # Remembered even if a tombstone follows: an id once given out is never reused.
            self.id_floor = max(self.id_floor, record.id)
            versions[key.version] = record
            self._by_id.setdefault(record.id, set()).add((record.subject, record.version))
        if not versions:
            del self.subjects[key.subject]

    def _unindex(self, record: SchemaValue) -> None:
        holders = self._by_id.get(record.id)
        if holders is not None:
            holders.discard((record.subject, record.version))
            if not holders:
                del self._by_id[record.id]

    def _apply_config(self, key: ConfigKey, value: dict[str, object] | None) -> None:
        level = None if value is None else Compatibility(str(value["compatibilityLevel"]))
        if key.subject is None:
            self.global_compatibility = level
        elif level is None:
            self.subject_compatibility.pop(key.subject, None)
        else:
            self.subject_compatibility[key.subject] = level

    def _apply_mode(self, key: ModeKey, value: dict[str, object] | None) -> None:
        mode = None if value is None else str(value["mode"])
        if key.subject is None:
            self.global_mode = mode
        elif mode is None:
            self.subject_mode.pop(key.subject, None)
        else:
            self.subject_mode[key.subject] = mode

    def _apply_delete_subject(self, subject: str, up_to: int) -> None:
        versions = self.subjects.get(subject, {})
        for number, record in list(versions.items()):
            if number <= up_to:
                versions[number] = replace(record, deleted=True)

    # ----------------------------------------------------------------- queries

    def versions(self, subject: str, *, deleted: bool = False) -> list[SchemaValue]:
        """A subject's versions, oldest first; soft-deleted ones only when asked."""
        found = self.subjects.get(subject, {})
        return [found[n] for n in sorted(found) if deleted or not found[n].deleted]

    def version(self, subject: str, number: int) -> SchemaValue | None:
        """One version, deleted or not."""
        return self.subjects.get(subject, {}).get(number)

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        """Subjects with at least one version (not deleted, unless asked), sorted."""
        return sorted(s for s in self.subjects if self.versions(s, deleted=deleted))

    def holders(self, schema_id: int) -> list[SchemaValue]:
        """Every version (deleted or not) carrying a schema id, by subject and version."""
        return sorted(
            (self.subjects[s][v] for s, v in self._by_id.get(schema_id, ())),
            key=lambda r: (r.subject, r.version),
        )

    def schema_ids(self) -> list[int]:
        """Ids with at least one version."""
        return sorted(self._by_id)

    def next_id(self) -> int:
        """The id a new schema gets."""
        return max([self.id_floor, *self._by_id]) + 1

    def max_id(self) -> int:
        """The largest id ever given, as far as this state knows."""
        return max([self.id_floor, *self._by_id])

    def next_version(self, subject: str) -> int:
        """The number of a subject's next version (after soft-deleted ones too)."""
        versions = self.subjects.get(subject)
        return max(versions) + 1 if versions else 1

    def compatibility(self, subject: str | None) -> Compatibility:
        """The level in force for a subject (its own, else the global, else BACKWARD)."""
        if subject is not None and subject in self.subject_compatibility:
            return self.subject_compatibility[subject]
        return self.global_compatibility or DEFAULT_COMPATIBILITY

    def mode(self, subject: str | None) -> str:
        """The mode in force for a subject."""
        if subject is not None and subject in self.subject_mode:
            return self.subject_mode[subject]
        return self.global_mode or DEFAULT_MODE

    def referenced_by(self, subject: str, version: int) -> list[int]:
        """Ids of live versions whose schemas reference ``subject`` version ``version``."""
        found = {
            record.id
            for versions in self.subjects.values()
            for record in versions.values()
            if not record.deleted
            and any(r.subject == subject and r.version == version for r in record.text.references)
        }
        return sorted(found)
