"""``rivulet registry`` as a process, and ``rivulet schemas check|register`` as the CI gate."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from rivulet.cli.main import build_parser, main
from rivulet.cli.registry import registry_settings
from rivulet.registry import ThreadedRegistry


def test_registry_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIVULET_BOOTSTRAP_SERVERS", "kafka:9092")
    args = build_parser().parse_args(["registry"])
    assert (args.bootstrap_servers, args.listen, args.topic) == (
        "kafka:9092",
        ("127.0.0.1", 8081),
        "_schemas",
    )


def test_registry_needs_a_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RIVULET_BOOTSTRAP_SERVERS", raising=False)
    assert main(["registry"]) == 2
    assert "--bootstrap-servers" in capsys.readouterr().err


def test_registry_takes_the_kafka_client_settings_of_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "rivulet.toml"
    config.write_text('[kafka]\n"sasl.username" = "from-file"\n"client.id" = "registry-1"\n')
    environ = {
        "RIVULET_CONFIG": str(config),
        "RIVULET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "RIVULET_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "RIVULET_KAFKA_SASL_USERNAME": "schema-registry",
        "RIVULET_KAFKA_SASL_PASSWORD": "s3cret",
        "RIVULET_SCHEMA_REGISTRY_URL": "http://elsewhere:8081",  # not a client property
    }
    args = build_parser().parse_args(
        ["registry", "--bootstrap-servers", "kafka:9093", "--listen", "0.0.0.0:8082"]
    )
    settings = registry_settings(args, environ)
    assert (settings.bootstrap_servers, settings.host, settings.port) == (
        "kafka:9093",
        "0.0.0.0",
        8082,
    )
    assert dict(settings.kafka) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "schema-registry",  # the environment wins over the file
        "sasl.password": "s3cret",
        "client.id": "registry-1",
    }
    assert dict(registry_settings(args, {}).kafka) == {}


def test_registry_refuses_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RIVULET_MAX_IN_FLIGHT", "lots")
    assert main(["registry", "--bootstrap-servers", "127.0.0.1:9"]) == 2
    assert "RIVULET_MAX_IN_FLIGHT" in capsys.readouterr().err


def test_registry_serves_until_sigterm(bootstrap_servers: str) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rivulet.cli.main",
            "registry",
            "--bootstrap-servers",
            bootstrap_servers,
            "--listen",
            "127.0.0.1:0",
            "--topic",
            "_schemas_cli",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, line
        with httpx.Client(base_url=found.group(1)) as http:
            answer = http.post("/subjects/cli-value/versions", json={"schema": '"string"'})
            assert answer.json() == {"id": 1}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


APP = """
from rivulet import App, Event
from rivulet.registry.serde import AVRO_CONTENT_TYPE, AvroSerializer

class OrderPlaced(Event, content_type=AVRO_CONTENT_TYPE):
    order_id: str
{fields}

class Ping(Event):  # JSON, not through the registry: not checked
    n: int

app = App("{name}", serializers=[__import__("rivulet").framework.JsonSerializer(),
                                 AvroSerializer("http://unused")])
app.publishes("{topic}", OrderPlaced, Ping)
"""


def write_app(directory: Path, module: str, topic: str, fields: str) -> str:
    source = APP.format(name=module, topic=topic, fields=textwrap.indent(fields, "    "))
    (directory / f"{module}.py").write_text(source)
    return f"{module}:app"


def test_schemas_check_is_the_ci_gate(
    registry: ThreadedRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    subject: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RIVULET_SCHEMA_REGISTRY_URL", registry.url)
    topic = subject.removesuffix("-value")
    v1 = write_app(tmp_path, f"{topic}_v1", topic, "qty: int")
    assert main(["schemas", "check", v1]) == 0
    assert "NEW   " in capsys.readouterr().out
    assert main(["schemas", "register", v1]) == 0
    assert main(["schemas", "check", v1]) == 0
    assert "unchanged" in capsys.readouterr().out

    compatible = write_app(tmp_path, f"{topic}_v2", topic, 'qty: int\nnote: str = ""')
    assert main(["schemas", "check", compatible]) == 0
    assert "compatible (BACKWARD) with version 1" in capsys.readouterr().out

    breaking = write_app(tmp_path, f"{topic}_v3", topic, "qty: int\ncustomer: str")
    assert main(["schemas", "check", breaking]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {topic}-value (OrderPlaced, topic {topic})" in out
    assert "avro.reader-field-missing-default" in out
    assert "'customer'" in out
    assert '+      "name": "customer",' in out  # the diff against version 1
    assert "1 incompatible" in out
    assert main(["schemas", "register", breaking]) == 1


def test_schemas_check_without_registry_serializers(
    registry: ThreadedRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    subject: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    topic = subject.removesuffix("-value")
    module = f"{topic}_json"
    (tmp_path / f"{module}.py").write_text(
        "from rivulet import App, Event\n"
        "class Ping(Event):\n    n: int\n"
        f"app = App('plain')\napp.publishes('{topic}', Ping)\n"
    )
    assert main(["schemas", "check", f"{module}:app", "--registry", registry.url]) == 0
    assert "nothing to check" in capsys.readouterr().out
    args = ["schemas", "check", f"{module}:app", "--registry", registry.url, "--format", "json"]
    assert main(args) == 0
    assert f"NEW   {topic}-value (Ping" in capsys.readouterr().out


def test_schemas_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["schemas", "check", "nowhere_at_all:app", "--registry", "http://x"]) == 2
    assert "cannot import" in capsys.readouterr().err
    monkeypatch.delenv("RIVULET_SCHEMA_REGISTRY_URL", raising=False)
    assert main(["schemas", "check", "x:app"]) == 2
    assert "--registry" in capsys.readouterr().err
    app = write_app(tmp_path, "unreachable_app", "orders", "qty: int")
    assert main(["schemas", "check", app, "--registry", "http://127.0.0.1:9"]) == 2
    assert "rivulet schemas: schema registry http://127.0.0.1:9" in capsys.readouterr().err
