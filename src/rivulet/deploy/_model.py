"""What rendering needs beyond an app's topology: one frozen, typed configuration.

The topology (topics, groups, handlers) comes from the code; this says how each
service runs on Kubernetes (its image command, HTTP API port, resources, scaling)
and how topics are created. :func:`rivulet.deploy.load_config` builds it from
``deploy/k8s/services.toml``; tests construct it directly.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from rivulet.deploy._errors import DeployError
from rivulet.framework import Settings, Topology

__all__ = [
    "DeployConfig",
    "Resources",
    "Scaling",
    "Service",
    "ServiceOptions",
    "TopicDefaults",
    "kubernetes_name",
]

# A Service name is an RFC 1035 label; every other object we name accepts it too.
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def kubernetes_name(app_name: str) -> str:
    """The Kubernetes name of an app: lower case, ``.`` and ``_`` turned into ``-``.

    >>> kubernetes_name("Large_Orders.v2")
    'large-orders-v2'
    """
    name = re.sub(r"[^a-z0-9-]", "-", app_name.lower()).strip("-")
    if not _DNS_LABEL.match(name):
        raise DeployError(
            f"app name {app_name!r} gives no valid Kubernetes name ({name!r}): it must start "
            "with a letter and have at most 63 characters; rename the App"
        )
    return name


@dataclass(frozen=True, slots=True)
class Resources:
    """Container requests and limits (Kubernetes quantities, as strings)."""

    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "192Mi"
    memory_limit: str = "512Mi"

    def __post_init__(self) -> None:
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _QUANTITY.match(value):
                raise DeployError(f"resources.{name}={value!r} is not a Kubernetes quantity")


@dataclass(frozen=True, slots=True)
class Scaling:
    """Lag-based scaling of a consuming service: the KEDA ScaledObject's parameters.

    ``rivulet up --autoscale`` applies the same numbers locally
    (:mod:`rivulet.deploy.autoscale`).
    """

    min_replicas: int = 1
    #: Upper bound; the renderer lowers it to the partition count of the topics.
    max_replicas: int = 6
    #: Target lag per replica: desired replicas = ceil(total lag / lag_threshold).
    lag_threshold: int = 100
    #: KEDA and the HPA look at the lag this often.
    polling_interval_s: int = 15
    #: Scale down only to the highest recommendation of this trailing window.
    scale_down_window_s: int = 120
    #: Scale up only to the lowest recommendation of this trailing window (0: at once).
    scale_up_window_s: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise DeployError(
                f"scaling needs 1 <= min_replicas <= max_replicas, not "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        if self.lag_threshold < 1 or self.polling_interval_s < 1:
            raise DeployError("scaling.lag_threshold and polling_interval_s must be at least 1")
        if self.scale_down_window_s < 0 or self.scale_up_window_s < 0:
            raise DeployError("scaling windows must not be negative")


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """How one app runs: ``rivulet run APP`` in the shared image, plus these."""

    #: ``MODULE:APP``, as ``rivulet run`` takes it.
    app: str
    #: The port of the service's own HTTP API, exposed by a Service (None: no API).
    api_port: int | None = None
    #: TCP ports the service may reach anywhere (e.g. 443 for webhook delivery).
    egress_ports: tuple[int, ...] = ()
    #: Extra environment variables of the service's container (e.g. where its API listens).
    env: Mapping[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    scaling: Scaling = field(default_factory=Scaling)

    def __post_init__(self) -> None:
        if ":" not in self.app:
            raise DeployError(f"service app {self.app!r} must be MODULE:APP")
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))
        for name, value in self.env.items():
            if not _ENV_NAME.match(name) or not isinstance(value, str):
                raise DeployError(
                    f"service {self.app}: env {name}={value!r} needs a variable name "
                    "(letters, digits, _) and a string value"
                )
        ports = [*self.egress_ports, *([self.api_port] if self.api_port is not None else [])]
        if any(not 0 < port < 65536 for port in ports):
            raise DeployError(f"service {self.app}: ports must be in 1..65535")


@dataclass(frozen=True, slots=True)
class TopicDefaults:
    """How topics are created when the code does not say."""

    partitions: int = 6
    #: Replicas and ``min.insync.replicas`` of every topic (the dev overlay lowers both).
    replicas: int = 3
    min_insync_replicas: int = 2
    #: Retry hops hold records only until their delay passed.
    retry_retention_ms: int = 7 * 24 * 3600 * 1000
    #: Dead letters wait for a person: keep them a month.
    dead_letter_retention_ms: int = 30 * 24 * 3600 * 1000

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replicas < 1:
            raise DeployError("topics need at least one partition and one replica")
        if not 1 <= self.min_insync_replicas <= self.replicas:
            raise DeployError("topics need 1 <= min_insync_replicas <= replicas")


@dataclass(frozen=True, slots=True)
class DeployConfig:
    """Cluster-wide settings and the services to render."""

    services: tuple[ServiceOptions, ...] = ()
    #: The Strimzi ``Kafka`` resource's name (``<cluster>-kafka-bootstrap`` is its Service).
    cluster: str = "rivulet"
    #: The image every service runs; overlays pin registry and tag with ``images:``.
    image: str = "rivulet"
    #: Port of the framework's endpoint (/metrics, /healthz, /readyz) in every pod.
    metrics_port: int = 9100
    #: Namespace of Prometheus, allowed to scrape the metrics port.
    monitoring_namespace: str = "monitoring"
    #: Where the schema registry answers inside the namespace.
    registry_port: int = 8081
    #: SIGTERM drain time given to the framework (``shutdown_timeout_s``).
    drain_s: float = Settings().shutdown_timeout_s
    topics: TopicDefaults = field(default_factory=TopicDefaults)
    #: Resources and scaling of apps that :attr:`services` does not list.
    default_resources: Resources = field(default_factory=Resources)
    default_scaling: Scaling = field(default_factory=Scaling)

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.cluster):
            raise DeployError(f"cluster name {self.cluster!r} is not a valid Kubernetes name")
        if self.drain_s < 0:
            raise DeployError("drain_s must not be negative")

    @property
    def termination_grace_s(self) -> int:
        """Pod grace period: the drain time, the endpoints' deregistration pause, a margin."""
        return PRE_STOP_PAUSE_S + math.ceil(self.drain_s) + 15

    def options_for(self, app: str) -> ServiceOptions:
        """This app's configured options, or the default ones."""
        for options in self.services:
            if options.app == app:
                return options
        return ServiceOptions(
            app=app, resources=self.default_resources, scaling=self.default_scaling
        )


#: Pause before SIGTERM so that Services stop routing to a terminating pod first.
PRE_STOP_PAUSE_S = 5


@dataclass(frozen=True, slots=True)
class Service:
    """One app to deploy: its options and its topology."""

    options: ServiceOptions
    topology: Topology

    @property
    def name(self) -> str:
        """Kubernetes name of the Deployment, KafkaUser, ScaledObject..."""
        return kubernetes_name(self.topology.app)

    @property
    def consumes(self) -> bool:
        """Whether it has consumer groups (and so scales on lag)."""
        return bool(self.topology.groups)
