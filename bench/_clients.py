"""One measured client run, in a process of its own so each measurement is isolated.

``python -m bench._clients <command> ...`` produces or consumes a known number
of records with a Python client and prints one JSON line,
``{"seconds": <float>, "records": <int>}`` (the records counted in those
seconds); it exits non-zero, with the reason on stderr, if any record was not
acknowledged or read. Interpreter start-up and client construction are not
measured: the clock runs from the first produce to the last acknowledgement,
or from the first record read to the last (see :func:`kafka_consume`).

Commands:

- ``kafka-produce``: confluent-kafka, a ``produce()`` + ``poll(0)`` loop with a
  delivery callback counting acknowledgements, then ``flush()``.
- ``kafka-consume``: confluent-kafka, partitions assigned from the beginning,
  ``consume(num_messages=10000)`` until every record is read.
- ``redis-produce``: redis-py, ``XADD`` in pipelines of ``--pipeline`` commands.
- ``redis-consume``: redis-py, ``XREAD COUNT <--count>`` until every entry is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CONSUMER_SETTINGS", "PRODUCER_SETTINGS", "main", "payload"]

# What a throughput test sets (linger ~10 ms, ~1 MB batches, no compression);
# kcat gets the same settings through -X.
PRODUCER_SETTINGS: Mapping[str, str] = {
    "linger.ms": "10",
    "batch.size": "1000000",
    "compression.codec": "none",
}
# librdkafka's default fetch.queue.backoff.ms (1000 ms) makes a consumer that
# drains its queue faster than it fills wait a full second; 10 ms keeps it fed.
CONSUMER_SETTINGS: Mapping[str, str] = {"fetch.queue.backoff.ms": "10"}

# A consumer that sees no record for this long has lost its records.
_STALL_S = 30.0


def payload(size: int) -> bytes:
    """A record value of ``size`` printable bytes (no newline, so kcat can read it from a file)."""
    pattern = b"rivulet-benchmark-0123456789-abcdefghijklmnopqrstuvwxyz-"
    return (pattern * (size // len(pattern) + 1))[:size]


def _fail(message: str) -> None:
    sys.exit(f"bench client: {message}")


def kafka_produce(
    bootstrap: str, topic: str, records: int, size: int, acks: str, config: Mapping[str, str]
) -> tuple[float, int]:
    """Produce ``records`` values of ``size`` bytes.

    Returns the seconds until every record was acknowledged, and the count.
    """
    from confluent_kafka import Producer  # noqa: PLC0415 - only this command needs it

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": acks, **PRODUCER_SETTINGS, **config}
    )
    value = payload(size)
    outcome = {"acked": 0, "failed": 0}
    first_error: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            outcome["acked"] += 1
        else:
            outcome["failed"] += 1
            if not first_error:
                first_error.append(err)

    produce = producer.produce
    poll = producer.poll
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                produce(topic, value, on_delivery=on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until it drains.
                poll(0.01)
        poll(0)
    left = producer.flush(120)
    seconds = time.perf_counter() - start
    if left or outcome["acked"] != records:
        _fail(
            f"{outcome['acked']} of {records} records acknowledged, {outcome['failed']} failed, "
            f"{left} still queued; first error: {first_error[0] if first_error else None}"
        )
    return seconds, records


def kafka_consume(
    bootstrap: str, topic: str, records: int, partitions: int, config: Mapping[str, str]
) -> tuple[float, int]:
    """Read ``records`` records from the beginning of ``topic``.

    Returns the seconds from the first record to the last, and how many records
    arrived in that time (all but the first).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"rivulet-bench-{uuid.uuid4().hex}",
            "enable.auto.commit": "false",
            "enable.partition.eof": "false",
            **CONSUMER_SETTINGS,
            **config,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        consume = consumer.consume
        seen = 0
        start = last_progress = time.perf_counter()
        while seen < records:
            # Ask for one record first: librdkafka idles about half a second
            # after assign() before its first fetch, whatever the broker, so the
            # clock starts when the first record arrives (and it is not counted).
            # Later calls never ask for more than are left, because consume()
            # waits out its timeout unless it fills num_messages.
            want = min(10000, records - seen) if seen else 1
            batch = consume(num_messages=want, timeout=1.0)
            now = time.perf_counter()
            if batch:
                last_progress = now
            elif now - last_progress > _STALL_S:
                _fail(f"read {seen} of {records} records, then nothing for {_STALL_S:.0f} s")
            for msg in batch:
                if msg.error() is not None:
                    _fail(f"consumer error after {seen} records: {msg.error()}")
            if batch and not seen:
                start = now
            seen += len(batch)
        end = time.perf_counter()
    finally:
        consumer.close()
    if seen != records:
        _fail(f"read {seen} records, expected {records}")
    return end - start, max(records - 1, 1)


