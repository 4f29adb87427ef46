"""Rendering the example shop: the properties that matter, and the errors users see."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rivulet import App, Context
from rivulet.deploy import (
    DeployConfig,
    DeployError,
    Rendering,
    Service,
    ServiceOptions,
    TopicDefaults,
    kubernetes_name,
    render,
)
from tests.deploy._support import (
    OrderPlaced,
    assert_acls_exact,
    assert_pods_hardened,
    assert_scaling,
    assert_topics_cover,
    by_kind,
    example_apps,
    topic_partitions,
    validate,
)


def docs_of(rendering: Rendering) -> list[dict[str, Any]]:
    return [dict(d) for d in rendering.documents()]


def test_every_rendered_manifest_is_schema_valid(rendering: Rendering) -> None:
    docs = docs_of(rendering)
    assert {d["kind"] for d in docs} >= {
        "KafkaTopic", "KafkaUser", "Deployment", "Service", "PodDisruptionBudget",
        "PodMonitor", "NetworkPolicy", "TriggerAuthentication", "ScaledObject", "Job",
    }  # fmt: skip
    for doc in docs:
        validate(doc)


def test_the_properties_that_matter_hold(rendering: Rendering, services: list[Service]) -> None:
    docs = docs_of(rendering)
    topologies = [s.topology for s in services]
    assert_topics_cover(docs, topologies)
    assert_acls_exact(docs, topologies)
    assert_scaling(docs, topologies)
    assert_pods_hardened(docs)


def test_checks_catch_what_they_guard(rendering: Rendering, services: list[Service]) -> None:
    """Each property check fails on a manifest set that breaks it."""
    docs = docs_of(rendering)
    topologies = [s.topology for s in services]
    broken = [
        d for d in docs if not (d["kind"] == "KafkaTopic" and d["metadata"]["name"] == "orders-dlt")
    ]
    with pytest.raises(AssertionError, match="without a KafkaTopic"):
        assert_topics_cover(broken, topologies)
    broken = copy.deepcopy(docs)
    user = by_kind(broken, "KafkaUser")["inventory"]
    user["spec"]["authorization"]["acls"].append(
        {"resource": {"type": "topic", "name": "payments", "patternType": "literal"},
         "operations": ["Write"]}
    )  # fmt: skip
    with pytest.raises(AssertionError, match="extra"):
        assert_acls_exact(broken, topologies)
    broken = copy.deepcopy(docs)
    by_kind(broken, "ScaledObject")["payments"]["spec"]["maxReplicaCount"] = 5
    with pytest.raises(AssertionError, match="exceeds"):
        assert_scaling(broken, topologies)
    broken = [d for d in docs if d["kind"] != "ScaledObject"]
    with pytest.raises(AssertionError, match="no ScaledObject"):
        assert_scaling(broken, topologies)
    broken = copy.deepcopy(docs)
    del by_kind(broken, "Deployment")["orders"]["spec"]["template"]["spec"]["securityContext"]
    del by_kind(broken, "Deployment")["orders"]["spec"]["template"]["spec"]["containers"][0][
        "securityContext"
    ]["runAsNonRoot"]
    with pytest.raises(AssertionError, match="root"):
        assert_pods_hardened(broken)


def test_topics_take_declared_partitions_and_derived_topics_follow(rendering: Rendering) -> None:
    partitions = topic_partitions(docs_of(rendering))
    assert partitions["orders"] == 4  # declared by the orders app
    assert partitions["orders-retry-1000"] == partitions["orders-dlt"] == 4
    assert partitions["payments"] == 3
    assert partitions["inventory"] == TopicDefaults().partitions
    topics = by_kind(docs_of(rendering), "KafkaTopic")
    assert topics["orders"]["spec"]["config"]["retention.ms"] == "604800000"
    assert topics["orders-dlt"]["metadata"]["labels"]["rivulet.dev/topic-role"] == "dead-letter"
    for topic in topics.values():
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "rivulet"


def test_scaling_is_capped_by_the_smallest_partition_count(rendering: Rendering) -> None:
    scaled = {d["metadata"]["name"]: d for d in docs_of(rendering) if d["kind"] == "ScaledObject"}
    # payments reads inventory (6 partitions) and orders (4) in two groups.
    assert scaled["payments"]["spec"]["maxReplicaCount"] == 4
    triggers = {
        (t["metadata"]["consumerGroup"], t["metadata"]["topic"])
        for t in scaled["payments"]["spec"]["triggers"]
    }
    assert triggers == {("payments", "inventory"), ("payments-audit", "orders")}
    # Retry topics hold records on purpose: they do not drive scaling.
    inventory = scaled["inventory"]["spec"]["triggers"]
    assert [t["metadata"]["topic"] for t in inventory] == ["orders"]
    assert inventory[0]["metadata"]["lagThreshold"] == "100"
    assert "orders" not in scaled  # it only publishes


def test_deployment_runs_the_app_with_the_framework_probes(
    rendering: Rendering, config: DeployConfig
) -> None:
    deployments = by_kind(docs_of(rendering), "Deployment")
    orders = deployments["orders"]
    pod = orders["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["run", "shop.orders:app"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": config.metrics_port, "http": 8080}
    env = {e["name"]: e for e in container["env"]}
    assert env["RIVULET_HTTP_LISTEN"]["value"] == f"0.0.0.0:{config.metrics_port}"
    drain = float(env["RIVULET_SHUTDOWN_TIMEOUT_S"]["value"])
    assert (
        pod["terminationGracePeriodSeconds"]
        > drain + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    assert env["RIVULET_KAFKA_SASL_USERNAME"]["value"] == "orders"
    assert env["SHOP_HTTP"]["value"] == "0.0.0.0:8080"  # the service's own, from its options
    assert env["RIVULET_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "orders",  # the Secret the Strimzi User Operator writes for KafkaUser orders
        "key": "password",
    }
    refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert refs == ["rivulet-env", "rivulet-database"]
    assert orders["spec"]["replicas"] == 1  # not scaled by KEDA: it consumes nothing
    assert "replicas" not in deployments["inventory"]["spec"]


def test_services_only_for_http_apis(rendering: Rendering) -> None:
    services = by_kind(docs_of(rendering), "Service")
    assert set(services) == {"orders"}
    assert services["orders"]["spec"]["ports"][0]["targetPort"] == "http"


def test_network_policy_allows_kafka_and_declared_egress(rendering: Rendering) -> None:
    policies = by_kind(docs_of(rendering), "NetworkPolicy")
    assert set(policies) == {"orders", "inventory", "payments", "large-orders"}
    payments = policies["payments"]["spec"]
    assert payments["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in payments["egress"] for p in rule["ports"]}
    assert {9092, 9093, 53, 443} <= egress_ports
    assert 443 not in {
        p["port"] for rule in policies["inventory"]["spec"]["egress"] for p in rule["ports"]
    }
    orders_in = {p["port"] for rule in policies["orders"]["spec"]["ingress"] for p in rule["ports"]}
    assert orders_in == {9100, 8080}


def test_schemas_check_job_covers_every_app(rendering: Rendering, config: DeployConfig) -> None:
    job = by_kind(docs_of(rendering), "Job")["schemas-check"]
    checked = set()
    for container in job["spec"]["template"]["spec"]["containers"]:
        command, action, app, *rest = container["args"]
        assert (command, action) == ("schemas", "check")
        assert rest == ["--registry", "http://schema-registry:8081"]
        checked.add(app)
    assert checked == {o.app for o in config.services}


def test_rendering_is_deterministic(config: DeployConfig, services: list[Service]) -> None:
    again = [Service(s.options, example_apps()[key].topology()) for key, s in
             zip(("orders", "inventory", "payments", "large"), services, strict=True)]  # fmt: skip
    assert render(config, services).texts() == render(config, again).texts()


def test_kustomization_lists_every_file(rendering: Rendering) -> None:
    kustomization = rendering.files["kustomization.yaml"][0]
    assert sorted(kustomization["resources"]) == sorted(
        set(rendering.files) - {"kustomization.yaml"}
    )


def test_unusual_topic_names_get_valid_resource_names() -> None:
    app = App("audit")

    @app.handler("Orders_V2")
    async def handle(event: OrderPlaced, ctx: Context) -> None:
        pass

    docs = docs_of(render(DeployConfig(), [Service(ServiceOptions("x:app"), app.topology())]))
    topics = by_kind(docs, "KafkaTopic")
    names = {d["spec"].get("topicName", n) for n, d in topics.items()}
    assert names == {"Orders_V2", "Orders_V2-dlt"}
    for doc in topics.values():
        validate(doc)
        assert doc["metadata"]["name"].startswith("orders-v2")


def test_conflicting_partition_counts_are_refused() -> None:
    first, second = App("a"), App("b")
    first.topic("orders", partitions=3)
    second.topic("orders", partitions=6)
    second.publishes("orders", OrderPlaced)
    services = [Service(ServiceOptions(f"m:{a.name}"), a.topology()) for a in (first, second)]
    with pytest.raises(DeployError, match="different partition counts"):
        render(DeployConfig(), services)


def test_apps_may_not_set_min_insync_replicas() -> None:
    app = App("a")
    app.topic("orders", config={"min.insync.replicas": "1"})
    with pytest.raises(DeployError, match="each environment sets it"):
        render(DeployConfig(), [Service(ServiceOptions("m:a"), app.topology())])


def test_two_apps_with_one_kubernetes_name_are_refused() -> None:
    first, second = App("large_orders"), App("large.orders")
    services = [
        Service(ServiceOptions(f"m:{i}"), a.topology()) for i, a in enumerate((first, second))
    ]
    with pytest.raises(DeployError, match="both deploy as 'large-orders'"):
        render(DeployConfig(), services)


def test_kubernetes_names() -> None:
    assert kubernetes_name("Large_Orders") == "large-orders"
    with pytest.raises(DeployError, match="start with a letter"):
        kubernetes_name("9lives")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"app": "no-colon"}, "MODULE:APP"),
        ({"app": "m:a", "api_port": 70000}, "ports"),
        ({"app": "m:a", "env": {"BAD-NAME": "x"}}, "variable name"),
    ],
)
def test_bad_service_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        ServiceOptions(**options)


def test_service_env_may_not_override_the_deployment() -> None:
    app = App("a")
    options = ServiceOptions("m:a", env={"RIVULET_HTTP_LISTEN": "0.0.0.0:1"})
    with pytest.raises(DeployError, match="set by the deployment itself"):
        render(DeployConfig(), [Service(options, app.topology())])
