"""Conformance with confluent-kafka's own schema registry client and serializers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from rivulet.registry import ThreadedRegistry

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}],
}
ORDER_V2 = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "note", "type": ["null", "string"], "default": None}],
}
ORDER_JSON = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
    "required": ["id", "qty"],
    "additionalProperties": False,
}


@pytest.fixture
def client(registry: ThreadedRegistry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url}) as sr_client:
        yield sr_client


def avro(schema: dict[str, Any], references: list[SchemaReference] | None = None) -> Schema:
    return Schema(json.dumps(schema), "AVRO", references or [])


def test_register_and_look_up(client: SchemaRegistryClient, subject: str) -> None:
    schema_id = client.register_schema(subject, avro(ORDER_V1))
    assert client.register_schema(subject, avro(ORDER_V1)) == schema_id
    assert json.loads(client.get_schema(schema_id).schema_str or "") == ORDER_V1
    found = client.lookup_schema(subject, avro(ORDER_V1))
    assert (found.schema_id, found.subject, found.version) == (schema_id, subject, 1)
    assert client.test_compatibility(subject, avro(ORDER_V2)) is True
    assert client.test_compatibility_all_versions(subject, avro(ORDER_V2)) is True
    v2 = client.register_schema(subject, avro(ORDER_V2))
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (v2, 2)
    assert client.get_version(subject, 1).schema_id == schema_id
    assert client.get_versions(subject) == [1, 2]
    assert subject in client.get_subjects()
    assert [(v.subject, v.version) for v in client.get_schema_versions(v2)] == [(subject, 2)]
    assert client.get_schema_types() == ["AVRO", "JSON"]


def test_incompatible_changes_are_refused(client: SchemaRegistryClient, subject: str) -> None:
    client.register_schema(subject, avro(ORDER_V1))
    renamed = {
        **ORDER_V1,
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "int"}],
    }
    assert client.test_compatibility(subject, avro(renamed)) is False
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, avro(renamed))
    assert (info.value.http_status_code, info.value.error_code) == (409, 409)
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_version(f"{subject}-none", 1)
    assert missing.value.error_code == 40401
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(subject, Schema('{"type": "nope"}', "AVRO"))
    assert invalid.value.error_code == 42201


def test_compatibility_config(client: SchemaRegistryClient, subject: str) -> None:
    client.register_schema(subject, avro(ORDER_V1))
    assert client.get_compatibility() == "BACKWARD"
    # Typed as str by confluent-kafka, it is the response body.
    answer: object = client.set_compatibility(subject, "FORWARD")
    assert answer == {"compatibility": "FORWARD"}
    assert client.get_compatibility(subject) == "FORWARD"
    assert client.get_config(subject).compatibility_level == "FORWARD"
    # FORWARD: the old schema must read the new one's data; dropping qty breaks it.
    dropped = {**ORDER_V1, "fields": ORDER_V1["fields"][:1]}
    assert client.test_compatibility(subject, avro(dropped)) is False
    assert client.delete_config(subject).compatibility_level == "FORWARD"
    assert client.test_compatibility(subject, avro(dropped)) is True


def test_deletes(client: SchemaRegistryClient, subject: str) -> None:
    client.register_schema(subject, avro(ORDER_V1))
    client.register_schema(subject, avro(ORDER_V2))
    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.delete_version(subject, 1, permanent=True) == 1
    assert client.delete_subject(subject) == [2]
    assert subject not in client.get_subjects()
    assert client.delete_subject(subject, permanent=True) == [2]
    with pytest.raises(SchemaRegistryError) as info:
        client.get_versions(subject)
    assert info.value.error_code == 40401


def test_references(client: SchemaRegistryClient, subject: str) -> None:
    address = {"type": "record", "name": "Address", "namespace": "shop",
               "fields": [{"name": "city", "type": "string"}]}  # fmt: skip
    client.register_schema(f"{subject}-address", avro(address))
    order = {"type": "record", "name": "Order", "namespace": "shop",
             "fields": [{"name": "to", "type": "shop.Address"}]}  # fmt: skip
    refs = [SchemaReference("shop.Address", f"{subject}-address", 1)]
    schema_id = client.register_schema(subject, avro(order, refs))
    fetched = client.get_schema(schema_id)
    assert [(r.name, r.subject, r.version) for r in fetched.references or []] == [
        ("shop.Address", f"{subject}-address", 1)
    ]
    assert client.get_referenced_by(f"{subject}-address", 1) == [schema_id]


Roundtrip = Callable[[str, Any, Any], Any]


@pytest.fixture
def roundtrip(bootstrap_servers: str) -> Roundtrip:
    """Produce one value through a serializer to a topic, read it back, deserialize it."""

    def run(topic: str, serializer: Any, deserializer: Any) -> Any:
        producer = Producer({"bootstrap.servers": bootstrap_servers})
        value = {"id": "o-1", "qty": 3}
        payload = serializer(value, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=b"o-1", value=payload)
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": topic})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            message = consumer.poll(10)
            assert message is not None
            assert message.error() is None
            raw = message.value()
        finally:
            consumer.close()
        assert raw is not None
        assert raw[0] == 0  # Confluent's magic byte, then the schema id
        return raw, deserializer(raw, SerializationContext(topic, MessageField.VALUE))

    return run


def test_avro_serializer_round_trip(
    client: SchemaRegistryClient, roundtrip: Roundtrip, subject: str
) -> None:
    topic = subject.removesuffix("-value")
    raw, value = roundtrip(
        topic,
        AvroSerializer(client, json.dumps(ORDER_V1)),
        AvroDeserializer(client),
    )
    assert value == {"id": "o-1", "qty": 3}
    schema_id = int.from_bytes(raw[1:5], "big")
    assert client.get_latest_version(f"{topic}-value").schema_id == schema_id


def test_json_serializer_round_trip(
    client: SchemaRegistryClient, roundtrip: Roundtrip, subject: str
) -> None:
    topic = subject.removesuffix("-value")
    raw, value = roundtrip(
        topic,
        JSONSerializer(json.dumps(ORDER_JSON), client),
        JSONDeserializer(json.dumps(ORDER_JSON), schema_registry_client=client),
    )
    assert value == {"id": "o-1", "qty": 3}
    assert json.loads(raw[5:]) == {"id": "o-1", "qty": 3}
    registered = client.get_latest_version(f"{topic}-value")
    assert registered.schema.schema_type == "JSON"
    assert registered.schema_id == int.from_bytes(raw[1:5], "big")
