"""Events in from the plant's systems: the Odoo sources at the start of the data path.

Two paths carry Odoo's changes into the log, and both mint the same event id for the same
change (a digest of model, id and ``write_date``), so the log's ``(source, id)`` dedup keeps
one whichever arrives first:

* the ``write_date`` poller of each ``systems.<name>.poll`` entry, the path that cannot miss:
  its watermark moves only after the events are in the log (a crash re-reads, never skips),
  and it re-reads an overlap window behind the watermark for records committed late;
* Odoo's "Send Webhook Notification" automations, the fast path: ``POST
  /hooks/odoo/<system>/<token>`` checks the token, appends the raw notification
  (``odoo.webhook.received.v1``) and answers at once — Odoo waits 1 s and never retries —
  then wakes the model's poller, or reads the record itself when no poller watches it (in
  this process: an API process has none). Odoo 17 and 18 notify before they commit, so the
  follow-up waits a moment first; 19 notifies after. A notification lost on the way, or
  read before its commit, is found by the poller's next pass: a model that matters needs a
  poller, with webhooks as the fast path beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .connections import Connections
from .envelope import SPECVERSION, Event, now_rfc3339
from .exceptions import ConfigError, ForgelineError, NotFound
from .log import Appended
from .systems import OdooPoll, OdooSystem, resolve_secret

__all__ = ["WEBHOOK_TYPE", "OdooSources"]

log = logging.getLogger(__name__)

WEBHOOK_TYPE = "odoo.webhook.received.v1"
_RETRY_AFTER_FAILURE = 5.0
#: Seconds to wait before reading what Odoo 17/18 announced from inside its transaction.
_UNCOMMITTED_GRACE = 1.5
_REMEMBERED = 10_000

Publish = Callable[[Sequence[Event]], Awaitable[list[Appended]]]


class OdooSources:
    """The pollers and webhook intake of every Odoo system in the config."""

    def __init__(self, connections: Connections, publish: Publish, state_dir: Path) -> None:
        self._connections = connections
        self._publish = publish
        self._state_dir = state_dir
        self._nudges: dict[tuple[str, str], asyncio.Event] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self._record_locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        # The write_date last published per record by a follow-up: an older read (two
        # notifications racing) is not published after a newer one.
        self._published: OrderedDict[tuple[str, str, int], str] = OrderedDict()
        self.polled: dict[tuple[str, str], int] = {}  # (system, model) -> events published

    def systems(self) -> dict[str, OdooSystem]:
        return {
            name: spec
            for name, spec in self._connections.systems.items()
            if isinstance(spec, OdooSystem)
        }

    def loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """``(name, run)`` of every poller, for the hub to supervise."""
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        for name, spec in self.systems().items():
            for poll in spec.poll:
                self._nudges[(name, poll.model)] = asyncio.Event()
                loops.append((f"odoo-poll:{name}:{poll.model}", self._poller(name, spec, poll)))
        return loops

    async def aclose(self) -> None:
        for task in list(self._fetches):
            task.cancel()
        for task in list(self._fetches):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the write_date pollers ------------------------------------------------------------

    def _poller(self, name: str, spec: OdooSystem, poll: OdooPoll) -> Callable[[], Awaitable[None]]:
        from .connectors.odoo import (
            JsonFileState,
            WriteDatePoller,
            odoo_source,
            record_to_event,
        )

        source = odoo_source(spec.url, spec.db)
        state = JsonFileState(self._state_dir / f"{name}.{poll.model}.json")
        nudge = self._nudges[(name, poll.model)]
        fields = _fields(spec, poll.model)

        async def run() -> None:
            poller: WriteDatePoller | None = None
            while True:
                nudge.clear()
                try:
                    client = await self._connections.odoo(name)
                    if poller is None:
                        poller = WriteDatePoller(
                            client,
                            poll.model,
                            fields,
                            domain=poll.domain,
                            overlap=timedelta(seconds=poll.overlap),
                            state=state,
                        )
                    while batch := await poller.poll():
                        events = [
                            record_to_event(poll.model, r, source=source, version=client.version)
                            for r in batch
                        ]
                        await self._publish(events)
                        await poller.commit()  # only once the events are durable
                        key = (name, poll.model)
                        self.polled[key] = self.polled.get(key, 0) + len(events)
                    wait = poll.every
                except ForgelineError as exc:  # Odoo down, log unavailable: try again later
                    if poller is not None:
                        poller.rewind()
                    log.warning("polling %s %s failed: %s", name, poll.model, exc)
                    wait = min(poll.every, _RETRY_AFTER_FAILURE)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                # cancellation that stops the hub when it lands as the nudge comes.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await nudge.wait()

        return run

    # -- the webhook intake ----------------------------------------------------------------

    async def webhook(self, system: str, token: str, body: bytes, payload: Any) -> Appended:
        """Take one notification; :class:`NotFound` for an unknown system *or* a wrong token
        (the caller cannot tell which). The raw notification is durable when this returns."""
        from .connectors.odoo import from_webhook_payload, odoo_source

        spec = self.systems().get(system)
        expected = None
        if spec is not None and spec.webhook_token:
            try:
                expected = resolve_secret(spec.webhook_token)
            except ConfigError as exc:  # refused like a wrong token; the operator is told
                log.error("the webhook token of system %s cannot be read: %s", system, exc)
        if (
            spec is None
            or expected is None
            or not hmac.compare_digest(token.encode(), expected.encode())
        ):
            raise NotFound("no such hook")
        change = from_webhook_payload(payload)  # InvalidInput (400) when it is not Odoo's shape
        source = odoo_source(spec.url, spec.db)
        raw = Event.from_dict(
            {
                "specversion": SPECVERSION,
                # Odoo never resends, so the same body twice is a replay: one event.
                "id": hashlib.sha256(body).hexdigest()[:32],
                "source": source,
                "type": WEBHOOK_TYPE,
                "time": now_rfc3339(),
                "subject": f"{change.model},{change.id}",
                "partitionkey": f"{change.model}:{change.id}",
                "datacontenttype": "application/json",
                "data": payload,
            }
        )
        (appended,) = await self._publish([raw])
        # Always followed up, duplicate or not: Odoo sends the same body for every change of
        # a record when no field is chosen, and each may be a change the log has not seen.
        task = asyncio.create_task(self._follow_up(system, spec, change.model, change.id))
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)
        return appended

    async def _follow_up(self, system: str, spec: OdooSystem, model: str, record_id: int) -> None:
        """Read what the notification announced, once it is committed."""
        from .connectors.odoo import odoo_source, record_to_event

        try:
            client = await self._connections.odoo(system)
            if (client.version or 0) < 19:
                # Odoo 17 and 18 notify from inside the transaction: the change is not
                # committed yet. Reading at once would see the state before it.
                await asyncio.sleep(_UNCOMMITTED_GRACE)
            nudge = self._nudges.get((system, model))
            if nudge is not None:
                nudge.set()  # the poller reads it, in write_date order, under its watermark
                return
            key = (system, model, record_id)
            async with self._record_locks.setdefault(key, asyncio.Lock()):
                records = await client.read(model, [record_id], _fields(spec, model))
                if not records:
                    return
                stamp = str(records[0].get("write_date") or "")
                if stamp < self._published.get(key, ""):
                    return  # a later state of this record is already in the log
                source = odoo_source(spec.url, spec.db)
                event = record_to_event(model, records[0], source=source, version=client.version)
                await self._publish([event])
                self._published[key] = stamp
                self._published.move_to_end(key)
                while len(self._published) > _REMEMBERED:
                    self._published.popitem(last=False)
            if not self._record_locks[key].locked():
                del self._record_locks[key]
        except ForgelineError as exc:
            log.warning(
                "following up %s %s,%d after its webhook failed (a poller would find it): %s",
                system,
                model,
                record_id,
                exc,
            )


def _fields(spec: OdooSystem, model: str) -> list[str]:
    """What a poller and a webhook follow-up read of ``model``: the same fields on both
    paths, so one change gets one event id (its values are part of it)."""
    from .connectors.odoo import COMMON_FIELDS, EVENT_FIELDS

    poll = spec.poll_for(model)
    return list((poll.fields if poll else None) or EVENT_FIELDS.get(model, COMMON_FIELDS))
