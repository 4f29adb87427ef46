"""The deploy layer's one error root."""

from __future__ import annotations

__all__ = ["DeployError"]


class DeployError(Exception):
    """The configuration or the apps cannot be rendered as given; the message says why."""
