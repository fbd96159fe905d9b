"""The dispatcher: claims due deliveries with a lease, attempts them, records the outcome.

At-least-once: an outcome is recorded only after the attempt, so a crash in between leaves the
delivery ``inflight`` until its lease runs out and the next claim sends it again (with the same
``Idempotency-Key``). Outcomes of concurrent attempts are written in batches; a delivery whose
key is ordered is released for its successor only once its own outcome is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from ..connections import Connections
from ..envelope import Event
from ..exceptions import (
    BackendError,
    DeliveryError,
    ForgelineError,
    NotFound,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..log import EventLog
from ..metrics import Metrics
from ..route.router import SubscriptionTable
from ..route.subscription import FileSink, HttpSink, MqttSink, OdooSink, RestSink, WebhookSink
from ..store import Claim, Outcome, Store, Subscription
from ..store.base import Attempt
from .files import deliver_to_file
from .mqtt import deliver_to_mqtt
from .odoo import Binder, deliver_to_odoo
from .rest import RestSender
from .retry import Pacer, next_attempt_at
from .sinks import HttpSender, publish_derived
from .transform import Transform

if TYPE_CHECKING:
    from .webhooks import WebhookSender

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

#: Beyond the attempt timeout, how long a lease lasts: covers recording the outcome.
LEASE_MARGIN = 15.0
_MAX_CLAIM = 256
_IDLE_POLL = 1.0


class Dispatcher:
    def __init__(
        self,
        log: EventLog,
        store: Store,
        table: SubscriptionTable,
        sender: HttpSender,
        metrics: Metrics,
        *,
        owner: str,
        connections: Connections | None = None,
        transform: Transform | None = None,
        xref: Binder | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._log = log
        #: Signs and posts to webhook endpoints (``WebhookSink``); the hub wires it.
        self.webhooks = webhooks
        self._transform = transform
        self._xref = xref
        self._connections = connections or Connections({})
        self._store = store
        self._table = table
        self._sender = sender
        self._rest = RestSender(sender)  # shares the sender's session; holds OAuth2 tokens
        self._metrics = metrics
        self.owner = owner
        self._inflight: dict[str, int] = defaultdict(int)
        self._pacer = Pacer()  # policy.rate_limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._wake = asyncio.Event()
        self._outcome_ready = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        recorder = asyncio.create_task(self._record_loop(), name="dispatcher-outcomes")
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self._claim_round()
                    if claimed:
                        continue
                    due = await self._store.next_due()
                except BackendError:
                    log.exception("claiming failed; retrying in 1s")
                    await asyncio.sleep(1.0)
                    continue
                # Work already due but not claimed waits for a free slot or for an earlier
                # delivery of its key: recording an outcome wakes us for that, so only a
                # future due time (a retry) needs a timer. Polling it would spin when busy.
                now = time.time()
                timeout = _IDLE_POLL if due is None or due <= now else min(_IDLE_POLL, due - now)
                paced = self._next_paced(now)  # a rate-limited subscription's next slot
                if paced is not None:
                    timeout = min(timeout, paced - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            recorder.cancel()
            await self.drain()

    async def drain(self, grace: float = 5.0) -> None:
        """Let attempts in progress finish (up to ``grace`` seconds) and record them."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()  # its lease expires and another claim delivers it again
        await self._record_pending()

    async def _claim_round(self) -> int:
        now = time.time()
        wanted = [
            (
                sub,
                min(
                    _MAX_CLAIM,
                    sub.spec.policy.concurrency - self._inflight[sub.id],
                    self._pacer.room(sub.id, sub.spec.policy.rate_limit, now),
                ),
            )
            for sub in self._table.active()
        ]
        wanted = [(sub, room) for sub, room in wanted if room > 0]
        if not wanted:
            return 0
        # Claimed together, the subscriptions' claims share one group commit.
        batches = await asyncio.gather(
            *(
                self._store.claim(
                    sub, self.owner, room, sub.spec.policy.timeout + LEASE_MARGIN, now
                )
                for sub, room in wanted
            )
        )
        claims = [claim for batch in batches for claim in batch]
        if not claims:
            return 0
        records = await self._log.get_many([claim.position for claim in claims])
        events = {record.position: (record.event, record.recorded_at) for record in records}
        for (sub, _), batch in zip(wanted, batches, strict=True):
            self._pacer.take(sub.id, sub.spec.policy.rate_limit, len(batch), now)
            for claim in batch:
                self._inflight[sub.id] += 1
                task = asyncio.create_task(self._attempt(sub, claim, events.get(claim.position)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return len(claims)

    def _next_paced(self, now: float) -> float | None:
        slots = [
            self._pacer.next_free(sub.id, sub.spec.policy.rate_limit, now)
            for sub in self._table.active()
            if sub.spec.policy.rate_limit is not None
        ]
        return min((slot for slot in slots if slot is not None), default=None)

    async def _attempt(
        self, sub: Subscription, claim: Claim, found: tuple[Event, float] | None
    ) -> None:
        started = time.time()
        clock = time.perf_counter()
        policy = sub.spec.policy
        status: int | None = None
        try:
            if found is None:
                raise PermanentDeliveryError("the event is no longer in the log (retention)")
            event, recorded_at = found
            original = event
            if self._transform is not None:
                event = await self._transform.apply(sub.spec, event)
            sink = sub.spec.sink
            if isinstance(sink, HttpSink):
                status = (await self._sender.send(sink, event, policy.timeout)).status
            elif isinstance(sink, RestSink):
                status = (await self._rest.send(sink.rest, event, policy.timeout)).status
            elif isinstance(sink, WebhookSink):
                # Signing, 410 (disables the endpoint), "Webhook-Delivery: abort" and the
                # endpoint's failing streak are the sender's: it raises what the rest means.
                if self.webhooks is None:
                    raise TransientDeliveryError("webhook endpoints are not wired in this hub")
                status = (await self.webhooks.send(sub, event, policy.timeout)).status
            elif isinstance(sink, OdooSink | MqttSink | FileSink):
                if isinstance(sink, OdooSink):
                    peer = "Odoo"
                    effect = deliver_to_odoo(self._connections, sink.odoo, event, xref=self._xref)
                elif isinstance(sink, FileSink):
                    peer = "the outbox"
                    effect = deliver_to_file(self._connections, sink.file, event)
                else:
                    peer = "the MQTT broker"
                    effect = deliver_to_mqtt(self._connections, sink.mqtt, event, policy.timeout)
                try:
                    await asyncio.wait_for(effect, policy.timeout)
                except TimeoutError as exc:
                    raise TransientDeliveryError(
                        f"{peer} did not finish within {policy.timeout:g}s"
                    ) from exc
                except NotFound as exc:
                    # The system left the config (or changed kind) after the subscription.
                    raise PermanentDeliveryError(exc.detail) from exc
            else:
                try:
                    origin = self._transform.origin_of(original) if self._transform else None
                    await publish_derived(self._log, sink, sub.id, event, origin=origin)
                except BackendError as exc:
                    raise TransientDeliveryError(f"publishing failed: {exc}") from exc
        except DeliveryError as exc:
            outcome = self._failed(sub, claim, exc, started, clock)
        except ForgelineError as exc:  # e.g. a secret reference that cannot be read now
            failure = TransientDeliveryError(f"{type(exc).__name__}: {exc.detail}")
            outcome = self._failed(sub, claim, failure, started, clock)
        except Exception as exc:
            # A bug or an unforeseen driver error: recorded as a failed attempt, so the
            # retry budget applies and the delivery ends dead instead of in flight for ever.
            log.exception("delivery %d to %s failed unexpectedly", claim.delivery_id, sub.id)
            failure = TransientDeliveryError(f"internal error: {type(exc).__name__}: {exc}")
            outcome = self._failed(sub, claim, failure, started, clock)
        else:
            self._metrics.delivered(sub.spec.name, time.time() - recorded_at)
            attempt = Attempt(claim.attempt, started, _ms(clock), "delivered", status)
            outcome = Outcome(claim, self.owner, attempt)
        finally:
            self._inflight[sub.id] -= 1
        self._outcomes.append(outcome)
        self._outcome_ready.set()

    def _failed(
        self, sub: Subscription, claim: Claim, exc: DeliveryError, started: float, clock: float
    ) -> Outcome:
        due = None
        if isinstance(exc, TransientDeliveryError):
            due = next_attempt_at(
                sub.spec.policy.retry,
                failures=claim.round_attempt,
                round_started_at=claim.round_started_at,
                now=time.time(),
                retry_after=exc.retry_after,
            )
        verdict: Literal["retry", "dead"] = "retry" if due is not None else "dead"
        self._metrics.failed(sub.spec.name, verdict)
        attempt = Attempt(
            claim.attempt,
            started,
            _ms(clock),
            verdict,
            exc.http_status,
            exc.detail,
            exc.response_excerpt,
        )
        return Outcome(claim, self.owner, attempt, next_due=due)

    async def _record_loop(self) -> None:
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            try:
                await self._record_pending()
            except BackendError:
                log.exception("recording outcomes failed; retrying in 1s")
                self._outcome_ready.set()
                await asyncio.sleep(1.0)

    async def _record_pending(self) -> None:
        batch: Sequence[Outcome]
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await self._store.record_outcomes(batch, time.time())
        except BackendError:
            self._outcomes[:0] = batch  # keep them: recording is retried, not skipped
            raise
        self.wake()  # ordered keys and concurrency slots were freed


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000.0, 3)
