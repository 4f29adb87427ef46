"""What the broker reads of the consumer protocol (protocol type ``consumer``).

The broker treats member metadata and assignments as opaque bytes, with one
exception Kafka also makes: for groups of protocol type ``consumer`` it reads the
topics each member subscribes to, so that OffsetDelete can refuse to delete the
offsets of a topic the group still consumes, and retention can keep them.

ConsumerProtocolSubscription, every version (0-3, none flexible) begins::

    version int16 | topics: int32 count, then count x (int16 length, UTF-8 bytes) | ...

Later fields (user data, owned partitions, generation, rack) are not needed here,
so any version, including ones newer than this broker knows, is read the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["CONSUMER_PROTOCOL_TYPE", "subscribed_topics"]

CONSUMER_PROTOCOL_TYPE = "consumer"

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def _topics(metadata: bytes) -> list[str]:
    pos = _I16.size  # the version
    (count,) = _I32.unpack_from(metadata, pos)
    pos += _I32.size
    if count < 0:
        raise ValueError("null topic array")
    topics = []
    for _ in range(count):
        (length,) = _I16.unpack_from(metadata, pos)
        pos += _I16.size
        end = pos + length
        if length < 0 or end > len(metadata):
            raise ValueError("topic name runs past the metadata")
        topics.append(metadata[pos:end].decode())
        pos = end
    return topics


def subscribed_topics(subscriptions: Iterable[bytes]) -> frozenset[str] | None:
    """The union of the topics in ``subscriptions``, or ``None`` if one does not parse.

    ``None`` means "unknown", which callers must treat as "every topic".
    """
    topics: set[str] = set()
    try:
        for metadata in subscriptions:
            topics.update(_topics(metadata))
    except (struct.error, ValueError):
        return None
    return frozenset(topics)
