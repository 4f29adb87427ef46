"""Avro and JSON Schema payloads for Rivulet events, through a schema registry.

Payloads use Confluent's wire format, so any Confluent-compatible client reads what a
Rivulet service writes and the other way round::

    byte 0      magic byte 0
    bytes 1-4   schema id, big-endian
    bytes 5-    the Avro binary encoding (AvroSerializer) or JSON text (JsonSchemaSerializer)

Use one in an app, and mark the events it encodes with its content type::

    avro = AvroSerializer("http://127.0.0.1:8081")
    app = App("orders", serializers=[JsonSerializer(), avro])

    class OrderPlaced(Event, content_type=AVRO_CONTENT_TYPE):
        order_id: str

(or make it the app's first serializer: the default for every event). When the app
starts, the serializer registers the schema of every event the app publishes (its
topology's ``publishes``) under the subject its strategy names; with
``auto_register=False`` (production) it only checks that each is registered, and the
app fails to start if one is not. Schemas come from the models (``_derive``).

Decoding reads the schema id, fetches the writer's schema once per id, decodes with it
and validates into the handler's model. A payload whose schema id the registry does not
know raises :class:`UnknownSchemaError`, which dead-letters the record with the reason.
When the registry cannot be reached, decoding raises :class:`RegistryUnavailableError`:
the consumer stops without committing, and the record is read again after a restart.

Cache misses (a schema id not seen yet, an event published to an undeclared topic) call
the registry synchronously, as Confluent's serializers do; so the registry must not run
on the app's own event loop (run it as its own process or thread).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar

import fastavro
import pydantic

from rivulet.framework import ConfigurationError, Event, InvalidPayloadError
from rivulet.registry._avro import AvroSchema, parse_avro
from rivulet.registry._derive import avro_schema_for, json_schema_for, record_name
from rivulet.registry._model import AVRO, JSON, Reference, SchemaText
from rivulet.registry.client import (
    RegistryClient,
    RegistryClientError,
    RegistryUnavailableError,
)

if TYPE_CHECKING:
    from rivulet.framework import Topology

__all__ = [
    "AVRO_CONTENT_TYPE",
    "JSON_SCHEMA_CONTENT_TYPE",
    "MAGIC_BYTE",
    "REGISTRY_URL_ENV",
    "AvroSerializer",
    "JsonSchemaSerializer",
    "PlannedSchema",
    "RegistrySerializer",
    "RegistryUnavailableError",
    "SubjectStrategy",
    "UnknownSchemaError",
]

MAGIC_BYTE: Final = 0
#: Content type of Confluent-framed Avro payloads.
AVRO_CONTENT_TYPE: Final = "application/avro"
#: Content type of Confluent-framed JSON payloads validated by a JSON Schema.
JSON_SCHEMA_CONTENT_TYPE: Final = "application/schema-instance+json"
#: Where serializers built without a URL find the registry.
REGISTRY_URL_ENV: Final = "RIVULET_SCHEMA_REGISTRY_URL"

#: ``topic``: ``<topic>-value`` (Confluent's default); ``record``: the record name;
#: ``topic_record``: ``<topic>-<record name>`` (for topics carrying several event types).
SubjectStrategy = Literal["topic", "record", "topic_record"]

E = TypeVar("E", bound=Event)


class UnknownSchemaError(InvalidPayloadError):
    """The payload names a schema id the registry does not know (dead-lettered)."""

    reason = "unknown-schema"


@dataclass(frozen=True, slots=True)
class PlannedSchema:
    """A schema an app's event uses: where it is registered and what it is."""

    subject: str
    topic: str
    model: type[Event]
    text: SchemaText
    #: The app publishes it (so registers it); otherwise it only consumes it.
    produced: bool


