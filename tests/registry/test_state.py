"""The state the ``_schemas`` records describe, applied without Kafka."""

from __future__ import annotations

import json
from typing import Any

from rivulet.registry._model import Reference, SchemaText
from rivulet.registry._records import (
    ConfigKey,
    IdFloorKey,
    SchemaKey,
    SchemaValue,
    decode_key,
    encode_key,
    encode_value,
)
from rivulet.registry._state import RegistryState
from rivulet.registry.compatibility import Compatibility


def version(subject: str, number: int, schema_id: int, deleted: bool = False) -> SchemaValue:
    return SchemaValue(subject, number, schema_id, SchemaText("AVRO", '"string"'), deleted)


def apply(state: RegistryState, key: Any, value: Any) -> None:
    state.apply(encode_key(key), encode_value(value))


def test_keys_are_written_as_confluent_writes_them() -> None:
    assert (
        encode_key(SchemaKey("s", 2)) == b'{"keytype":"SCHEMA","subject":"s","version":2,"magic":1}'
    )
    assert encode_key(ConfigKey(None)) == b'{"keytype":"CONFIG","subject":null,"magic":0}'
    assert decode_key(encode_key(IdFloorKey())) == IdFloorKey()


def test_values_round_trip_with_type_and_references() -> None:
    text = SchemaText("JSON", "{}", (Reference("a.json", "a", 3),))
    raw = encode_value(SchemaValue("s", 1, 7, text))
    assert raw is not None
    assert json.loads(raw) == {
        "subject": "s", "version": 1, "id": 7, "schemaType": "JSON",
        "references": [{"name": "a.json", "subject": "a", "version": 3}],
        "schema": "{}", "deleted": False,
    }  # fmt: skip
    state = RegistryState()
    state.apply(encode_key(SchemaKey("s", 1)), raw)
    assert state.version("s", 1) == SchemaValue("s", 1, 7, text)


def test_versions_deletes_and_ids() -> None:
    state = RegistryState()
    apply(state, SchemaKey("s", 1), version("s", 1, 1))
    apply(state, SchemaKey("s", 2), version("s", 2, 2))
    apply(state, SchemaKey("t", 1), version("t", 1, 1))
    assert state.next_id() == 3
    assert state.next_version("s") == 3
    assert [r.subject for r in state.holders(1)] == ["s", "t"]
    apply(state, SchemaKey("s", 2), version("s", 2, 2, deleted=True))
    assert [r.version for r in state.versions("s")] == [1]
    assert [r.version for r in state.versions("s", deleted=True)] == [1, 2]
    assert state.next_version("s") == 3  # soft-deleted versions keep their numbers
    apply(state, SchemaKey("s", 2), None)
    assert state.holders(2) == []
    assert state.next_id() == 3  # the id a tombstone removed is not reused
    apply(state, SchemaKey("t", 1), None)
    assert state.subject_names(deleted=True) == ["s"]


def test_config_mode_and_tombstones() -> None:
    state = RegistryState()
    assert state.compatibility("s") is Compatibility.BACKWARD
    apply(state, ConfigKey(None), {"compatibilityLevel": "FULL"})
    apply(state, ConfigKey("s"), {"compatibilityLevel": "NONE"})
    assert (state.compatibility("s"), state.compatibility("t")) == (
        Compatibility.NONE,
        Compatibility.FULL,
    )
    apply(state, ConfigKey("s"), None)
    assert state.compatibility("s") is Compatibility.FULL


def test_unreadable_records_are_skipped() -> None:
    state = RegistryState()
    state.apply(b"not json", b"{}")
    state.apply(encode_key(SchemaKey("s", 1)), b'{"subject": "s"}')
    state.apply(b'{"keytype":"FUTURE","magic":0}', b"{}")
    assert state.skipped == 3
    assert state.subjects == {}
