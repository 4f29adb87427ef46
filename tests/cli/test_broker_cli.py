"""``rivulet broker``: argument parsing, and a real process serving until SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from rivulet.cli.broker import parse_listen
from rivulet.cli.main import build_parser, main


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9092", ("127.0.0.1", 9092)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:19092", ("::1", 19092)),
        (":9093", ("127.0.0.1", 9093)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost", "host:port", "h:70000"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen(text)


def test_defaults() -> None:
    args = build_parser().parse_args(["broker"])
    assert args.data_dir == Path(".rivulet/broker")
    assert args.listen == ("127.0.0.1", 9092)
    assert args.group_initial_rebalance_delay_ms == 3000


def test_group_initial_rebalance_delay_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["broker", "--data-dir", str(tmp_path), "--group-initial-rebalance-delay-ms", "-1"]
    )
    assert args._run(args) == 2
    assert "group_initial_rebalance_delay_ms" in capsys.readouterr().err


def test_help_lists_broker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "broker" in capsys.readouterr().out


def test_serves_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rivulet.cli.main",
            "broker",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            "127.0.0.1:0",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        seen: list[str] = []
        match = None
        while match is None and len(seen) < 50:
            seen.append(process.stderr.readline())
            match = re.search(r"listening on (127\.0\.0\.1:\d+)", seen[-1])
        assert match, seen
        address = match.group(1)
        producer = Producer({"bootstrap.servers": address})
        producer.produce("cli", value=b"hello")
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": address, "group.id": "cli"})
        consumer.assign([TopicPartition("cli", 0, 0)])
        message = consumer.poll(30)
        consumer.close()
        assert message is not None
        assert message.value() == b"hello"
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
        assert process.returncode == 0, rest
        assert "stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "data" / "cli-0").is_dir()


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rivulet.cli.main",
                "broker",
                "--data-dir",
                str(tmp_path),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