class RegistrySerializer:
    """What Avro and JSON Schema serializers share: ids, subjects, the wire format."""

    schema_type: ClassVar[str]
    default_content_type: ClassVar[str]

    def __init__(
        self,
        registry: str | RegistryClient | None = None,
        *,
        subject_strategy: SubjectStrategy = "topic",
        auto_register: bool = True,
        content_type: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if subject_strategy not in ("topic", "record", "topic_record"):
            raise ConfigurationError(
                f"subject_strategy {subject_strategy!r}: use topic, record or topic_record"
            )
        url = registry if registry is not None else os.environ.get(REGISTRY_URL_ENV)
        self._client = RegistryClient(url, timeout_s=timeout_s) if isinstance(url, str) else url
        self.subject_strategy = subject_strategy
        self.auto_register = auto_register
        self._content_type = content_type or self.default_content_type
        self._ids: dict[tuple[str, type[Event]], int] = {}
        self._writers: dict[int, Any] = {}
        self._schemas: dict[type[Event], SchemaText] = {}

    # ----------------------------------------------------------------- identity

    @property
    def content_type(self) -> str:
        """The ``content-type`` header value of this serializer's records."""
        return self._content_type

    @property
    def client(self) -> RegistryClient:
        """The registry client (a URL must have been given or be in the environment)."""
        if self._client is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no schema registry URL: pass one "
                f"({type(self).__name__}('http://host:8081')) or set {REGISTRY_URL_ENV}"
            )
        return self._client

    def schema_of(self, model: type[Event]) -> SchemaText:
        """The schema ``model``'s events are registered with."""
        found = self._schemas.get(model)
        if found is None:
            document = self._derive(model)
            found = SchemaText(self.schema_type, json.dumps(document, separators=(",", ":")))
            self._schemas[model] = found
        return found

    def subject(self, topic: str, model: type[Event]) -> str:
        """The subject of ``model``'s schema on ``topic``, by the subject strategy."""
        if self.subject_strategy == "topic":
            return f"{topic}-value"
        name = self._record_name(model)
        return name if self.subject_strategy == "record" else f"{topic}-{name}"

    def plan(
        self, topology: Topology, *, default: bool, every_event: bool = False
    ) -> list[PlannedSchema]:
        """The schemas of the app's events this serializer encodes (or of all, if asked)."""
        planned: dict[tuple[str, str], PlannedSchema] = {}
        for topic in topology.topics:
            if topic.role != "events":
                continue
            for event_type in topic.event_types:
                model = topology.events[event_type]
                wanted = model.__content_type__
                mine = wanted == self.content_type or (wanted is None and default)
                if not (mine or every_event):
                    continue
                subject = self.subject(topic.name, model)
                planned[(subject, event_type)] = PlannedSchema(
                    subject, topic.name, model, self.schema_of(model), topic.produced
                )
        return list(planned.values())

    # ----------------------------------------------------------------- lifecycle

    async def start(self, topology: Topology, *, default: bool) -> None:
        """Register (or, with ``auto_register=False``, check) the schemas the app publishes.

        Called by the framework when the app starts; raises ConfigurationError, which
        stops the start, when a schema is incompatible or not registered.
        """
        client = self.client
        for planned in self.plan(topology, default=default):
            if not planned.produced:
                continue
            name = planned.model.__qualname__
            try:
                if self.auto_register:
                    schema_id: int | None = await client.register(planned.subject, planned.text)
                else:
                    schema_id = await client.lookup(planned.subject, planned.text)
            except RegistryClientError as exc:
                raise ConfigurationError(
                    f"the schema of {name} cannot be registered under {planned.subject!r} "
                    f"at {client.url}: {exc.message}"
                ) from None
            except RegistryUnavailableError as exc:
                raise ConfigurationError(str(exc)) from None
            if schema_id is None:
                raise ConfigurationError(
                    f"the schema of {name} is not registered under {planned.subject!r} at "
                    f"{client.url}; register it (rivulet schemas register) before deploying"
                )
            self._ids[(planned.subject, planned.model)] = schema_id

    async def stop(self) -> None:
        """Close the registry connections (called by the framework when the app stops)."""
        if self._client is not None:
            await self._client.aclose()

    # ----------------------------------------------------------------- encoding

    def encode(self, event: Event, *, topic: str) -> bytes:
        """Magic byte, schema id, then the payload."""
        model = type(event)
        subject = self.subject(topic, model)
        schema_id = self._ids.get((subject, model))
        if schema_id is None:
            schema_id = self._register_now(subject, model)
        return bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big") + self._payload(event)

    def _register_now(self, subject: str, model: type[Event]) -> int:
        if not self.auto_register:
            raise ConfigurationError(
                f"{model.__qualname__} on subject {subject!r} was not checked at start: declare "
                "the topic in the app's publishes, so its schema is checked when the app starts"
            )
        schema_id = self.client.register_sync(subject, self.schema_of(model))
        self._ids[(subject, model)] = schema_id
        return schema_id

    def decode(self, data: bytes, model: type[E], *, topic: str) -> E:
        """Read the schema id, decode with the writer's schema, validate into ``model``."""
        if len(data) < 5 or data[0] != MAGIC_BYTE:
            raise InvalidPayloadError(
                "payload is not in the Confluent wire format (magic byte 0, 4-byte schema id); "
                f"it starts with {bytes(data[:5])!r}"
            )
        schema_id = int.from_bytes(data[1:5], "big")
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._fetch_writer(schema_id)
        try:
            return self._read(writer, memoryview(data)[5:], model)
        except pydantic.ValidationError as exc:
            raise InvalidPayloadError(
                f"payload (schema id {schema_id}) is not a valid {model.__event_type__}: "
                f"{exc.error_count()} errors, first: {exc.errors(include_url=False)[0]['msg']}"
            ) from exc

    def _fetch_writer(self, schema_id: int) -> Any:
        client = self.client
        try:
            text = client.schema_sync(schema_id)
        except RegistryClientError as exc:
            if exc.error_code == 40403:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is not in the schema registry at {client.url}: "
                    "the record was written with a schema this registry does not know"
                ) from None
            raise
        if text.schema_type != self.schema_type:
            raise InvalidPayloadError(
                f"schema id {schema_id} is a {text.schema_type} schema; "
                f"{type(self).__name__} reads {self.schema_type}"
            )
        writer = self._prepare_writer(text, self._reference_fetcher())
        self._writers[schema_id] = writer
        return writer

    def _reference_fetcher(self) -> Callable[[Reference], SchemaText]:
        client = self.client

        def fetch(ref: Reference) -> SchemaText:
            return client.version_sync(ref.subject, ref.version)

        return fetch

    # ----------------------------------------------------------------- per format

    def _derive(self, model: type[Event]) -> dict[str, Any]:
        raise NotImplementedError

    def _record_name(self, model: type[Event]) -> str:
        return record_name(model)

    def _payload(self, event: Event) -> bytes:
        raise NotImplementedError

    def _prepare_writer(self, text: SchemaText, fetch: Callable[[Reference], SchemaText]) -> Any:
        raise NotImplementedError

    def _read(self, writer: Any, payload: memoryview, model: type[E]) -> E:
        raise NotImplementedError


