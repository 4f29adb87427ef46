"""KEDA resources from a :class:`~rivulet.deploy.autoscale.ScalingRule`.

The trigger reads its connection settings from the scaled container itself, so the
same resources work in every overlay: bootstrap servers through
``bootstrapServersFromEnv`` and the TLS switch, user name and CA through a
``TriggerAuthentication`` mapping the container's environment and Secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rivulet.deploy.autoscale import ScalingRule

__all__ = ["CA_SECRET_KEY", "TLS_SWITCH_ENV", "scaled_object", "trigger_authentication"]

#: Variable of the environment ConfigMap holding ``enable`` or ``disable`` for KEDA.
TLS_SWITCH_ENV = "KEDA_KAFKA_TLS"
CA_SECRET_KEY = "ca.crt"  # noqa: S105 - a key name, not a secret


def scaled_object(rule: ScalingRule, *, labels: Mapping[str, str]) -> dict[str, Any]:
    """The ``ScaledObject`` scaling the service's Deployment on consumer lag."""
    triggers = [
        {
            "type": "kafka",
            "name": f"lag-{index}",
            "metadata": {
                "bootstrapServersFromEnv": "RIVULET_BOOTSTRAP_SERVERS",
                "consumerGroup": trigger.group,
                "topic": trigger.topic,
                "lagThreshold": str(rule.lag_threshold),
                "offsetResetPolicy": "earliest",
                "allowIdleConsumers": "false",
                "sasl": "scram_sha512",
            },
            "authenticationRef": {"name": f"{rule.service}-kafka"},
        }
        for index, trigger in enumerate(rule.triggers)
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": rule.service, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": rule.service},
            "minReplicaCount": rule.min_replicas,
            "maxReplicaCount": rule.max_replicas,
            "pollingInterval": rule.polling_interval_s,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": rule.scale_up_window_s},
                        "scaleDown": {"stabilizationWindowSeconds": rule.scale_down_window_s},
                    }
                }
            },
            "triggers": triggers,
        },
    }


def trigger_authentication(
    rule: ScalingRule, *, user: str, ca_secret: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """How KEDA logs in as the service's own Kafka user (its ACLs cover its groups)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": f"{rule.service}-kafka", "labels": dict(labels)},
        "spec": {
            "env": [
                {"parameter": "username", "name": "RIVULET_KAFKA_SASL_USERNAME"},
                {"parameter": "tls", "name": TLS_SWITCH_ENV},
            ],
            "secretTargetRef": [
                {"parameter": "password", "name": user, "key": "password"},
                {"parameter": "ca", "name": ca_secret, "key": CA_SECRET_KEY},
            ],
        },
    }
