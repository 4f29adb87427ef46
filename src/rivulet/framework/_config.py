"""Settings: one frozen, typed object built at the edge from the environment and a file.

Sources, highest precedence first:

1. environment variables ``RIVULET_<SETTING>`` (``RIVULET_BOOTSTRAP_SERVERS``,
   ``RIVULET_DATABASE_URL``, ...) and ``RIVULET_KAFKA_<PROPERTY>`` for client
   properties (``RIVULET_KAFKA_SECURITY_PROTOCOL=SSL`` sets ``security.protocol``);
2. a TOML file named by ``RIVULET_CONFIG`` (or passed explicitly), whose top-level keys
   are the setting names and whose ``[kafka]`` table holds client properties;
3. the defaults below.

Only :meth:`Settings.load` and :meth:`Settings.from_sources` look at the environment;
the CLI, ``App.run()`` and the test fixtures call them once and pass the result down.

>>> s = Settings.from_sources({"RIVULET_BOOTSTRAP_SERVERS": "kafka:9092",
...                            "RIVULET_MAX_IN_FLIGHT": "500",
...                            "RIVULET_KAFKA_SECURITY_PROTOCOL": "SSL"})
>>> s.bootstrap_servers, s.max_in_flight, dict(s.kafka)
('kafka:9092', 500, {'security.protocol': 'SSL'})
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from rivulet.framework._errors import ConfigurationError

__all__ = ["Settings"]

_PREFIX = "RIVULET_"
_KAFKA_PREFIX = "RIVULET_KAFKA_"


def _frozen_mapping(value: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return types.MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a running app reads from its environment.

    Build it with :meth:`load` (environment plus optional file) or construct it
    directly in tests.
    """

    #: Kafka bootstrap servers; ``None`` starts the embedded broker in-process.
    bootstrap_servers: str | None = None
    #: ``sqlite:///path.db`` or ``postgresql://...``; ``None``: ``<data_dir>/<app>.db``.
    database_url: str | None = None
    #: Where the embedded broker and the default SQLite database keep their files.
    data_dir: Path = Path(".rivulet")
    #: ``host:port`` of the HTTP endpoint (``/metrics``, ``/healthz``, ``/readyz``).
    http_listen: str | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    #: Records fetched but not finished, per consumer, before its partitions are paused.
    max_in_flight: int = 10_000
    #: Offsets are committed at least this often while records complete.
    commit_interval_ms: int = 1_000
    #: Default time limit of one handler call; a hung handler counts as failed.
    handler_timeout_s: float = 60.0
    #: SIGTERM: how long in-flight records get to finish before the process exits.
    shutdown_timeout_s: float = 30.0
    #: Create missing topics of the app's topology at start (off where Strimzi manages them).
    create_topics: bool = True
    #: Run the polling outbox relay (turn off when a CDC connector such as Debezium relays).
    outbox_relay: bool = True
    outbox_poll_interval_ms: int = 1_000
    #: How long processed-event records are kept for deduplication.
    processed_retention_ms: int = 7 * 24 * 3600 * 1000
    #: Extra librdkafka properties for every client (security, tuning).
    kafka: Mapping[str, str] = field(default_factory=_frozen_mapping)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kafka", _frozen_mapping(self.kafka))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        if self.commit_interval_ms < 0 or self.outbox_poll_interval_ms < 1:
            raise ConfigurationError("commit and outbox intervals must be positive")
        if self.handler_timeout_s <= 0 or self.shutdown_timeout_s < 0:
            raise ConfigurationError("handler_timeout_s must be > 0, shutdown_timeout_s >= 0")

    @classmethod
    def load(cls, config_file: str | Path | None = None) -> Settings:
        """Settings from this process's environment (and ``RIVULET_CONFIG`` or ``config_file``)."""
        return cls.from_sources(os.environ, config_file=config_file)

    @classmethod
    def from_sources(
        cls, environ: Mapping[str, str], *, config_file: str | Path | None = None
    ) -> Settings:
        """Settings from an environment mapping and an optional TOML file."""
        values: dict[str, Any] = {}
        kafka: dict[str, str] = {}
        path = config_file if config_file is not None else environ.get(f"{_PREFIX}CONFIG")
        if path:
            file_values = _read_file(Path(path))
            kafka.update(_kafka_table(file_values.pop("kafka", {}), Path(path)))
            for name, raw in file_values.items():
                values[name] = _convert(name, raw, f"{path}: {name}")
        for env_name, raw in environ.items():
            if env_name.startswith(_KAFKA_PREFIX):
                prop = env_name[len(_KAFKA_PREFIX) :].lower().replace("_", ".")
                kafka[prop] = raw
            elif env_name.startswith(_PREFIX) and env_name != f"{_PREFIX}CONFIG":
                name = env_name[len(_PREFIX) :].lower()
                if name in _FIELDS:
                    values[name] = _convert(name, raw, env_name)
        return cls(**values, kafka=kafka)

    def database_url_for(self, app_name: str) -> str:
        """The database URL an app uses: the configured one, or its own SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / (app_name + '.db')}"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


_FIELDS: dict[str, Any] = {f.name: f for f in dataclasses.fields(Settings) if f.name != "kafka"}
_HINTS = typing.get_type_hints(Settings)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist (RIVULET_CONFIG)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_FIELDS) - {"kafka"})
    if unknown:
        raise ConfigurationError(
            f"config file {path} has unknown settings {unknown}; known: {sorted(_FIELDS)}"
        )
    return data


def _kafka_table(table: object, path: Path) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [kafka] must be a table of client properties")
    return {str(k): _scalar_text(v) for k, v in table.items()}


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _convert(name: str, raw: object, where: str) -> Any:
    hint = _HINTS[name]
    optional = False
    if get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if optional and isinstance(raw, str) and raw == "":
        return None
    try:
        if get_origin(hint) is Literal:
            return _choice(raw, get_args(hint))
        if hint is bool:
            return _bool(raw)
        if hint is int and isinstance(raw, int | str) and not isinstance(raw, bool):
            return int(raw)
        if hint is float and isinstance(raw, int | float | str) and not isinstance(raw, bool):
            return float(raw)
        if hint is Path:
            return Path(str(raw))
        if hint is str:
            return str(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{where}={raw!r}: {exc}") from None
    raise ConfigurationError(f"{where}={raw!r}: expected {getattr(hint, '__name__', hint)}")


def _choice(raw: object, choices: tuple[object, ...]) -> object:
    if raw not in choices:
        raise ValueError(f"expected one of {', '.join(map(str, choices))}")
    return raw


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")
