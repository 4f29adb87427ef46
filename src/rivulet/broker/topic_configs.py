"""Topic and broker configuration entries, as Kafka names and describes them.

One table, :data:`TOPIC_CONFIGS`, lists every topic config Kafka knows. Each entry
says how to validate a value, which broker setting is its default (its
*synonym*, e.g. ``retention.ms`` falls back to ``log.retention.ms``) and, for the
configs Rivulet acts on, which :class:`~rivulet.storage.base.LogConfig` field it
drives. Configs Rivulet has no use for on a single node (``min.insync.replicas``,
``compression.type``, throttles, tiered storage ...) are accepted, validated,
stored and described, so tools written for Kafka keep working, but change nothing.

Values are kept as strings, as Kafka keeps them; only the effective
:class:`LogConfig` holds parsed values.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rivulet.broker.config import BrokerConfig
from rivulet.broker.errors import InvalidConfigError
from rivulet.storage.base import CleanupPolicy, LogConfig, TimestampType

__all__ = [
    "TOPIC_CONFIGS",
    "ConfigEntry",
    "ConfigSource",
    "ConfigType",
    "TopicConfigDef",
    "apply_overrides",
    "describe_broker_configs",
    "describe_topic_configs",
    "format_cleanup_policy",
    "validate_overrides",
]

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


class ConfigType(enum.IntEnum):
    """``config_type`` in DescribeConfigs v3+."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(enum.IntEnum):
    """``config_source`` in DescribeConfigs v1+."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


Parser = Callable[[str], object]
_Number = TypeVar("_Number", int, float)


def _ranged(convert: Callable[[str], _Number], noun: str, low: _Number, high: _Number) -> Parser:
    """A parser of numbers (``convert``: int or float) within ``[low, high]``."""

    def parse(value: str) -> _Number:
        try:
            number = convert(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not {noun}") from None
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range [{low}, {high}]")
        return number

    return parse


def _long(low: int = -(2**63), high: int = _INT64_MAX) -> Parser:
    return _ranged(int, "an integer", low, high)


def _int(low: int = -(2**31)) -> Parser:
    return _long(low, _INT32_MAX)


def _double(low: float, high: float) -> Parser:
    return _ranged(float, "a number", low, high)


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{value!r} is not true or false")
    return lowered == "true"


def _choice(*choices: str) -> Parser:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _any_string(value: str) -> str:
    return value


def _cleanup_policy(value: str) -> CleanupPolicy:
    return CleanupPolicy.parse(value)


def format_cleanup_policy(policy: CleanupPolicy) -> str:
    """Kafka's spelling of a cleanup policy (``delete``, ``compact``, ``compact,delete``)."""
    parts = [
        name
        for name, flag in (("compact", CleanupPolicy.COMPACT), ("delete", CleanupPolicy.DELETE))
        if flag in policy
    ]
    return ",".join(parts)


def _format_log_value(value: object) -> str:
    if isinstance(value, CleanupPolicy):
        return format_cleanup_policy(value)
    if isinstance(value, TimestampType):
        return value.value
    return str(value)


@dataclass(frozen=True, slots=True)
class TopicConfigDef:
    """One topic config: its name, type, default and what it drives."""

    name: str
    type: ConfigType
    parse: Parser
    kafka_default: str
    broker_name: str | None = None
    """The broker setting that supplies the default (Kafka's synonym)."""
    log_field: str | None = None
    """The :class:`LogConfig` field it drives; ``None`` when accepted but inert."""
    doc: str = ""

    def broker_default(self, defaults: LogConfig) -> str:
        """The value a topic without an override has on this broker."""
        if self.log_field is None:
            return self.kafka_default
        return _format_log_value(getattr(defaults, self.log_field))


def _def(  # noqa: PLR0917 - a table row reads best positionally
    name: str,
    type_: ConfigType,
    parse: Parser,
    default: str,
    broker: str | None = None,
    field: str | None = None,
    doc: str = "",
) -> TopicConfigDef:
    return TopicConfigDef(name, type_, parse, default, broker, field, doc)


_LONG, _INT, _BOOL, _STR, _LIST, _DOUBLE = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.LIST,
    ConfigType.DOUBLE,
)
_DAY = str(24 * 3600 * 1000)
_WEEK = str(7 * 24 * 3600 * 1000)
_NEVER = str(_INT64_MAX)

