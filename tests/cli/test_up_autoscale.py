"""``rivulet up --autoscale``: a lagging service scales up, then back down, and says why."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_up import assert_all_hold, up


def test_a_lagging_service_scales_up_and_back_down(tmp_path: Path) -> None:
    # The ScaledObjects' policy with quick numbers: a poll a second, no scale-down delay,
    # a low lag target. Slow payments make the payments group lag while orders come in.
    config = tmp_path / "services.toml"
    config.write_text(
        "[defaults.scaling]\n"
        "lag_threshold = 5\npolling_interval_s = 1\nscale_down_window_s = 0\nmax_replicas = 3\n"
    )
    status, output, summary = up(
        tmp_path / "data", "--duration", "6", "--check", "--rate", "30",
        "--payment-latency-ms", "120", "--autoscale-config", str(config),
    )  # fmt: skip
    assert_all_hold(status, output, summary)
    scaling = summary["scaling"]
    ups = [line for line in scaling if line.endswith("(scale up)")]
    downs = [line for line in scaling if line.endswith("(scale down)")]
    assert ups, output[-4000:]
    assert downs, output[-4000:]
    # Each decision names the lag that caused it, and is printed as it happens.
    assert " -> proposal " in ups[0]
    assert f"autoscale {ups[0]}" in output
