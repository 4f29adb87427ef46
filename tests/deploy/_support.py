"""Offline validation of manifests, and a small shop to render in tests.

Core kinds go to ``kubernetes-validate`` (strict: unknown fields are errors); custom
resources (Strimzi, KEDA, Prometheus Operator) to ``jsonschema`` on the upstream
CRDs' ``openAPIV3Schema``, made strict the way ../shared/k8s-schemas/README.md says:
``additionalProperties: false`` on every object schema that lists properties and
allows nothing else, outside ``oneOf``/``anyOf``/``allOf``/``not`` branches.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from rivulet import App, Context, Event, RetryPolicy
from rivulet.deploy import kubernetes_name
from rivulet.framework import Topology

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.33.0"
SCHEMAS = Path(
    os.environ.get("RIVULET_K8S_SCHEMAS", REPO.parent / "shared" / "k8s-schemas")
).resolve()
_BRANCHES = ("oneOf", "anyOf", "allOf", "not")

Manifest = dict[str, Any]


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR``, parsed; skips the test when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian package kubectl): apt-get install kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def validate(doc: Manifest) -> None:
    """Raise if ``doc`` is not a valid resource of its kind (strict)."""
    key = (doc["apiVersion"], doc["kind"])
    schema = crd_schemas().get(key)
    if schema is None:
        kubernetes_validate.validate(dict(doc), KUBERNETES_VERSION, strict=True)
        return
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        raise AssertionError(
            f"{doc['kind']} {doc['metadata'].get('name')}: {len(errors)} schema errors; first "
            f"at /{where}: {errors[0].message}"
        )


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) to the strict JSON Schema of every served CRD version."""
    crds = SCHEMAS / "crds"
    if not crds.is_dir():
        pytest.skip(f"CRD schemas not found at {crds} (set RIVULET_K8S_SCHEMAS)")
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crds.glob("*/*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        # Branches are left as they are: closing them would reject valid alternatives.
        out[key] = value if key in _BRANCHES else _strict(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def containers(doc: Manifest) -> Iterator[Mapping[str, Any]]:
    """Containers (init containers included) of a workload's pod template."""
    pod = doc["spec"]["template"]["spec"]
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


# ----------------------------------------------------------------- a small shop


class OrderPlaced(Event):
    order_id: str
    total: int


class StockReserved(Event):
    order_id: str


class PaymentCaptured(Event):
    order_id: str
    amount: int


def example_apps() -> dict[str, App]:
    """Four apps touching shared topics, retry hops, two groups and a stream."""
    orders = App("orders")
    orders.publishes("orders", OrderPlaced)
    orders.topic("orders", partitions=4, config={"retention.ms": "604800000"})

    inventory = App("inventory")

    @inventory.handler(
        "orders", retry=RetryPolicy(topics=(1000, 10000)), publishes={"inventory": StockReserved}
    )
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish("inventory", StockReserved(order_id=event.order_id))

    payments = App("payments")

    @payments.handler("inventory", publishes={"payments": PaymentCaptured})
    async def capture(event: StockReserved, ctx: Context) -> None:
        pass

    @payments.handler("orders", group="payments-audit")
    async def audit(event: OrderPlaced, ctx: Context) -> None:
        pass

    payments.topic("payments", partitions=3)

    large = App("large-orders")
    large.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")
    return {"orders": orders, "inventory": inventory, "payments": payments, "large": large}


# ----------------------------------------------------------------- properties that matter
# Each takes the documents of one rendering (or one kustomize build) and fails with a
# message naming the resource. They are computed from the topology independently of
# rivulet.deploy's own code, so that a bug there cannot agree with itself.


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def topic_partitions(docs: list[Manifest]) -> dict[str, int]:
    return {
        d["spec"].get("topicName") or d["metadata"]["name"]: d["spec"]["partitions"]
        for d in docs
        if d["kind"] == "KafkaTopic"
    }


def expected_acls(topology: Topology) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) a service needs, straight from its handlers."""
    wanted: set[tuple[str, str, str]] = set()
    for handler in topology.handlers:
        wanted.add(("group", handler.group, "Read"))
        wanted |= {("topic", t, "Read") for t in handler.topics}
        wanted |= {("topic", t, op) for t in handler.retry_topics for op in ("Read", "Write")}
        wanted |= {("topic", t, "Write") for t in handler.dead_letter_topics}
        wanted |= {("topic", t, "Write") for t, _ in handler.publishes}
    # Publications declared with app.publishes(...) (HTTP endpoints, jobs).
    wanted |= {("topic", t.name, "Write") for t in topology.topics if t.produced}
    return wanted


def assert_topics_cover(docs: list[Manifest], topologies: list[Topology]) -> None:
    created = set(topic_partitions(docs))
    for topology in topologies:
        used = {t.name for t in topology.topics}
        missing = used - created
        assert not missing, f"{topology.app} uses topics without a KafkaTopic: {sorted(missing)}"


def assert_acls_exact(docs: list[Manifest], topologies: list[Topology]) -> None:
    users = by_kind(docs, "KafkaUser")
    for topology in topologies:
        name = kubernetes_name(topology.app)
        assert name in users, f"no KafkaUser for {topology.app}"
        spec = users[name]["spec"]
        assert spec["authentication"]["type"] == "scram-sha-512"
        granted = set()
        for acl in spec["authorization"]["acls"]:
            resource = acl["resource"]
            assert resource.get("patternType", "literal") == "literal", f"{name}: {acl}"
            assert "*" not in resource["name"], f"{name}: wildcard ACL {acl}"
            assert acl.get("type", "allow") == "allow"
            assert "All" not in acl["operations"], f"{name}: operation All in {acl}"
            granted |= {(resource["type"], resource["name"], op) for op in acl["operations"]}
        expected = expected_acls(topology)
        assert granted == expected, (
            f"{name}: ACLs differ from the topology; extra {sorted(granted - expected)}, "
            f"missing {sorted(expected - granted)}"
        )


def assert_scaling(docs: list[Manifest], topologies: list[Topology]) -> None:
    deployments = by_kind(docs, "Deployment")
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    auths = by_kind(docs, "TriggerAuthentication")
    partitions = topic_partitions(docs)
    for topology in topologies:
        name = kubernetes_name(topology.app)
        if not topology.groups:
            assert name not in scaled, f"{name} consumes nothing but has a ScaledObject"
            continue
        assert name in deployments, f"no Deployment for consuming service {name}"
        assert name in scaled, f"consuming Deployment {name} has no ScaledObject"
        assert "replicas" not in deployments[name]["spec"], f"{name}: KEDA owns replicas"
        spec = scaled[name]["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        consumed = {
            (g, t.name) for t in topology.topics if t.role == "events" for g in t.consumed_by
        }
        triggered = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert all(isinstance(v, str) for v in meta.values()), f"{name}: {meta}"
            topic = meta["topic"]
            assert spec["maxReplicaCount"] <= partitions[topic], (
                f"{name}: maxReplicaCount {spec['maxReplicaCount']} exceeds the "
                f"{partitions[topic]} partitions of {topic}"
            )
            assert trigger["authenticationRef"]["name"] in auths
            triggered.add((meta["consumerGroup"], topic))
        assert triggered == consumed, f"{name}: triggers {triggered} != consumed {consumed}"


def assert_pods_hardened(docs: list[Manifest]) -> None:
    for doc in docs:
        if doc["kind"] not in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            continue
        name = f"{doc['kind']} {doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        pod_context = pod.get("securityContext", {})
        for container in containers(doc):
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, f"{name}: may run as root"
            assert context.get("runAsUser", 1) != 0, f"{name}: runs as uid 0"
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("readOnlyRootFilesystem") is True, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(section, {}), (
                        f"{name}: container {container['name']} lacks {section}.{resource}"
                    )
            if doc["kind"] == "Deployment":
                for probe in ("livenessProbe", "readinessProbe"):
                    assert probe in container, (
                        f"{name}: container {container['name']} lacks {probe}"
                    )


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def assert_references(docs: list[Manifest], *, external: set[tuple[str, str]]) -> None:
    """Names that must agree do: selectors, ports, config and secret references.

    ``external`` lists (kind, name) of objects created outside the manifests
    (Secrets the Strimzi operators write, the prod database Secret).
    """
    names = {(d["kind"], d["metadata"]["name"]) for d in docs} | external
    workloads = [d for d in docs if d["kind"] in {"Deployment", "Job"}]
    for doc in docs:
        name = doc["metadata"]["name"]
        pattern = _DNS_LABEL if doc["kind"] in {"Service", "Deployment"} else _DNS_SUBDOMAIN
        assert pattern.match(name), f"{doc['kind']} name {name!r}"
        assert len(name) <= 63, f"{doc['kind']} name {name!r} is too long"
    for doc in workloads:
        what = f"{doc['kind']} {doc['metadata']['name']}"
        template = doc["spec"]["template"]
        if doc["kind"] == "Deployment":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= template["metadata"]["labels"].items(), what
        pod = template["spec"]
        for container in containers(doc):
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                assert port is None or isinstance(port, int) or port in ports, f"{what}: {probe}"
            for source in container.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert (kind, source[key]["name"]) in names, f"{what}: {source}"
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ("Secret", ref["name"]) in names, f"{what}: env {var['name']}"
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, f"{what}: {volume}"
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names, f"{what}: {volume}"
    pods = [(d["spec"]["template"]["metadata"]["labels"], list(containers(d))) for d in workloads]
    for doc in docs:
        what = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] == "Service":
            selected = [
                cs for labels, cs in pods if doc["spec"]["selector"].items() <= labels.items()
            ]
            assert selected, f"{what} selects no pods"
            for port in doc["spec"]["ports"]:
                target = port["targetPort"]
                assert any(
                    target in {p["name"] for c in cs for p in c.get("ports", [])} for cs in selected
                ), f"{what}: no container port {target}"
        if doc["kind"] == "PodMonitor" and "matchLabels" in doc["spec"]["selector"]:
            selector = doc["spec"]["selector"]["matchLabels"]
            selected = [cs for labels, cs in pods if selector.items() <= labels.items()]
            assert selected, f"{what} selects no pods"
            for endpoint in doc["spec"]["podMetricsEndpoints"]:
                assert all(
                    endpoint["port"] in {p["name"] for c in cs for p in c.get("ports", [])}
                    for cs in selected
                ), f"{what}: port {endpoint['port']}"
        if doc["kind"] == "ScaledObject":
            target = doc["spec"]["scaleTargetRef"]["name"]
            assert ("Deployment", target) in names, f"{what} scales a missing {target}"
        if doc["kind"] in {"PodDisruptionBudget", "NetworkPolicy"}:
            selector = (doc["spec"].get("selector") or doc["spec"]["podSelector"])["matchLabels"]
            assert any(selector.items() <= labels.items() for labels, _ in pods), (
                f"{what} selects no pods"
            )
