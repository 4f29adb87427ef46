"""``rivulet k8s render``: writing, checking and refusing."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rivulet.cli.main import main

APPS = """
from rivulet import App, Context, Event

class OrderPlaced(Event):
    order_id: str

orders = App("orders")
orders.publishes("orders", OrderPlaced)

billing = App("billing")

@billing.handler("orders")
async def bill(event: OrderPlaced, ctx: Context) -> None:
    pass
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"k8sapps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APPS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def test_render_then_check(module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    apps = [f"{module}:orders", f"{module}:billing"]
    assert main(["k8s", "render", "--out", str(out), *apps]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "billing.yaml", "kustomization.yaml", "orders.yaml", "schemas-check.yaml", "topics.yaml",
    ]  # fmt: skip
    kinds = [d["kind"] for d in yaml.safe_load_all((out / "billing.yaml").read_text())]
    assert "ScaledObject" in kinds
    capsys.readouterr()
    assert main(["k8s", "render", "--check", "--out", str(out), *apps]) == 0
    assert "up to date" in capsys.readouterr().out

    (out / "topics.yaml").write_text((out / "topics.yaml").read_text().replace("6", "7"))
    assert main(["k8s", "render", "--check", "--out", str(out), *apps]) == 1
    err = capsys.readouterr().err
    assert "topics.yaml differs" in err
    assert "run `rivulet k8s render`" in err

    # Rendering again repairs it, and drops generated files of apps no longer rendered.
    mine = out / "notes.yaml"
    mine.write_text("kind: Note\n")
    assert main(["k8s", "render", "--out", str(out), f"{module}:orders"]) == 0
    assert not (out / "billing.yaml").exists()
    assert mine.exists()  # not generated: left alone
    assert main(["k8s", "render", "--check", "--out", str(out), f"{module}:orders"]) == 0


def test_config_file_lists_apps_and_options(module: str, tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        f"""
out = "manifests"
cluster = "events"

[defaults.scaling]
lag_threshold = 25

[[service]]
app = "{module}:orders"
api_port = 8080

[[service]]
app = "{module}:billing"
[service.scaling]
max_replicas = 2
"""
    )
    assert main(["k8s", "render", "--config", str(config)]) == 0
    billing = list(yaml.safe_load_all((tmp_path / "manifests" / "billing.yaml").read_text()))
    scaled = next(d for d in billing if d["kind"] == "ScaledObject")["spec"]
    assert scaled["maxReplicaCount"] == 2
    assert scaled["triggers"][0]["metadata"]["lagThreshold"] == "25"
    user = next(d for d in billing if d["kind"] == "KafkaUser")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "events"
    orders = list(yaml.safe_load_all((tmp_path / "manifests" / "orders.yaml").read_text()))
    assert any(d["kind"] == "Service" for d in orders)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('clusterr = "x"', "unknown keys ['clusterr']"),
        ("[[service]]\napp = 'm:a'\napi_prot = 1", "unknown keys ['api_prot']"),
        ("[defaults.scaling]\nmin_replicas = 5\nmax_replicas = 2", "min_replicas <= max_replicas"),
        ("[topics]\nmin_insync_replicas = 4", "min_insync_replicas <= replicas"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_config_is_explained(
    config: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text(config + "\n[[service]]\napp = 'm:b'\n" if "service" not in config else config)
    assert main(["k8s", "render", "--config", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_no_apps_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["k8s", "render"]) == 2
    assert "no apps" in capsys.readouterr().err


def test_unknown_app_is_an_error(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["k8s", "render", "--check", f"{module}:nothing"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


def test_file_defaults_apply_to_apps_it_does_not_list(module: str, tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text(
        '[defaults.scaling]\nlag_threshold = 7\n[defaults.resources]\ncpu_limit = "2"\n'
    )
    out = tmp_path / "gen"
    assert (
        main(["k8s", "render", "--config", str(config), "--out", str(out), f"{module}:billing"])
        == 0
    )
    docs = list(yaml.safe_load_all((out / "billing.yaml").read_text()))
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")["spec"]
    assert scaled["triggers"][0]["metadata"]["lagThreshold"] == "7"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["cpu"] == "2"
