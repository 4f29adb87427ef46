"""Kafka ACLs from a topology, and the service's Strimzi ``KafkaUser``.

A service may do exactly what its topology declares, nothing more:

==========================================  ==================================
The topology says                           ACL (literal resource names)
==========================================  ==================================
a handler of group G                        Read on group G
topic consumed by one of its groups         Read on the topic
topic it produces (publishes, retry hops,   Write on the topic
dead letters, app publications)
==========================================  ==================================

Read and Write imply Describe in Kafka, and Write on a topic allows the idempotent
producer's InitProducerId since Kafka 3.0 (KIP-679), so nothing else is granted: no
Create (topics come from ``KafkaTopic`` resources), no cluster operations, no
prefixes or wildcards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rivulet.framework import Topology

__all__ = ["Acl", "acls_of", "kafka_user"]

ResourceType = Literal["topic", "group"]


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """Operations allowed on one literal resource."""

    resource_type: ResourceType
    name: str
    operations: tuple[str, ...]

    def to_strimzi(self) -> dict[str, Any]:
        """The entry of ``KafkaUser.spec.authorization.acls``."""
        return {
            "resource": {"type": self.resource_type, "name": self.name, "patternType": "literal"},
            "operations": list(self.operations),
        }


def acls_of(topology: Topology) -> tuple[Acl, ...]:
    """What the app's topology needs, sorted (groups first, then topics by name)."""
    wanted: dict[tuple[ResourceType, str], set[str]] = {}
    for group in topology.groups:
        wanted.setdefault(("group", group), set()).add("Read")
    for info in topology.topics:
        if info.consumed_by:
            wanted.setdefault(("topic", info.name), set()).add("Read")
        if info.produced:
            wanted.setdefault(("topic", info.name), set()).add("Write")
    return tuple(
        sorted(Acl(kind, name, tuple(sorted(ops))) for (kind, name), ops in wanted.items())
    )


def kafka_user(
    name: str, topology: Topology, *, cluster: str, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The ``KafkaUser`` of a service: SCRAM-SHA-512 credentials and its ACLs.

    The User Operator writes the password to a Secret named like the user.
    """
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": name, "labels": {"strimzi.io/cluster": cluster, **labels}},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [acl.to_strimzi() for acl in acls_of(topology)],
            },
        },
    }