TOPIC_CONFIGS: Mapping[str, TopicConfigDef] = {
    d.name: d
    for d in (
        _def("cleanup.policy", _LIST, _cleanup_policy, "delete", "log.cleanup.policy",
             "cleanup_policy", "delete, compact, or compact,delete."),
        _def("compression.type", _STR,
             _choice("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"), "producer",
             "compression.type", None, "Batches are always stored as the producer sent them."),
        _def("compression.gzip.level", _INT, _int(-1), "-1", "compression.gzip.level"),
        _def("compression.lz4.level", _INT, _int(1), "9", "compression.lz4.level"),
        _def("compression.zstd.level", _INT, _int(-131072), "3", "compression.zstd.level"),
        _def("delete.retention.ms", _LONG, _long(0), _DAY, "log.cleaner.delete.retention.ms",
             "delete_retention_ms", "How long tombstones survive compaction."),
        _def("file.delete.delay.ms", _LONG, _long(0), "60000", "log.segment.delete.delay.ms"),
        _def("flush.messages", _LONG, _long(1), _NEVER, "log.flush.interval.messages"),
        _def("flush.ms", _LONG, _long(0), _NEVER, "log.flush.interval.ms"),
        _def("follower.replication.throttled.replicas", _LIST, _any_string, "",
             "follower.replication.throttled.replicas"),
        _def("index.interval.bytes", _INT, _int(0), "4096", "log.index.interval.bytes",
             "index_interval_bytes"),
        _def("leader.replication.throttled.replicas", _LIST, _any_string, "",
             "leader.replication.throttled.replicas"),
        _def("local.retention.bytes", _LONG, _long(-2), "-2", "log.local.retention.bytes"),
        _def("local.retention.ms", _LONG, _long(-2), "-2", "log.local.retention.ms"),
        _def("max.compaction.lag.ms", _LONG, _long(1), _NEVER, "log.cleaner.max.compaction.lag.ms"),
        _def("max.message.bytes", _INT, _int(0), str(1024 * 1024 + 12), "message.max.bytes",
             "max_message_bytes", "Largest record batch a producer may send."),
        _def("message.downconversion.enable", _BOOL, _boolean, "true",
             "log.message.downconversion.enable"),
        _def("message.timestamp.after.max.ms", _LONG, _long(0), _NEVER,
             "log.message.timestamp.after.max.ms"),
        _def("message.timestamp.before.max.ms", _LONG, _long(0), _NEVER,
             "log.message.timestamp.before.max.ms"),
        _def("message.timestamp.difference.max.ms", _LONG, _long(0), _NEVER,
             "log.message.timestamp.difference.max.ms"),
        _def("message.timestamp.type", _STR, _choice("CreateTime", "LogAppendTime"),
             "CreateTime", "log.message.timestamp.type", "timestamp_type"),
        _def("min.cleanable.dirty.ratio", _DOUBLE, _double(0.0, 1.0), "0.5",
             "log.cleaner.min.cleanable.ratio"),
        _def("min.compaction.lag.ms", _LONG, _long(0), "0", "log.cleaner.min.compaction.lag.ms",
             "min_compaction_lag_ms"),
        _def("min.insync.replicas", _INT, _int(1), "1", "min.insync.replicas"),
        _def("preallocate", _BOOL, _boolean, "false", "log.preallocate"),
        _def("remote.storage.enable", _BOOL, _boolean, "false", None),
        _def("retention.bytes", _LONG, _long(-1), "-1", "log.retention.bytes",
             "retention_bytes", "Size above which old segments are deleted; -1: no limit."),
        _def("retention.ms", _LONG, _long(-1), _WEEK, "log.retention.ms", "retention_ms",
             "Age after which old segments are deleted; -1: no limit."),
        _def("segment.bytes", _INT, _int(14), str(1024**3), "log.segment.bytes",
             "segment_bytes"),
        _def("segment.index.bytes", _INT, _int(4), str(10 * 1024 * 1024),
             "log.index.size.max.bytes", "segment_index_bytes"),
        _def("segment.jitter.ms", _LONG, _long(0), "0", "log.roll.jitter.ms"),
        _def("segment.ms", _LONG, _long(1), _WEEK, "log.roll.ms", "segment_ms"),
        _def("unclean.leader.election.enable", _BOOL, _boolean, "false",
             "unclean.leader.election.enable"),
    )
}  # fmt: skip


def _log_value(definition: TopicConfigDef, value: str) -> object:
    parsed = definition.parse(value)
    if definition.log_field == "timestamp_type":
        return TimestampType(parsed)
    return parsed


