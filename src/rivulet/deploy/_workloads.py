"""Per-service workload resources: Deployment, Service, PodDisruptionBudget,
PodMonitor and NetworkPolicy.

Every pod runs the one Rivulet image as ``rivulet run MODULE:APP``, as an unprivileged
user with a read-only root file system (``/tmp`` and the data directory are
``emptyDir`` volumes). Its environment comes from three places:

``rivulet-env`` ConfigMap (one per overlay)
    bootstrap servers, security protocol, CA path, tracing endpoint, and the TLS
    switch KEDA reads (``KEDA_KAFKA_TLS``): what differs between dev and prod and is
    the same for every service.
``rivulet-database`` Secret (one per overlay)
    ``RIVULET_DATABASE_PREFIX`` and ``RIVULET_DATABASE_SUFFIX``; the service's URL is
    prefix + service name + suffix (``postgresql://user:pw@host:5432/`` + ``orders``),
    expanded by the kubelet from the variables the Secret defines.
the container's own ``env``
    what belongs to the service: its Kafka user and the password the Strimzi User
    Operator stores in the Secret named after it, its endpoint address, its drain time.

Probes use the framework's endpoint: liveness ``/healthz``, readiness ``/readyz``,
and a startup probe that gives the first connection to Kafka time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rivulet.deploy._errors import DeployError
from rivulet.deploy._model import PRE_STOP_PAUSE_S, DeployConfig, Service

__all__ = [
    "CA_MOUNT",
    "DATABASE_SECRET",
    "DATA_DIR",
    "ENV_CONFIGMAP",
    "deployment",
    "network_policy",
    "pod_disruption_budget",
    "pod_monitor",
    "selector_labels",
    "service",
]

ENV_CONFIGMAP = "rivulet-env"
DATABASE_SECRET = "rivulet-database"  # noqa: S105 - a Secret's name
DATA_DIR = "/var/lib/rivulet"
CA_MOUNT = "/etc/rivulet/kafka-ca"
#: UID/GID of the image's ``rivulet`` user (deploy/Containerfile).
RUN_AS = 10001
#: Ports the Kafka brokers listen on for clients (plain in dev, TLS in prod).
KAFKA_CLIENT_PORTS = (9092, 9093)
OTLP_PORT = 4317


def selector_labels(service: Service) -> dict[str, str]:
    """Labels that select the service's pods."""
    return {"app.kubernetes.io/name": service.name, "app.kubernetes.io/part-of": "rivulet"}