class AvroSerializer(RegistrySerializer):
    """Avro binary payloads (fastavro), schemas derived from the event models."""

    schema_type = AVRO
    default_content_type = AVRO_CONTENT_TYPE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own: dict[type[Event], AvroSchema] = {}

    def _derive(self, model: type[Event]) -> dict[str, Any]:
        return avro_schema_for(model)

    def _record_name(self, model: type[Event]) -> str:
        document = json.loads(self.schema_of(model).schema)
        name = document.get("name", record_name(model)) if isinstance(document, dict) else None
        namespace = document.get("namespace") if isinstance(document, dict) else None
        if not isinstance(name, str):
            return record_name(model)
        return f"{namespace}.{name}" if namespace and "." not in name else name

    def _own_schema(self, model: type[Event]) -> AvroSchema:
        found = self._own.get(model)
        if found is None:
            found = parse_avro(self.schema_of(model), self._reference_fetcher())
            self._own[model] = found
        return found

    def _payload(self, event: Event) -> bytes:
        buffer = io.BytesIO()
        schema = self._own_schema(type(event))
        fastavro.schemaless_writer(buffer, schema.parsed, event.model_dump(mode="json"))
        return buffer.getvalue()

    def _prepare_writer(self, text: SchemaText, fetch: Callable[[Reference], SchemaText]) -> Any:
        return parse_avro(text, fetch).parsed

    def _read(self, writer: Any, payload: memoryview, model: type[E]) -> E:
        try:
            value = fastavro.schemaless_reader(io.BytesIO(payload), writer, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise InvalidPayloadError(f"payload is not valid Avro for its schema: {exc!r}") from exc
        return model.model_validate(value)


class JsonSchemaSerializer(RegistrySerializer):
    """JSON payloads (pydantic's encoder) registered with JSON Schemas of the models."""

    schema_type = JSON
    default_content_type = JSON_SCHEMA_CONTENT_TYPE

    def _derive(self, model: type[Event]) -> dict[str, Any]:
        return json_schema_for(model)

    def _payload(self, event: Event) -> bytes:
        return type(event).__pydantic_serializer__.to_json(event)

    def _prepare_writer(self, text: SchemaText, fetch: Callable[[Reference], SchemaText]) -> Any:
        # Validation is the model's: the writer's schema only has to exist and be JSON.
        return text

    def _read(self, writer: Any, payload: memoryview, model: type[E]) -> E:
        return model.model_validate_json(bytes(payload))
