"""One module per Kafka API. This package lists them; :class:`~rivulet.broker.router.Router`
serves them.

The shape of a handler module (copy an existing one, e.g. ``delete_records.py``)::

    \"\"\"DeleteRecords (API key 21): move partitions' log start offsets forward.\"\"\"

    from rivulet.broker.router import Handler, RequestContext, Response

    async def handle(ctx: RequestContext, request: Any) -> Response | None:
        broker = ctx.broker            # topics, config, clock, router
        ...                            # ctx.api_version says which schema `request` is
        return {"throttle_time": 0, "topics": [...]}

    HANDLER = Handler(api_key=21, min_version=0, max_version=2, handle=handle,
                      name="DeleteRecords")

Rules every handler follows:

* ``request`` is the kio dataclass of the request's version
  (:func:`rivulet.protocol.messages.request_class`); fields a version lacks are
  simply absent, so read version-dependent ones with ``getattr(request, name,
  default)`` or check ``ctx.api_version``. A handler whose ``Handler`` names a
  ``read_body`` gets what that returns instead (Produce: record sets left in
  the request frame, see :mod:`rivulet.protocol.produce`).
* Return a version-neutral mapping using kio's field names (inspect
  ``dataclasses.fields(response_class(key, version))``); keys a version lacks are
  ignored, durations and timestamps may be plain millisecond ints, error codes
  plain ints or :class:`kio.schema.errors.ErrorCode`. Return ``None`` for no
  response (acks=0), or an :class:`~rivulet.broker.router.EncodedResponse` when
  you frame the bytes yourself (Fetch).
* Failures become Kafka error codes in the response, per topic or partition,
  with a message that tells the user what to do
  (:class:`~rivulet.broker.errors.BrokerError` carries the code). Raising means
  "close this connection": reserve it for requests that cannot be answered.
* Declare exactly the versions you implement and test; the router checks kio
  has them and ApiVersions advertises them.
* Read the time with ``ctx.now_ms()``, never the system clock.

To add an API: write the module, import it below, add its ``HANDLER`` to
:data:`HANDLERS` (one line each).
"""

from __future__ import annotations

from rivulet.broker.handlers import (
    alter_configs,
    api_versions,
    create_partitions,
    create_topics,
    delete_groups,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_groups,
    fetch,
    find_coordinator,
    heartbeat,
    incremental_alter_configs,
    init_producer_id,
    join_group,
    leave_group,
    list_groups,
    list_offsets,
    metadata,
    offset_commit,
    offset_delete,
    offset_fetch,
    produce,
    sync_group,
)
from rivulet.broker.router import Handler

__all__ = ["HANDLERS"]

HANDLERS: tuple[Handler, ...] = (
    produce.HANDLER,
    fetch.HANDLER,
    list_offsets.HANDLER,
    metadata.HANDLER,
    api_versions.HANDLER,
    create_topics.HANDLER,
    delete_topics.HANDLER,
    delete_records.HANDLER,
    describe_configs.HANDLER,
    alter_configs.HANDLER,
    create_partitions.HANDLER,
    incremental_alter_configs.HANDLER,
    describe_cluster.HANDLER,
    # Consumer groups (rivulet.broker.coordinator).
    find_coordinator.HANDLER,
    join_group.HANDLER,
    sync_group.HANDLER,
    heartbeat.HANDLER,
    leave_group.HANDLER,
    offset_commit.HANDLER,
    offset_fetch.HANDLER,
    describe_groups.HANDLER,
    list_groups.HANDLER,
    delete_groups.HANDLER,
    offset_delete.HANDLER,
    init_producer_id.HANDLER,
)
"""Every API the broker serves, in API key order where it matters to nobody."""
