"""OpenTelemetry spans per handled record, when the service configured an SDK.

Each handled record gets a CONSUMER span ``process <topic>`` whose parent is the
record's ``traceparent``, with the messaging semantic-convention attributes; events
the handler publishes carry that span's context, so a trace follows an order through
every service. Without an SDK tracer provider (OpenTelemetry's default proxy), nothing
is created and the framework propagates ``traceparent`` on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from rivulet.framework._wire import ConsumedRecord, Envelope

__all__ = ["Tracing"]

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """Creates spans through the global tracer provider, if one is configured."""

    def __init__(self) -> None:
        self._tracer: trace.Tracer | None = None

    def enabled(self) -> bool:
        """Whether an SDK tracer provider is configured (so spans would be recorded)."""
        return self._active_tracer() is not None

    def _active_tracer(self) -> trace.Tracer | None:
        if self._tracer is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                return None
            self._tracer = provider.get_tracer("rivulet.framework")
        return self._tracer

    @contextmanager
    def process(
        self, record: ConsumedRecord, envelope: Envelope, group: str, handler: str
    ) -> Iterator[str | None]:
        """A span around handling ``record``; yields its ``traceparent`` (``None``: no SDK)."""
        tracer = self._active_tracer()
        if tracer is None:
            yield None
            return
        carrier = {"traceparent": envelope.traceparent} if envelope.traceparent else {}
        parent = _PROPAGATOR.extract(carrier)
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group,
            "messaging.message.id": envelope.id,
            "rivulet.handler": handler,
        }
        if envelope.type:
            attributes["cloudevents.event_type"] = envelope.type
        if envelope.correlation_id:
            attributes["rivulet.correlation_id"] = envelope.correlation_id
        if record.key is not None:
            attributes["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
        with tracer.start_as_current_span(
            f"process {record.topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            outgoing: dict[str, str] = {}
            _PROPAGATOR.inject(outgoing)
            try:
                yield outgoing.get("traceparent")
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
                raise
