"""kcat (librdkafka's command-line client) producing, consuming and listing metadata."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.interop._support import create_topic, read_topic, unique_topic

KCAT = shutil.which("kcat")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        KCAT is None, reason="kcat is not installed (`./dev test` installs the Debian package)"
    ),
]


def kcat(bootstrap: str, *args: str, stdin: bytes = b"") -> str:
    assert KCAT is not None
    # A short fetch wait: `-e` exits only after an empty fetch of every partition.
    result = subprocess.run(
        [KCAT, "-b", bootstrap, "-X", "fetch.wait.max.ms=50", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_keyed_lines_and_consume_them_back(bootstrap: str, compression: str) -> None:
    topic = unique_topic(f"kcat-{compression}")
    create_topic(bootstrap, topic, partitions=3)
    lines = [f"sku-{i % 4}:qty={i}" for i in range(20)]

    kcat(
        bootstrap,
        "-P",
        "-t",
        topic,
        "-K:",
        "-z",
        compression,
        "-X",
        "acks=all",
        stdin="\n".join(lines).encode() + b"\n",
    )
    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-q", "-f", r"%p %o %k %s\n")

    consumed = [line.split(" ") for line in out.splitlines()]
    assert sorted(f"{k}:{v}" for _p, _o, k, v in consumed) == sorted(lines)
    log = read_topic(bootstrap, topic, partitions=3)
    assert sorted((int(p), int(o), k, v) for p, o, k, v in consumed) == [
        (r.partition, r.offset, (r.key or b"").decode(), (r.value or b"").decode()) for r in log
    ]
    for key in {line.split(":")[0] for line in lines}:  # one partition per key, order kept
        of_key = [(p, v) for p, _o, k, v in consumed if k == key]
        assert len({p for p, _v in of_key}) == 1
        assert [v for _p, v in of_key] == [
            line.split(":")[1] for line in lines if line.startswith(key + ":")
        ]


def test_consume_from_an_offset_with_headers(bootstrap: str) -> None:
    topic = unique_topic("kcat-headers")
    create_topic(bootstrap, topic)

    kcat(bootstrap, "-P", "-t", topic, "-H", "source=kcat", "-H", "trace=1", stdin=b"a\nb\nc\n")
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "1", "-e", "-q", "-f", r"%o %s %h\n")

    assert out.splitlines() == ["1 b source=kcat,trace=1", "2 c source=kcat,trace=1"]


def test_metadata_lists_the_broker_and_topics(bootstrap: str) -> None:
    topic = unique_topic("kcat-meta")
    create_topic(bootstrap, topic, partitions=2)

    metadata = json.loads(kcat(bootstrap, "-L", "-J", "-t", topic))

    [broker] = metadata["brokers"]
    assert broker["name"] == bootstrap
    [described] = metadata["topics"]
    assert described["topic"] == topic
    assert [p["partition"] for p in described["partitions"]] == [0, 1]
    assert all(p["leader"] == broker["id"] for p in described["partitions"])


def test_balanced_consumer_commits_and_the_next_run_resumes_after(bootstrap: str) -> None:
    topic = unique_topic("kcat-group")
    create_topic(bootstrap, topic, partitions=2)
    group = ["-X", "auto.offset.reset=earliest", "-G", topic, "-e", "-q", "-f", r"%s\n", topic]

    kcat(bootstrap, "-P", "-t", topic, stdin=b"a\nb\nc\n")
    assert sorted(kcat(bootstrap, *group).split()) == ["a", "b", "c"]
    kcat(bootstrap, "-P", "-t", topic, stdin=b"d\ne\n")

    assert sorted(kcat(bootstrap, *group).split()) == ["d", "e"]  # committed on exit
