"""The config table: validation, effective log settings, describe sources and synonyms."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.broker import BrokerConfig
from rivulet.broker.errors import ConfigError, InvalidConfigError
from rivulet.broker.topic_configs import (
    TOPIC_CONFIGS,
    ConfigSource,
    apply_overrides,
    describe_broker_configs,
    describe_topic_configs,
    validate_overrides,
)
from rivulet.storage import CleanupPolicy, LogConfig, TimestampType


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retention.ms", "-2"),
        ("retention.ms", "1.5"),
        ("segment.bytes", "10"),
        ("cleanup.policy", "keep"),
        ("cleanup.policy", ""),
        ("message.timestamp.type", "Now"),
        ("min.cleanable.dirty.ratio", "2"),
        ("preallocate", "yes"),
        ("max.message.bytes", str(2**31)),
        ("compression.type", "brotli"),
    ],
)
def test_bad_values_refused(name: str, value: str) -> None:
    with pytest.raises(InvalidConfigError, match=name.replace(".", r"\.")):
        validate_overrides({name: value})


def test_every_kafka_default_is_valid() -> None:
    validate_overrides({name: d.kafka_default for name, d in TOPIC_CONFIGS.items()})


def test_overrides_drive_the_log_config() -> None:
    config = apply_overrides(
        LogConfig(),
        {
            "cleanup.policy": "compact,delete",
            "message.timestamp.type": "LogAppendTime",
            "retention.bytes": "1000",
            "min.insync.replicas": "2",  # accepted, inert
        },
    )
    assert config.cleanup_policy == CleanupPolicy.COMPACT | CleanupPolicy.DELETE
    assert config.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert config.retention_bytes == 1000
    assert apply_overrides(config, {}) is config


@given(st.integers(-1, 2**62))
def test_retention_round_trips(value: int) -> None:
    assert (
        apply_overrides(LogConfig(), validate_overrides({"retention.ms": str(value)})).retention_ms
        == value
    )


def test_sources_and_synonyms() -> None:
    defaults = LogConfig(retention_ms=60_000)
    entries = {e.name: e for e in describe_topic_configs(defaults, {"cleanup.policy": "compact"})}
    assert set(entries) == set(TOPIC_CONFIGS)
    overridden = entries["cleanup.policy"]
    assert (overridden.value, overridden.source) == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert [s[2] for s in overridden.synonyms] == [
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
        ConfigSource.DEFAULT_CONFIG,
    ]
    from_broker = entries["retention.ms"]
    assert (from_broker.value, from_broker.source) == ("60000", ConfigSource.STATIC_BROKER_CONFIG)
    assert from_broker.synonyms[0] == (
        "log.retention.ms",
        "60000",
        ConfigSource.STATIC_BROKER_CONFIG,
    )
    default = entries["segment.bytes"]
    assert (default.value, default.source) == (str(1024**3), ConfigSource.DEFAULT_CONFIG)


def test_describe_selected_names_skips_unknown() -> None:
    entries = describe_topic_configs(LogConfig(), {}, ["retention.ms", "nope"])
    assert [e.name for e in entries] == ["retention.ms"]


def test_broker_configs_reflect_settings(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, num_partitions=4, port=19092)
    entries = {e.name: e for e in describe_broker_configs(config)}
    assert entries["num.partitions"].value == "4"
    assert entries["num.partitions"].source is ConfigSource.STATIC_BROKER_CONFIG
    assert entries["auto.create.topics.enable"].source is ConfigSource.DEFAULT_CONFIG
    assert entries["listeners"].value == "PLAINTEXT://127.0.0.1:19092"
    assert all(e.read_only for e in entries.values())


@pytest.mark.parametrize(
    "bad",
    [
        {"port": 70000},
        {"num_partitions": 0},
        {"socket_request_max_bytes": 10},
        {"node_id": -1},
        {"host": ""},
        {"retention_check_interval_ms": 0},
    ],
)
def test_broker_config_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BrokerConfig(**bad)  # type: ignore[arg-type]


def test_broker_config_client_host() -> None:
    assert BrokerConfig(host="0.0.0.0").client_host == "127.0.0.1"
    assert BrokerConfig(host="0.0.0.0", advertised_host="kafka").client_host == "kafka"
    assert BrokerConfig().replace(port=0).port == 0
