"""The kustomize overlays as ``kubectl kustomize`` renders them: complete and valid.

Every resource of both overlays is validated (core kinds strictly against the
Kubernetes schemas, custom resources against the Strimzi, KEDA and Prometheus
Operator CRDs), and the properties that matter are checked against the topology of
the apps deploy/k8s/services.toml lists.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from rivulet.deploy import load_config
from rivulet.framework import Topology
from rivulet.framework._loader import load_app
from tests.deploy._support import (
    REPO,
    Manifest,
    assert_acls_exact,
    assert_pods_hardened,
    assert_references,
    assert_scaling,
    assert_topics_cover,
    by_kind,
    containers,
    kubectl_kustomize,
    validate,
)

K8S = REPO / "deploy" / "k8s"
NAMESPACES = {"dev": "rivulet-dev", "prod": "rivulet"}


@functools.cache
def build(overlay: str) -> list[Manifest]:
    return kubectl_kustomize(K8S / "overlays" / overlay)


@functools.cache
def topologies() -> list[Topology]:
    config = load_config(K8S / "services.toml").config
    return [
        load_app(options.app, search_path=REPO / "src").topology() for options in config.services
    ]


def only(docs: list[Manifest], kind: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def env_of(docs: list[Manifest]) -> dict[str, str]:
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("rivulet-env")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


@pytest.fixture(params=["dev", "prod"])
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_every_resource_validates(overlay: str) -> None:
    docs = build(overlay)
    for doc in docs:
        validate(doc)


def test_the_properties_that_matter_hold(overlay: str) -> None:
    docs = build(overlay)
    assert_topics_cover(docs, topologies())
    assert_acls_exact(docs, topologies())
    assert_scaling(docs, topologies())
    assert_pods_hardened(docs)
    created_by_operators = {("Secret", name) for name in by_kind(docs, "KafkaUser")}
    created_by_operators.add(("Secret", "rivulet-cluster-ca-cert"))
    if overlay == "prod":
        created_by_operators.add(("Secret", "rivulet-database"))  # holds credentials
    assert_references(docs, external=created_by_operators)


def test_one_namespace_per_environment(overlay: str) -> None:
    assert {d["metadata"].get("namespace") for d in build(overlay)} == {NAMESPACES[overlay]}


def test_services_reach_kafka_through_the_strimzi_bootstrap_service(overlay: str) -> None:
    docs = build(overlay)
    kafka = only(docs, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    env = env_of(docs)
    host, port = env["RIVULET_BOOTSTRAP_SERVERS"].split(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    assert int(port) == listener["port"]
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert env["RIVULET_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["RIVULET_KAFKA_SECURITY_PROTOCOL"] == (
        "SASL_SSL" if listener["tls"] else "SASL_PLAINTEXT"
    )
    assert env["KEDA_KAFKA_TLS"] == ("enable" if listener["tls"] else "disable")
    assert env["RIVULET_CREATE_TOPICS"] == "false"  # topics come from KafkaTopic resources
    if listener["tls"]:
        # The CA file the client trusts is where the Deployments mount the cluster CA.
        ca = Path(env["RIVULET_KAFKA_SSL_CA_LOCATION"])
        for deployment in by_kind(docs, "Deployment").values():
            mounts = {
                m["mountPath"]: m["name"]
                for c in containers(deployment)
                for m in c.get("volumeMounts", [])
            }
            if str(ca.parent) in mounts:
                assert ca.name == "ca.crt"


def test_the_schemas_check_job_loads_the_apps_with_their_registry_serializers(
    overlay: str,
) -> None:
    job = only(build(overlay), "Job")
    checks = list(containers(job))
    assert len(checks) == len(topologies())
    for container in checks:
        registry = container["args"][container["args"].index("--registry") + 1]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env.get("RIVULET_SCHEMA_REGISTRY_URL") == registry, container["name"]


def test_graceful_termination_outlasts_the_drain(overlay: str) -> None:
    for deployment in by_kind(build(overlay), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "RIVULET_SHUTDOWN_TIMEOUT_S" in env:
                assert pod["terminationGracePeriodSeconds"] > float(
                    env["RIVULET_SHUTDOWN_TIMEOUT_S"]
                )


def test_prod_runs_a_replicated_zone_aware_cluster() -> None:
    docs = build("prod")
    kafka = only(docs, "Kafka")["spec"]["kafka"]
    assert [(li["name"], li["tls"]) for li in kafka["listeners"]] == [("tls", True)]
    assert kafka["rack"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert kafka["authorization"]["type"] == "simple"
    config = kafka["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert kafka["template"]["podDisruptionBudget"]["maxUnavailable"] == 1
    pools = by_kind(docs, "KafkaNodePool")
    roles = {name: (p["spec"]["roles"], p["spec"]["replicas"]) for name, p in pools.items()}
    assert roles == {"controllers": (["controller"], 3), "brokers": (["broker"], 3)}
    for pool in pools.values():
        assert pool["spec"]["storage"]["type"] == "persistent-claim"
        assert pool["spec"]["storage"]["deleteClaim"] is False
        spread = pool["spec"]["template"]["pod"]["topologySpreadConstraints"]
        assert {"topology.kubernetes.io/zone": "DoNotSchedule"}.items() <= {
            s["topologyKey"]: s["whenUnsatisfiable"] for s in spread
        }.items()
        assert {"requests", "limits"} <= set(pool["spec"]["resources"])


def test_prod_topics_have_three_replicas_and_two_in_sync() -> None:
    topics = by_kind(build("prod"), "KafkaTopic")
    assert topics
    for name, topic in topics.items():
        assert topic["spec"]["replicas"] == 3, name
        assert str(topic["spec"]["config"]["min.insync.replicas"]) == "2", name


def test_dev_is_one_node_with_single_replica_topics() -> None:
    docs = build("dev")
    (pool,) = by_kind(docs, "KafkaNodePool").values()
    assert (sorted(pool["spec"]["roles"]), pool["spec"]["replicas"]) == (
        ["broker", "controller"],
        1,
    )
    (listener,) = only(docs, "Kafka")["spec"]["kafka"]["listeners"]
    assert (listener["name"], listener["tls"]) == ("plain", False)
    for name, topic in by_kind(docs, "KafkaTopic").items():
        assert topic["spec"]["replicas"] == 1, name
        assert str(topic["spec"]["config"]["min.insync.replicas"]) == "1", name


def test_every_pod_runs_the_overlay_image(overlay: str) -> None:
    expected = {"dev": "rivulet:dev", "prod": "registry.example.com/rivulet/rivulet:0.1.0"}
    for doc in build(overlay):
        if doc["kind"] in {"Deployment", "Job"}:
            for container in containers(doc):
                if not container["image"].startswith("otel/"):
                    assert container["image"] == expected[overlay], doc["metadata"]["name"]


def test_registry_and_orders_api_are_exposed(overlay: str) -> None:
    services = by_kind(build(overlay), "Service")
    assert services["schema-registry"]["spec"]["ports"][0]["port"] == 8081
    if any(t.app == "orders" for t in topologies()):
        assert services["orders"]["spec"]["ports"][0]["targetPort"] == "http"
    if topologies():
        job = by_kind(build(overlay), "Job")["schemas-check"]
        checked = {c["args"][2] for c in job["spec"]["template"]["spec"]["containers"]}
        assert checked == {o.app for o in load_config(K8S / "services.toml").config.services}


def test_dashboard_and_collector_configs_are_shipped(overlay: str) -> None:
    maps = by_kind(build(overlay), "ConfigMap")
    dashboard = maps["grafana-dashboard-rivulet"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["rivulet.json"])["uid"] == "rivulet-services"
    assert "kafka-metrics-config.yml" in maps["kafka-metrics"]["data"]
    kafka = only(build(overlay), "Kafka")["spec"]["kafka"]
    assert kafka["metricsConfig"]["valueFrom"]["configMapKeyRef"]["name"] == "kafka-metrics"
    assert any(name.startswith("otel-collector-config") for name in maps)
