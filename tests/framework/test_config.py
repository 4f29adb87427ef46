"""Settings from the environment and a TOML file, built once at the edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from rivulet import ConfigurationError, Settings


def test_defaults() -> None:
    settings = Settings.from_sources({})
    assert settings == Settings()
    assert settings.bootstrap_servers is None
    assert settings.database_url_for("inventory") == "sqlite:///.rivulet/inventory.db"


def test_environment_variables_are_typed() -> None:
    settings = Settings.from_sources(
        {
            "RIVULET_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
            "RIVULET_DATABASE_URL": "postgresql://db/shop",
            "RIVULET_DATA_DIR": "/var/lib/rivulet",
            "RIVULET_MAX_IN_FLIGHT": "250",
            "RIVULET_HANDLER_TIMEOUT_S": "2.5",
            "RIVULET_OUTBOX_RELAY": "false",
            "RIVULET_LOG_FORMAT": "json",
            "RIVULET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "RIVULET_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "RIVULET_SOMETHING_ELSE": "ignored: other tools share the prefix",
            "PATH": "/bin",
        }
    )
    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.database_url_for("x") == "postgresql://db/shop"
    assert settings.data_dir == Path("/var/lib/rivulet")
    assert settings.max_in_flight == 250
    assert settings.handler_timeout_s == 2.5
    assert settings.outbox_relay is False
    assert settings.log_format == "json"
    assert dict(settings.kafka) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
    }


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    config = tmp_path / "rivulet.toml"
    config.write_text(
        'bootstrap_servers = "file:9092"\n'
        "max_in_flight = 100\n"
        "commit_interval_ms = 250\n"
        "[kafka]\n"
        '"linger.ms" = 5\n'
        '"enable.ssl.certificate.verification" = false\n'
    )
    settings = Settings.from_sources({"RIVULET_CONFIG": str(config), "RIVULET_MAX_IN_FLIGHT": "7"})
    assert settings.bootstrap_servers == "file:9092"
    assert settings.max_in_flight == 7  # the environment wins
    assert settings.commit_interval_ms == 250
    assert dict(settings.kafka) == {
        "linger.ms": "5",
        "enable.ssl.certificate.verification": "false",
    }


def test_empty_value_clears_an_optional_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('bootstrap_servers = "file:9092"\n')
    settings = Settings.from_sources({"RIVULET_BOOTSTRAP_SERVERS": ""}, config_file=config)
    assert settings.bootstrap_servers is None


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RIVULET_MAX_IN_FLIGHT": "many"}, "RIVULET_MAX_IN_FLIGHT='many'"),
        ({"RIVULET_OUTBOX_RELAY": "maybe"}, "true or false"),
        ({"RIVULET_LOG_FORMAT": "xml"}, "one of text, json"),
        ({"RIVULET_MAX_IN_FLIGHT": "0"}, "at least 1"),
        ({"RIVULET_CONFIG": "/nonexistent/rivulet.toml"}, "does not exist"),
    ],
)
def test_bad_values_say_what_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_sources(environ)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_inflight = 5\n", "unknown settings \\['max_inflight'\\]"),
        ("max_in_flight = 1.5\n", "expected int"),
        ("max_in_flight = = 1\n", "not valid TOML"),
        ("kafka = 3\n", "must be a table"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_sources({}, config_file=config)


def test_settings_are_frozen_and_replaceable() -> None:
    settings = Settings(kafka={"a": "1"})
    with pytest.raises(AttributeError):
        settings.max_in_flight = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.kafka["b"] = "2"  # type: ignore[index]
    changed = settings.replace(max_in_flight=3)
    assert (changed.max_in_flight, settings.max_in_flight) == (3, 10_000)


def test_load_reads_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVULET_BOOTSTRAP_SERVERS", "env:9092")
    assert Settings.load().bootstrap_servers == "env:9092"