def validate_overrides(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check topic config overrides; return them as a plain dict.

    Raises :class:`InvalidConfigError` naming the first bad entry.
    """
    checked: dict[str, str] = {}
    for name, value in configs.items():
        definition = TOPIC_CONFIGS.get(name)
        if definition is None:
            raise InvalidConfigError(
                f"unknown topic config {name!r}; see Kafka's topic configs for valid names"
            )
        if value is None:
            raise InvalidConfigError(f"topic config {name!r} needs a value, not null")
        try:
            _log_value(definition, value)
        except ValueError as exc:
            raise InvalidConfigError(f"invalid value for topic config {name!r}: {exc}") from None
        checked[name] = value
    return checked


def apply_overrides(defaults: LogConfig, overrides: Mapping[str, str]) -> LogConfig:
    """The effective log settings of a topic with ``overrides`` on ``defaults``."""
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        definition = TOPIC_CONFIGS[name]
        if definition.log_field is not None:
            changes[definition.log_field] = _log_value(definition, value)
    return dataclasses.replace(defaults, **changes) if changes else defaults


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One described config, version-neutral (DescribeConfigs fills it per version)."""

    name: str
    value: str | None
    source: ConfigSource
    type: ConfigType
    read_only: bool = False
    is_sensitive: bool = False
    synonyms: tuple[tuple[str, str | None, ConfigSource], ...] = ()
    documentation: str | None = None


def describe_topic_configs(
    defaults: LogConfig, overrides: Mapping[str, str], names: Iterable[str] | None = None
) -> list[ConfigEntry]:
    """Describe a topic's configs: every known one, or just ``names`` (unknown skipped)."""
    wanted = TOPIC_CONFIGS.keys() if names is None else [n for n in names if n in TOPIC_CONFIGS]
    entries = []
    for name in wanted:
        definition = TOPIC_CONFIGS[name]
        broker_value = definition.broker_default(defaults)
        synonyms: list[tuple[str, str | None, ConfigSource]] = []
        if name in overrides:
            value, source = overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG
            synonyms.append((name, value, source))
        elif broker_value != definition.kafka_default:
            value, source = broker_value, ConfigSource.STATIC_BROKER_CONFIG
        else:
            value, source = broker_value, ConfigSource.DEFAULT_CONFIG
        if definition.broker_name is not None and broker_value != definition.kafka_default:
            synonyms.append(
                (definition.broker_name, broker_value, ConfigSource.STATIC_BROKER_CONFIG)
            )
        synonyms.append(
            (
                definition.broker_name or name,
                definition.kafka_default,
                ConfigSource.DEFAULT_CONFIG,
            )
        )
        entries.append(
            ConfigEntry(
                name=name,
                value=value,
                source=source,
                type=definition.type,
                synonyms=tuple(synonyms),
                documentation=definition.doc or None,
            )
        )
    return entries


_KAFKA_LOG_DIRS = "/tmp/kafka-logs"  # noqa: S108 - Kafka's default, only ever reported


def _broker_values(config: BrokerConfig) -> dict[str, tuple[str, str, ConfigType]]:
    """name -> (value on this broker, Kafka's default, type)."""
    log = config.log
    listener = f"PLAINTEXT://{config.host}:{config.port}"
    advertised = f"PLAINTEXT://{config.client_host}:{config.port}"
    return {
        "node.id": (str(config.node_id), "-1", _INT),
        "broker.id": (str(config.node_id), "-1", _INT),
        "log.dirs": (str(config.data_dir), _KAFKA_LOG_DIRS, _STR),
        "listeners": (listener, "PLAINTEXT://:9092", _LIST),
        "advertised.listeners": (advertised, "", _LIST),
        "auto.create.topics.enable": (str(config.auto_create_topics).lower(), "true", _BOOL),
        "num.partitions": (str(config.num_partitions), "1", _INT),
        "default.replication.factor": ("1", "1", _INT),
        "offsets.topic.replication.factor": ("1", "3", ConfigType.SHORT),
        "transaction.state.log.replication.factor": ("1", "3", ConfigType.SHORT),
        "min.insync.replicas": ("1", "1", _INT),
        "socket.request.max.bytes": (str(config.socket_request_max_bytes), str(100 * 2**20), _INT),
        "message.max.bytes": (str(log.max_message_bytes), str(2**20 + 12), _INT),
        "log.cleanup.policy": (format_cleanup_policy(log.cleanup_policy), "delete", _LIST),
        "log.retention.ms": (str(log.retention_ms), _WEEK, _LONG),
        "log.retention.bytes": (str(log.retention_bytes), "-1", _LONG),
        "log.segment.bytes": (str(log.segment_bytes), str(1024**3), _INT),
        "log.roll.ms": (str(log.segment_ms), _WEEK, _LONG),
        "log.index.size.max.bytes": (str(log.segment_index_bytes), str(10 * 2**20), _INT),
        "log.index.interval.bytes": (str(log.index_interval_bytes), "4096", _INT),
        "log.cleaner.delete.retention.ms": (str(log.delete_retention_ms), _DAY, _LONG),
        "log.cleaner.min.compaction.lag.ms": (str(log.min_compaction_lag_ms), "0", _LONG),
        "log.message.timestamp.type": (log.timestamp_type.value, "CreateTime", _STR),
        "log.retention.check.interval.ms": (
            str(config.retention_check_interval_ms),
            "300000",
            _LONG,
        ),
        "group.initial.rebalance.delay.ms": (
            str(config.group_initial_rebalance_delay_ms),
            "3000",
            _INT,
        ),
        "delete.topic.enable": ("true", "true", _BOOL),
    }


def describe_broker_configs(
    config: BrokerConfig, names: Iterable[str] | None = None
) -> list[ConfigEntry]:
    """Describe the broker's settings (all read-only: they are fixed at start-up)."""
    values = _broker_values(config)
    wanted = values.keys() if names is None else [n for n in names if n in values]
    entries = []
    for name in wanted:
        value, default, type_ = values[name]
        source = (
            ConfigSource.DEFAULT_CONFIG if value == default else ConfigSource.STATIC_BROKER_CONFIG
        )
        synonyms = [(name, value, source)]
        if source is not ConfigSource.DEFAULT_CONFIG:
            synonyms.append((name, default, ConfigSource.DEFAULT_CONFIG))
        entries.append(
            ConfigEntry(name, value, source, type_, read_only=True, synonyms=tuple(synonyms))
        )
    return entries