def redis_produce(url: str, key: str, records: int, size: int, pipeline: int) -> tuple[float, int]:
    """XADD ``records`` entries in pipelines of ``pipeline``; return the seconds it took."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    fields = {b"v": payload(size)}
    pipe = client.pipeline(transaction=False)
    start = time.perf_counter()
    for i in range(1, records + 1):
        pipe.xadd(key, fields)  # type: ignore[arg-type]  # bytes field names are fine
        if i % pipeline == 0:
            pipe.execute()
    pipe.execute()
    seconds = time.perf_counter() - start
    length = client.xlen(key)
    client.close()
    if length != records:
        _fail(f"stream {key} holds {length} entries, expected {records}")
    return seconds, records


def redis_consume(url: str, key: str, records: int, count: int) -> tuple[float, int]:
    """XREAD the stream from its start, ``count`` entries at a time; return the seconds it took."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    last: bytes = b"0-0"
    seen = 0
    start = time.perf_counter()
    while seen < records:
        reply: Any = client.xread({key: last}, count=count)
        # RESP2 answers [[key, entries]], RESP3 {key: [entries]}.
        entries = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
        if not entries:
            break
        seen += len(entries)
        last = entries[-1][0]
    seconds = time.perf_counter() - start
    client.close()
    if seen != records:
        _fail(f"read {seen} entries of stream {key}, expected {records}")
    return seconds, seen


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--config wants name=value, got {pair!r}")
        out[name] = value
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench._clients", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("kafka-produce", "kafka-consume"):
        sub = commands.add_parser(name)
        sub.add_argument("--bootstrap", required=True)
        sub.add_argument("--topic", required=True)
        sub.add_argument("--records", type=int, required=True)
        sub.add_argument("--config", action="append", default=[], metavar="NAME=VALUE")
        if name == "kafka-produce":
            sub.add_argument("--size", type=int, required=True)
            sub.add_argument("--acks", required=True)
        else:
            sub.add_argument("--partitions", type=int, default=1)
    for name in ("redis-produce", "redis-consume"):
        sub = commands.add_parser(name)
        sub.add_argument("--url", required=True)
        sub.add_argument("--key", required=True)
        sub.add_argument("--records", type=int, required=True)
        if name == "redis-produce":
            sub.add_argument("--size", type=int, required=True)
            sub.add_argument("--pipeline", type=int, default=1000)
        else:
            sub.add_argument("--count", type=int, default=10000)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run one command and print its JSON result line."""
    args = _parser().parse_args(argv)
    if args.command == "kafka-produce":
        seconds, counted = kafka_produce(
            args.bootstrap, args.topic, args.records, args.size, args.acks, _settings(args.config)
        )
    elif args.command == "kafka-consume":
        seconds, counted = kafka_consume(
            args.bootstrap, args.topic, args.records, args.partitions, _settings(args.config)
        )
    elif args.command == "redis-produce":
        seconds, counted = redis_produce(args.url, args.key, args.records, args.size, args.pipeline)
    else:
        seconds, counted = redis_consume(args.url, args.key, args.records, args.count)
    print(json.dumps({"seconds": seconds, "records": counted}))


if __name__ == "__main__":
    main()
