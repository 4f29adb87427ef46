"""The image definition agrees with the manifests: user, port, health check."""

from __future__ import annotations

import re

from rivulet.deploy import DeployConfig
from rivulet.deploy._workloads import RUN_AS
from tests.deploy._support import REPO

CONTAINERFILE = REPO / "deploy" / "Containerfile"


def final_stage() -> list[str]:
    lines = CONTAINERFILE.read_text().replace("\\\n", " ").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    starts = [i for i, line in enumerate(instructions) if line.startswith("FROM ")]
    return instructions[starts[-1] :]


def test_runs_as_the_unprivileged_user_the_pods_expect() -> None:
    users = [line.split()[1] for line in final_stage() if line.startswith("USER ")]
    assert users == [f"{RUN_AS}:{RUN_AS}"]
    assert "--uid 10001" in " ".join(final_stage())


def test_health_check_and_port_match_the_framework_endpoint() -> None:
    port = DeployConfig().metrics_port
    stage = " ".join(final_stage())
    assert f"EXPOSE {port}" in stage
    assert f"RIVULET_HTTP_LISTEN=0.0.0.0:{port}" in stage
    assert f"http://127.0.0.1:{port}/healthz" in stage


def test_base_images_are_pinned_and_the_command_is_rivulet() -> None:
    text = CONTAINERFILE.read_text()
    for image in re.findall(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE):
        assert ":" in image
        assert not image.endswith(":latest")
    assert 'ENTRYPOINT ["opentelemetry-instrument", "rivulet"]' in text
