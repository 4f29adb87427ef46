"""AlterConfigs (API key 33): replace a topic's config overrides wholesale.

The legacy API: the configs given become the topic's complete set of
overrides, and every other config returns to its default. Broker settings are
fixed at start-up and cannot be altered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rivulet.broker.handlers._resources import alter_topic_configs
from rivulet.broker.router import Handler, RequestContext, Response

if TYPE_CHECKING:
    from rivulet.broker.core import Broker
    from rivulet.broker.topics import Topic

__all__ = ["HANDLER"]


def _overrides(broker: Broker, topic: Topic, resource: Any) -> dict[str, str]:
    """The configs given, as the topic's complete set of overrides."""
    return {c.name: c.value for c in resource.configs if c.value is not None}


async def handle(ctx: RequestContext, request: Any) -> Response:
    return alter_topic_configs(ctx.broker, request, _overrides)


HANDLER = Handler(api_key=33, min_version=0, max_version=2, handle=handle, name="AlterConfigs")
