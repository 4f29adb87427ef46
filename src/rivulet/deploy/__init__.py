"""Kubernetes deployment rendered from the apps' own topology.

Pure functions from topology data to manifest dictionaries: a Strimzi ``KafkaTopic``
per topic, a ``KafkaUser`` per service whose ACLs are exactly what its topology
declares, a KEDA ``ScaledObject`` per consuming service, and the service's
Deployment, Service, PodDisruptionBudget, PodMonitor and NetworkPolicy. The
``rivulet k8s render`` command loads the apps and writes the result as YAML into
the kustomize base; :mod:`rivulet.deploy.autoscale` applies the same scaling
rule to local processes.

>>> from rivulet import App, Context, Event
>>> class OrderPlaced(Event):
...     order_id: str
>>> app = App("billing")
>>> @app.handler("orders")
... async def bill(event: OrderPlaced, ctx: Context) -> None: ...
>>> config = DeployConfig()
>>> rendering = render(config, [Service(ServiceOptions("shop.billing:app"), app.topology())])
>>> sorted(rendering.files)
['billing.yaml', 'kustomization.yaml', 'schemas-check.yaml', 'topics.yaml']
>>> [d["kind"] for d in rendering.files["billing.yaml"]][-1]
'ScaledObject'
"""

from __future__ import annotations

from rivulet.deploy._access import Acl, acls_of
from rivulet.deploy._config import ConfigFile, load_config
from rivulet.deploy._errors import DeployError
from rivulet.deploy._model import (
    DeployConfig,
    Resources,
    Scaling,
    Service,
    ServiceOptions,
    TopicDefaults,
    kubernetes_name,
)
from rivulet.deploy._render import REGENERATE, Rendering, render, scaling_rules
from rivulet.deploy._topics import TopicPlan, plan_topics, topic_name_of

__all__ = [
    "REGENERATE",
    "Acl",
    "ConfigFile",
    "DeployConfig",
    "DeployError",
    "Rendering",
    "Resources",
    "Scaling",
    "Service",
    "ServiceOptions",
    "TopicDefaults",
    "TopicPlan",
    "acls_of",
    "kubernetes_name",
    "load_config",
    "plan_topics",
    "render",
    "scaling_rules",
    "topic_name_of",
]
