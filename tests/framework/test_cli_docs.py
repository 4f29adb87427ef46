"""``rivulet docs`` and the MODULE:APP loader."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rivulet import ConfigurationError
from rivulet.cli import docs
from rivulet.framework._loader import load_app

from .conftest import run_cli

APP_SOURCE = """
from rivulet import App, Event

class OrderPlaced(Event):
    order_id: str
    total: int

app = App("large-orders")
app.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"svc_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def test_asyncapi_to_a_file(module: str, tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    status = run_cli(
        docs, ["asyncapi", f"{module}:app", "--server", "dev=127.0.0.1:9092", "-o", str(out)]
    )
    assert status == 0
    document = json.loads(out.read_text())
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["dev"] == {"host": "127.0.0.1:9092", "protocol": "kafka"}
    assert set(document["channels"]) == {"orders", "orders-dlt", "large-orders"}


def test_topology_to_stdout_finds_the_only_app(
    module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(docs, ["topology", module]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["groups"] == ["large-orders"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing_module_xyz:app", "cannot import module"),
        ("{module}:nope", "has no attribute 'nope'"),
        ("{module}:OrderPlaced", "not a rivulet App"),
        (":app", "MODULE:ATTRIBUTE"),
    ],
)
def test_loader_errors_say_what_to_fix(module: str, target: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_app(target.format(module=module))


def test_cli_reports_loader_errors(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(docs, ["asyncapi", f"{module}:nope"]) == 2
    assert "has no attribute" in capsys.readouterr().err
