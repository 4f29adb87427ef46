"""``rivulet k8s render``: Kubernetes manifests from the apps' topology.

With no arguments it reads ``deploy/k8s/services.toml`` (the apps and their
deployment options) and rewrites the generated part of the kustomize base it names
(``deploy/k8s/base/generated/``). Naming apps renders just those, with the file's
options for them (or the defaults). ``--check`` writes nothing and exits 1 when the
files on disk differ from what the code renders now (the CI drift check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "k8s"
HELP = "render Kubernetes manifests (topics, users, scaling, workloads) from the apps"

DEFAULT_CONFIG = Path("deploy/k8s/services.toml")
DEFAULT_OUT = Path("deploy/k8s/base/generated")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = actions.add_parser(
        "render",
        help="write KafkaTopic, KafkaUser, ScaledObject and workload manifests",
        description="Render the manifests of the apps in --config (or the apps named).",
    )
    render.add_argument(
        "apps", nargs="*", metavar="MODULE:APP", help="apps to render (default: the config's)"
    )
    render.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"deployment options of the services (default: {DEFAULT_CONFIG} if it exists)",
    )
    render.add_argument(
        "--out", type=Path, metavar="DIR", help=f"output directory (default: {DEFAULT_OUT})"
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files in the output directory are out of date",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that `rivulet --help` stays fast.
    from rivulet.deploy import (  # noqa: PLC0415
        REGENERATE,
        DeployConfig,
        DeployError,
        Service,
        load_config,
        render,
    )
    from rivulet.framework import ConfigurationError  # noqa: PLC0415
    from rivulet.framework._loader import load_app  # noqa: PLC0415

    try:
        config_path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        if config_path is not None:
            loaded = load_config(config_path)
            config, out = loaded.config, loaded.out
        else:
            config, out = DeployConfig(), DEFAULT_OUT
        out = args.out or out
        refs = args.apps or [options.app for options in config.services]
        if not refs and config_path is None:
            print(
                "rivulet k8s render: no apps: name them (MODULE:APP ...) or list them as "
                f"[[service]] tables in {DEFAULT_CONFIG}",
                file=sys.stderr,
            )
            return 2
        services = [Service(config.options_for(ref), load_app(ref).topology()) for ref in refs]
        rendering = render(config, services)
    except (ConfigurationError, DeployError) as exc:
        print(f"rivulet k8s render: {exc}", file=sys.stderr)
        return 2
    if args.check:
        problems = rendering.drift(out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"the manifests are out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{out}: up to date ({len(rendering.files)} files)")
        return 0
    changed = rendering.write(out)
    print(f"{out}: {len(rendering.files)} files, {len(changed)} changed")
    for name in changed:
        print(f"  {name}")
    return 0
