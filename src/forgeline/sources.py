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
  then wakes the model's poller, or fetches the record itself when no poller watches it.
  A notification lost on the way (or whose fetch fails) is found by the poller's next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .connections import Connections
from .envelope import SPECVERSION, Event, now_rfc3339
from .exceptions import ForgelineError, NotFound
from .log import Appended
from .systems import OdooPoll, OdooSystem, resolve_secret

__all__ = ["WEBHOOK_TYPE", "OdooSources"]

log = logging.getLogger(__name__)

WEBHOOK_TYPE = "odoo.webhook.received.v1"
_RETRY_AFTER_FAILURE = 5.0

Publish = Callable[[Sequence[Event]], Awaitable[list[Appended]]]


class OdooSources:
    """The pollers and webhook intake of every Odoo system in the config."""

    def __init__(self, connections: Connections, publish: Publish, state_dir: Path) -> None:
        self._connections = connections
        self._publish = publish
        self._state_dir = state_dir
        self._nudges: dict[tuple[str, str], asyncio.Event] = {}
        self._fetches: set[asyncio.Task[None]] = set()
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
            EVENT_FIELDS,
            JsonFileState,
            WriteDatePoller,
            odoo_source,
            record_to_event,
        )

        source = odoo_source(spec.url, spec.db)
        state = JsonFileState(self._state_dir / f"{name}.{poll.model}.json")
        nudge = self._nudges[(name, poll.model)]
        fields = poll.fields or list(EVENT_FIELDS.get(poll.model, ()))

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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), wait)

        return run

    # -- the webhook intake ----------------------------------------------------------------

    async def webhook(self, system: str, token: str, body: bytes, payload: Any) -> Appended:
        """Take one notification; :class:`NotFound` for an unknown system *or* a wrong token
        (the caller cannot tell which). The raw notification is durable when this returns."""
        from .connectors.odoo import from_webhook_payload, odoo_source

        spec = self.systems().get(system)
        expected = resolve_secret(spec.webhook_token) if spec and spec.webhook_token else None
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
        nudge = self._nudges.get((system, change.model))
        if nudge is not None:
            nudge.set()
        elif not appended.duplicate:
            task = asyncio.create_task(self._fetch(system, spec, change.model, change.id, source))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
        return appended

    async def _fetch(
        self, system: str, spec: OdooSystem, model: str, record_id: int, source: str
    ) -> None:
        from .connectors.odoo import EVENT_FIELDS, record_to_event

        try:
            client = await self._connections.odoo(system)
            fields = list(EVENT_FIELDS.get(model, ("id", "display_name", "write_date")))
            records = await client.read(model, [record_id], fields)
            if records:
                event = record_to_event(model, records[0], source=source, version=client.version)
                await self._publish([event])
        except ForgelineError as exc:
            log.warning(
                "fetching %s %s,%d after its webhook failed (the poller will find it): %s",
                system,
                model,
                record_id,
                exc,
            )
