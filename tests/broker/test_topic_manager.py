"""TopicManager: validation, persistence across reopen, deletion, config overrides."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rivulet.broker.core import durable_log_factory, memory_log_factory
from rivulet.broker.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicError,
)
from rivulet.broker.topics import TopicManager, validate_topic_name
from rivulet.protocol.records import build_batch
from rivulet.storage import CleanupPolicy, LogConfig


def manager(data_dir: Path | None, **kwargs: object) -> TopicManager:
    ids = (uuid.UUID(int=i) for i in range(1, 1000))
    topics = TopicManager(
        data_dir=data_dir,
        log_defaults=LogConfig(retention_ms=123_000),
        log_factory=durable_log_factory if data_dir else memory_log_factory,
        new_topic_id=lambda: next(ids),
        **kwargs,  # type: ignore[arg-type]
    )
    topics.load()
    return topics


@pytest.fixture
def topics(tmp_path: Path) -> Iterator[TopicManager]:
    t = manager(tmp_path)
    yield t
    t.close()


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 250, "has space", "slash/", "ünï"])
def test_illegal_names(name: str) -> None:
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


@pytest.mark.parametrize("name", ["a", "A.b_c-9", "a" * 249, "__internal"])
def test_legal_names(name: str) -> None:
    validate_topic_name(name)


def test_create_with_defaults_and_overrides(topics: TopicManager) -> None:
    topic = topics.create("t", num_partitions=3, configs={"cleanup.policy": "compact"})
    assert len(topic.partitions) == 3
    assert topic.topic_id == uuid.UUID(int=1)
    assert topic.log_config.cleanup_policy is CleanupPolicy.COMPACT
    assert topic.log_config.retention_ms == 123_000  # the broker default
    assert topics.get_by_id(topic.topic_id) is topic
    assert topic.compacted


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_partitions": 0}, InvalidPartitionsError),
        ({"num_partitions": 100_000}, InvalidPartitionsError),
        ({"replication_factor": 2}, InvalidReplicationFactorError),
        ({"configs": {"retention.ms": "x"}}, InvalidConfigError),
        ({"configs": {"made.up": "1"}}, InvalidConfigError),
        ({"configs": {"retention.ms": None}}, InvalidConfigError),
        ({"assignments": {0: [1], 2: [1]}}, InvalidReplicaAssignmentError),
        ({"assignments": {0: [1, 2]}}, InvalidReplicaAssignmentError),
        ({"assignments": {0: [7]}, "node_id": 1}, InvalidReplicaAssignmentError),
        ({"assignments": {0: [1]}, "num_partitions": 1}, InvalidReplicaAssignmentError),
    ],
)
def test_create_refusals(topics: TopicManager, kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        topics.create("t", **kwargs)  # type: ignore[arg-type]
    assert "t" not in topics


def test_assignments_decide_partition_count(topics: TopicManager) -> None:
    topic = topics.create("t", assignments={0: [1], 1: [1]}, node_id=1)
    assert len(topic.partitions) == 2


def test_validate_only_changes_nothing(topics: TopicManager, tmp_path: Path) -> None:
    topics.create("t", num_partitions=2, validate_only=True)
    assert "t" not in topics
    assert not (tmp_path / "t-0").exists()


def test_duplicate_refused(topics: TopicManager) -> None:
    topics.create("t")
    with pytest.raises(TopicAlreadyExistsError):
        topics.create("t")


def test_everything_survives_reopen(tmp_path: Path) -> None:
    first = manager(tmp_path)
    topic = first.create("orders", num_partitions=2, configs={"retention.ms": "5000"})
    topic.partitions[1].append(bytearray(build_batch([(b"k", b"v")])), now_ms=1)
    first.create_partitions("orders", 3)
    first.set_overrides("orders", {"segment.ms": "60000"})
    first.create("__consumer_offsets", configs={"cleanup.policy": "compact"})
    first.close()

    second = manager(tmp_path)
    reopened = second.get("orders")
    assert reopened is not None
    assert reopened.topic_id == topic.topic_id
    assert len(reopened.partitions) == 3
    assert reopened.overrides == {"segment.ms": "60000"}
    assert reopened.log_config.segment_ms == 60_000
    assert reopened.partitions[1].log.end_offset == 1
    internal = second.get("__consumer_offsets")
    assert internal is not None
    assert internal.internal
    second.close()


def test_metadata_file_is_replaced_atomically(tmp_path: Path) -> None:
    topics = manager(tmp_path)
    topics.create("a")
    topics.create("b")
    document = json.loads((tmp_path / "topics.json").read_text())
    assert [t["name"] for t in document["topics"]] == ["a", "b"]
    assert not list(tmp_path.glob("*.tmp"))
    topics.close()


def test_delete_removes_data_and_name_can_be_reused(tmp_path: Path) -> None:
    topics = manager(tmp_path)
    topic = topics.create("t", num_partitions=2)
    topic.partitions[0].append(bytearray(build_batch([(None, b"old")])), now_ms=1)
    topics.delete("t")
    assert "t" not in topics
    assert not (tmp_path / "t-0").exists()
    assert not list(tmp_path.glob("*-delete"))
    again = topics.create("t")
    assert again.topic_id != topic.topic_id
    assert again.partitions[0].log.end_offset == 0
    with pytest.raises(UnknownTopicError):
        topics.delete("missing")
    topics.close()


def test_leftovers_of_an_interrupted_delete_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / "t-0.0123abcd-delete"
    leftover.mkdir(parents=True)
    (leftover / "00000000000000000000.log").write_bytes(b"junk")
    topics = manager(tmp_path)
    assert not leftover.exists()
    topics.close()


def test_internal_topics_cannot_be_deleted_by_clients(topics: TopicManager) -> None:
    topics.create("__consumer_offsets")
    with pytest.raises(InvalidTopicError):
        topics.delete("__consumer_offsets")
    topics.delete("__consumer_offsets", allow_internal=True)


def test_create_partitions(topics: TopicManager) -> None:
    topics.create("t", num_partitions=2)
    with pytest.raises(InvalidPartitionsError):
        topics.create_partitions("t", 2)
    with pytest.raises(InvalidReplicaAssignmentError):
        topics.create_partitions("t", 4, assignments=[[1]])
    topics.create_partitions("t", 4, validate_only=True)
    assert len(topics.get("t").partitions) == 2  # type: ignore[union-attr]
    topics.create_partitions("t", 4, assignments=[[1], [1]], node_id=1)
    assert len(topics.get("t").partitions) == 4  # type: ignore[union-attr]
    with pytest.raises(UnknownTopicError):
        topics.create_partitions("missing", 4)


def test_set_overrides_reconfigures_logs(topics: TopicManager) -> None:
    topic = topics.create("t")
    topics.set_overrides("t", {"retention.ms": "1000"})
    assert topic.partitions[0].log.config.retention_ms == 1000
    with pytest.raises(InvalidConfigError):
        topics.set_overrides("t", {"retention.ms": "-5"})
    assert topic.overrides == {"retention.ms": "1000"}
    topics.set_overrides("t", {}, validate_only=False)
    assert topic.partitions[0].log.config.retention_ms == 123_000


def test_memory_manager_writes_nothing(tmp_path: Path) -> None:
    topics = manager(None)
    topics.create("t")
    topics.delete("t")
    topics.close()
    assert not any(tmp_path.iterdir())


def test_clean_applies_retention(topics: TopicManager) -> None:
    topic = topics.create("t", configs={"retention.ms": "1000", "segment.ms": "1"})
    partition = topic.partitions[0]
    partition.append(bytearray(build_batch([(None, b"old")], timestamp_ms=0)), now_ms=0)
    partition.append(bytearray(build_batch([(None, b"new")], timestamp_ms=10_000)), now_ms=10_000)
    topics.clean(now_ms=10_500)
    assert partition.log.start_offset == 1
