"""A schema registry speaking the Confluent Schema Registry REST API and wire format.

Schemas (Avro and JSON Schema) are registered under subjects, checked for compatibility
(:mod:`rivulet.registry.compatibility`) and kept in a compacted Kafka topic, so the
registry itself is stateless. Run it with ``rivulet registry`` or in-process::

    async with RegistryServer(RegistrySettings(bootstrap_servers="127.0.0.1:9092")) as srv:
        ...  # srv.url

Services encode events through it with :mod:`rivulet.registry.serde` (Avro or JSON
Schema, Confluent framing), and ``rivulet schemas check`` gates deployments on it.
See docs/registry.md for the parts of the Confluent API implemented.
"""

from __future__ import annotations

from rivulet.registry._errors import RegistryError
from rivulet.registry._server import RegistryServer, RegistrySettings, ThreadedRegistry
from rivulet.registry.client import RegistryClient, RegistryClientError, RegistryUnavailableError
from rivulet.registry.compatibility import Compatibility

__all__ = [
    "Compatibility",
    "RegistryClient",
    "RegistryClientError",
    "RegistryError",
    "RegistryServer",
    "RegistrySettings",
    "RegistryUnavailableError",
    "ThreadedRegistry",
]
