"""Rivulet events through the registry: derived schemas, the wire format, and services
exchanging events with plain confluent-kafka producers and consumers both ways."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as CfAvro
from confluent_kafka.serialization import MessageField, SerializationContext
from pydantic import Field

from rivulet import App, Context, Event, Settings
from rivulet.framework import ConfigurationError, InvalidPayloadError
from rivulet.registry import ThreadedRegistry
from rivulet.registry._model import SchemaText
from rivulet.registry.compatibility import Compatibility, check, parse_schema
from rivulet.registry.serde import (
    AVRO_CONTENT_TYPE,
    AvroSerializer,
    JsonSchemaSerializer,
    UnknownSchemaError,
)

# ---------------------------------------------------------------------------- models


class Colour(enum.Enum):
    RED = "RED"
    BLUE = "BLUE"


class Address(Event):
    city: str


class Everything(Event):
    name: str
    count: int
    ratio: float = 1.5
    ok: bool = True
    tags: list[str] = Field(default_factory=list)
    scores: dict[str, int] = {}  # noqa: RUF012 - a field default (pydantic copies it)
    note: str | None = None
    colour: Colour = Colour.RED
    to: Address | None = None


class OrderPlaced(Event, content_type=AVRO_CONTENT_TYPE):
    order_id: str
    qty: int


class OrderPlacedV2(Event, event_type="OrderPlaced", content_type=AVRO_CONTENT_TYPE):
    order_id: str
    qty: int
    note: str = ""


class OrderPlacedV3(Event, event_type="OrderPlaced", content_type=AVRO_CONTENT_TYPE):
    order_id: str
    qty: int
    customer: str


class StockReserved(Event, content_type=AVRO_CONTENT_TYPE):
    order_id: str


def parsed(text: SchemaText) -> Any:
    return parse_schema(text, resolve=None)


# ---------------------------------------------------------------------------- derived schemas


def test_avro_schema_of_a_model() -> None:
    text = AvroSerializer("http://unused").schema_of(Everything)
    schema = json.loads(text.schema)
    parsed(text)  # a valid Avro schema
    fields = {f["name"]: f for f in schema["fields"]}
    assert schema["name"] == "Everything"
    assert fields["name"]["type"] == "string"
    assert fields["count"]["type"] == "long"
    assert fields["ratio"] == {"name": "ratio", "type": "double", "default": 1.5}
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["scores"]["type"] == {"type": "map", "values": "long"}
    assert fields["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert fields["colour"]["type"] == {
        "type": "enum",
        "name": "Colour",
        "symbols": ["RED", "BLUE"],
    }
    assert fields["colour"]["default"] == "RED"
    assert fields["to"]["type"][0] == "null"
    assert fields["to"]["type"][1]["name"] == "Address"
    assert "default" not in fields["tags"]  # a default_factory has no schema default


def test_json_schema_of_a_model_is_closed() -> None:
    schema = json.loads(JsonSchemaSerializer("http://unused").schema_of(Everything).schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Address"]["additionalProperties"] is False


def test_a_model_without_avro_equivalent_is_refused() -> None:
    class Loose(Event):
        payload: dict[str, Any]

    with pytest.raises(ConfigurationError, match="no Avro equivalent"):
        AvroSerializer("http://unused").schema_of(Loose)


def test_a_model_may_declare_its_own_schema() -> None:
    class Declared(Event):
        __avro_schema__: ClassVar[dict[str, Any]] = {
            "type": "record",
            "name": "Declared",
            "fields": [{"name": "n", "type": "int"}],
        }
        n: int

    assert json.loads(AvroSerializer("http://unused").schema_of(Declared).schema)["fields"] == [
        {"name": "n", "type": "int"}
    ]


@pytest.mark.parametrize("serializer", [AvroSerializer, JsonSchemaSerializer])
def test_model_evolution_meets_backward_compatibility(serializer: type[AvroSerializer]) -> None:
    codec = serializer("http://unused")
    v1, v2, v3 = (parsed(codec.schema_of(m)) for m in (OrderPlaced, OrderPlacedV2, OrderPlacedV3))
    # A field with a default may be added; one without may not.
    assert check(v2, [(1, v1)], Compatibility.BACKWARD) == []
    assert check(v3, [(1, v1)], Compatibility.BACKWARD) != []


# ---------------------------------------------------------------------------- wire format


@pytest.fixture
async def avro_codec(registry: ThreadedRegistry) -> AsyncIterator[AvroSerializer]:
    codec = AvroSerializer(registry.url)
    yield codec
    await codec.stop()


async def test_encode_and_decode(avro_codec: AvroSerializer, subject: str) -> None:
    topic = subject.removesuffix("-value")
    data = avro_codec.encode(OrderPlaced(order_id="o-1", qty=2), topic=topic)
    assert data[0] == 0
    decoded = avro_codec.decode(data, OrderPlaced, topic=topic)
    assert decoded == OrderPlaced(order_id="o-1", qty=2)
    # Read by a newer model: the new field takes its default.
    assert avro_codec.decode(data, OrderPlacedV2, topic=topic).note == ""


async def test_json_schema_encode_and_decode(registry: ThreadedRegistry, subject: str) -> None:
    codec = JsonSchemaSerializer(registry.url)
    try:
        topic = subject.removesuffix("-value")
        data = codec.encode(Everything(name="n", count=1), topic=topic)
        assert data[0] == 0
        assert json.loads(data[5:])["name"] == "n"
        assert codec.decode(data, Everything, topic=topic) == Everything(name="n", count=1)
    finally:
        await codec.stop()


@pytest.mark.parametrize(
    ("payload", "error", "says"),
    [
        (b'{"order_id": "o"}', InvalidPayloadError, "Confluent wire format"),
        (b"\x00\x00", InvalidPayloadError, "Confluent wire format"),
        (b"\x00\x00\x0f\x42\x3f\x02", UnknownSchemaError, "999999"),
    ],
)
async def test_undecodable_payloads(
    avro_codec: AvroSerializer, payload: bytes, error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        avro_codec.decode(payload, OrderPlaced, topic="t")


async def test_payload_not_matching_the_model(avro_codec: AvroSerializer, subject: str) -> None:
    topic = subject.removesuffix("-value")
    data = avro_codec.encode(StockReserved(order_id="o-1"), topic=topic)
    with pytest.raises(InvalidPayloadError, match="not a valid OrderPlaced"):
        avro_codec.decode(data, OrderPlaced, topic=topic)


# ---------------------------------------------------------------------------- services


def cf_serializer(client: SchemaRegistryClient) -> Any:
    # Written by hand, as a team using plain confluent-kafka would.
    schema = {"type": "record", "name": "OrderPlaced", "namespace": "com.acme", "fields": [
        {"name": "order_id", "type": "string"}, {"name": "qty", "type": "int"}]}  # fmt: skip
    return CfAvro(client, json.dumps(schema))


def read_one(bootstrap: str, topic: str) -> tuple[bytes, list[tuple[str, Any]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        for _ in range(100):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                value = message.value()
                assert value is not None
                headers = message.headers() or []
                assert isinstance(headers, list)
                return value, headers
        raise AssertionError(f"nothing arrived on {topic}")
    finally:
        consumer.close()


@pytest.fixture
def settings(bootstrap_servers: str, tmp_path: Path) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap_servers,
        data_dir=tmp_path,
        commit_interval_ms=100,
        shutdown_timeout_s=10.0,
    )


async def test_a_service_and_plain_confluent_clients_exchange_avro(
    registry: ThreadedRegistry, bootstrap_servers: str, settings: Settings, subject: str
) -> None:
    orders, reserved = f"{subject}-orders", f"{subject}-reserved"
    received: asyncio.Queue[OrderPlaced] = asyncio.Queue()
    app = App("stock", serializers=[AvroSerializer(registry.url)])

    @app.handler(orders, publishes={reserved: StockReserved})
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish(reserved, StockReserved(order_id=event.order_id), key=event.order_id)
        await received.put(event)

    with SchemaRegistryClient({"url": registry.url}) as client:
        async with app.running(settings) as runtime:
            await runtime.wait_ready()
            # Rivulet registered what it publishes when it started.
            latest = client.get_latest_version(f"{reserved}-value")
            assert json.loads(latest.schema.schema_str)["name"] == "StockReserved"
            # A plain producer with Confluent's AvroSerializer, no CloudEvents headers.
            producer = Producer({"bootstrap.servers": bootstrap_servers})
            payload = cf_serializer(client)(
                {"order_id": "o-7", "qty": 3}, SerializationContext(orders, MessageField.VALUE)
            )
            producer.produce(orders, key=b"o-7", value=payload)
            assert producer.flush(10) == 0
            event = await asyncio.wait_for(received.get(), 30)
            assert event == OrderPlaced(order_id="o-7", qty=3)
            # A plain consumer with Confluent's AvroDeserializer reads what the service wrote.
            value, headers = await asyncio.to_thread(read_one, bootstrap_servers, reserved)
        decoded = AvroDeserializer(client)(
            value, SerializationContext(reserved, MessageField.VALUE)
        )
    assert decoded == {"order_id": "o-7"}
    assert ("content-type", AVRO_CONTENT_TYPE.encode()) in headers


async def test_unknown_schema_id_is_dead_lettered_with_the_reason(
    registry: ThreadedRegistry, bootstrap_servers: str, settings: Settings, subject: str
) -> None:
    orders = f"{subject}-orders"
    app = App("unknown-ids", serializers=[AvroSerializer(registry.url)])

    @app.handler(orders)
    async def never(event: OrderPlaced) -> None:
        raise AssertionError("an undecodable record reached the handler")

    async with app.running(settings) as runtime:
        await runtime.wait_ready()
        producer = Producer({"bootstrap.servers": bootstrap_servers})
        producer.produce(orders, value=b"\x00\x00\x0f\x42\x3f\x02ab")
        assert producer.flush(10) == 0
        value, headers = await asyncio.to_thread(read_one, bootstrap_servers, f"{orders}-dlt")
    assert value == b"\x00\x00\x0f\x42\x3f\x02ab"
    found = dict(headers)
    assert found["rivulet_dlt-reason"] == b"unknown-schema"
    assert b"schema id 999999" in found["kafka_dlt-exception-message"]


async def test_incompatible_schema_stops_the_start(
    registry: ThreadedRegistry, settings: Settings, subject: str
) -> None:
    topic = subject.removesuffix("-value")
    old = {"type": "record", "name": "OrderPlaced", "fields": [
        {"name": "order_id", "type": "long"}]}  # fmt: skip
    with SchemaRegistryClient({"url": registry.url}) as client:
        client.register_schema(subject, Schema(json.dumps(old), "AVRO"))
    app = App("incompatible", serializers=[AvroSerializer(registry.url)])
    app.publishes(topic, OrderPlaced)
    with pytest.raises(ConfigurationError, match="cannot be registered"):
        async with app.running(settings):
            pass


async def test_check_only_mode_needs_registered_schemas(
    registry: ThreadedRegistry, settings: Settings, subject: str
) -> None:
    topic = subject.removesuffix("-value")
    app = App("check-only", serializers=[AvroSerializer(registry.url, auto_register=False)])
    app.publishes(topic, OrderPlaced)
    with pytest.raises(ConfigurationError, match="is not registered"):
        async with app.running(settings):
            pass
    registering = App("registering", serializers=[AvroSerializer(registry.url)])
    registering.publishes(topic, OrderPlaced)
    async with registering.running(settings):
        pass
    async with app.running(settings):
        pass  # now it starts


def test_every_shop_event_has_a_schema_the_registry_accepts() -> None:
    import shop.events  # noqa: PLC0415 - the reference system's contract, as a real-world sample

    models = [
        m
        for m in vars(shop.events).values()
        if isinstance(m, type) and issubclass(m, Event) and m is not Event
    ]
    assert models
    for model in models:
        parsed(JsonSchemaSerializer("http://unused").schema_of(model))
        assert avro_schema_or_refusal(model) in {"valid", "refused"}


def avro_schema_or_refusal(model: type[Event]) -> str:
    try:
        parsed(AvroSerializer("http://unused").schema_of(model))
    except ConfigurationError as exc:
        return "refused" if "has no Avro equivalent" in str(exc) else str(exc)
    return "valid"
