"""The committed manifests are what the code renders now."""

from __future__ import annotations

from rivulet.deploy import REGENERATE, Service, load_config, render
from rivulet.framework._loader import load_app
from tests.deploy._support import REPO


def test_committed_manifests_match_the_code() -> None:
    loaded = load_config(REPO / "deploy" / "k8s" / "services.toml")
    services = [
        Service(options, load_app(options.app, search_path=REPO / "src").topology())
        for options in loaded.config.services
    ]
    problems = render(loaded.config, services).drift(loaded.out)
    assert not problems, (
        "the generated Kubernetes manifests are out of date with the apps' topology:\n  "
        + "\n  ".join(problems)
        + f"\nregenerate them from the repository root with `{REGENERATE}` and commit the result"
    )