def deployment(
    service: Service, config: DeployConfig, *, labels: Mapping[str, str], scaled: bool
) -> dict[str, Any]:
    """The service's Deployment (no ``replicas`` when KEDA scales it)."""
    name = service.name
    options = service.options
    ports = [{"name": "metrics", "containerPort": config.metrics_port, "protocol": "TCP"}]
    if options.api_port is not None:
        ports.append({"name": "http", "containerPort": options.api_port, "protocol": "TCP"})
    probe_port = "metrics"
    env: list[dict[str, Any]] = [
        {"name": "RIVULET_HTTP_LISTEN", "value": f"0.0.0.0:{config.metrics_port}"},
        {"name": "RIVULET_SHUTDOWN_TIMEOUT_S", "value": _seconds(config.drain_s)},
        {"name": "RIVULET_KAFKA_SASL_USERNAME", "value": name},
        {
            "name": "RIVULET_KAFKA_SASL_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}},
        },
        {
            "name": "RIVULET_DATABASE_URL",
            "value": f"$(RIVULET_DATABASE_PREFIX){name}$(RIVULET_DATABASE_SUFFIX)",
        },
        {"name": "OTEL_SERVICE_NAME", "value": name},
    ]
    clash = {e["name"] for e in env} & set(options.env)
    if clash:
        raise DeployError(f"service {name}: env {sorted(clash)} is set by the deployment itself")
    env += [{"name": key, "value": value} for key, value in sorted(options.env.items())]
    container: dict[str, Any] = {
        "name": "service",
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", options.app],
        "ports": ports,
        "envFrom": [
            {"configMapRef": {"name": ENV_CONFIGMAP}},
            {"secretRef": {"name": DATABASE_SECRET}},
        ],
        "env": env,
        "startupProbe": _probe("/healthz", probe_port, period=2, failures=60),
        "livenessProbe": _probe("/healthz", probe_port, period=10, failures=3),
        "readinessProbe": _probe("/readyz", probe_port, period=5, failures=2),
        "resources": {
            "requests": {
                "cpu": options.resources.cpu_request,
                "memory": options.resources.memory_request,
            },
            "limits": {
                "cpu": options.resources.cpu_limit,
                "memory": options.resources.memory_limit,
            },
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of its own
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "kafka-ca", "mountPath": CA_MOUNT, "readOnly": True},
        ],
    }
    if options.api_port is not None:
        # Let the Service drop the pod before the app stops accepting requests.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_PAUSE_S}}}
    pod_labels = {**labels, **selector_labels(service)}
    spec: dict[str, Any] = {}
    if not scaled:
        spec["replicas"] = options.scaling.min_replicas
    spec |= {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector_labels(service)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": config.termination_grace_s,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": RUN_AS,
                    "runAsGroup": RUN_AS,
                    "fsGroup": RUN_AS,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": key,
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": selector_labels(service)},
                    }
                    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                ],
                "containers": [container],
                "volumes": [
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    {
                        "name": "kafka-ca",
                        "secret": {"secretName": f"{config.cluster}-cluster-ca-cert"},
                    },
                ],
            },
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service.name, "labels": pod_labels},
        "spec": spec,
    }


def service(service: Service, *, labels: Mapping[str, str]) -> dict[str, Any] | None:
    """A ClusterIP Service for the service's HTTP API (None when it has none)."""
    if service.options.api_port is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service.name, "labels": {**labels, **selector_labels(service)}},
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(service),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(service: Service, *, labels: Mapping[str, str]) -> dict[str, Any]:
    """At most one pod of the service evicted at a time during node drains."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": service.name, "labels": {**labels, **selector_labels(service)}},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(service)}},
    }


def pod_monitor(service: Service, *, labels: Mapping[str, str]) -> dict[str, Any]:
    """Prometheus Operator scrape configuration for the framework's /metrics."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": service.name, "labels": {**labels, **selector_labels(service)}},
        "spec": {
            "selector": {"matchLabels": selector_labels(service)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def network_policy(
    service: Service, config: DeployConfig, *, labels: Mapping[str, str]
) -> dict[str, Any]:
    """Only the traffic the service needs, in and out.

    In: scrapes from the monitoring namespace; its API (if any) from anywhere (the
    ingress controller). Out: DNS, the Kafka brokers, the schema registry, the
    OpenTelemetry collector, PostgreSQL, and the service's declared egress ports.
    """
    ingress: list[dict[str, Any]] = [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": config.monitoring_namespace}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": config.metrics_port}],
        }
    ]
    if service.options.api_port is not None:
        ingress.append({"ports": [{"protocol": "TCP", "port": service.options.api_port}]})
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [
                {
                    "podSelector": {
                        "matchLabels": {
                            "strimzi.io/cluster": config.cluster,
                            "strimzi.io/kind": "Kafka",
                        }
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": port} for port in KAFKA_CLIENT_PORTS],
        },
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "schema-registry"}}}],
            "ports": [{"protocol": "TCP", "port": config.registry_port}],
        },
        {
            "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}}}],
            "ports": [{"protocol": "TCP", "port": OTLP_PORT}],
        },
        # PostgreSQL usually lives outside the namespace (a managed service).
        {"ports": [{"protocol": "TCP", "port": 5432}]},
    ]
    if service.options.egress_ports:
        egress.append(
            {"ports": [{"protocol": "TCP", "port": p} for p in service.options.egress_ports]}
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": service.name, "labels": {**labels, **selector_labels(service)}},
        "spec": {
            "podSelector": {"matchLabels": selector_labels(service)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def _probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
