"""The file sink on the deliver stage: one event joins a batch written into a partner's outbox.

The dispatcher hands over an event and the subscription's :class:`FileOutbox`; the system's
shared ``FileSink`` (held in ``Connections``) adds it to the batch of its target and returns
once the file holding it is durable under its final name (temp, fsync, rename). A full disk
or a missing share is a transient failure, retried on the subscription's schedule; an event
that cannot fill the file name (no subject for ``{subject}``) is permanent.

At-least-once, like every sink: an event whose delivery was not recorded before a crash is
written again into a later file; each line (or an ``id`` column) carries the event id.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ..connections import Connections
from ..envelope import Event

if TYPE_CHECKING:
    from ..connectors.files import FileOutbox, OutboxTarget

__all__ = ["deliver_to_file"]


@lru_cache(maxsize=1024)
def _target(spec: FileOutbox) -> OutboxTarget:
    # One target per subscription: batches are keyed by it, so it must be the same object.
    return spec.target()


async def deliver_to_file(connections: Connections, spec: FileOutbox, event: Event) -> None:
    sink = await connections.file_sink(spec.system)
    await sink.write(event, _target(spec))
