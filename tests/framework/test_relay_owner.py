"""The outbox relay's lease owner: stable for a static group member, unique otherwise."""

from __future__ import annotations

from rivulet import App, Settings
from rivulet.framework._runtime import Runtime


def test_a_static_member_keeps_its_relay_lease_across_restarts() -> None:
    app = App("relay-owner")
    settings = Settings(kafka={"group.instance.id": "relay-owner-0"})
    # Two runtimes stand for the crashed process and its replacement.
    assert Runtime(app, settings)._relay_owner() == Runtime(app, settings)._relay_owner()
    other = Settings(kafka={"group.instance.id": "relay-owner-1"})
    assert Runtime(app, settings)._relay_owner() != Runtime(app, other)._relay_owner()


def test_without_an_instance_id_every_runtime_is_its_own_owner() -> None:
    app = App("relay-owner")
    assert Runtime(app, Settings())._relay_owner() != Runtime(app, Settings())._relay_owner()
