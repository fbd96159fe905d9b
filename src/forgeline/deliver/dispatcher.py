"""The dispatcher: claims due deliveries with a lease, attempts them, records the outcome.

At-least-once: an outcome is recorded only after the attempt, so a crash in between leaves the
delivery ``inflight`` until its lease runs out and the next claim sends it again (with the same
``Idempotency-Key``). A delivery whose key is ordered is released for its successor only once
its own outcome is on disk.

How the sinks are kept busy. Each subscription has a lane in this process: the deliveries it
claimed and has not started yet, and up to ``policy.concurrency`` workers taking them in
position order. A round (``Store.settle``) records the outcomes of finished attempts, hands
back what will not be attempted and claims again, in that order and - on SQLite - in one
commit. A lane claims up to sixteen times its concurrency, so while a round is on its way to
disk the workers go on with the deliveries at hand instead of waiting for it (a round claims
what the one before saw consumed). Under load a round takes 10-60 ms: the store's thread
waits for the busy event loop to hand it the GIL at every statement. A lane of 32 workers to a
fast receiver goes through up to 300 deliveries meanwhile; at four times its concurrency its
workers sat idle through most rounds. A lane of slower attempts claims less far ahead
(``_Lane.room``: the wait must fit its leases), and a lane whose attempts were never timed
claims four times its concurrency until they are. A claim waiting in a lane
is attempted only while its lease still covers the attempt (its timeout) and the recording of
its outcome; one that waited too long is handed back unattempted, so claiming ahead never lets
a lease run out under an attempt in progress. A lane that had to do so lately (its attempts are
that slow), and a rate-limited one (its pace is kept when claiming), claim no further ahead
than their workers can start.

A round claims only for the lanes that may have work: those the router just created
deliveries for, those whose outcomes or hand-backs were just recorded (a freed key, a retry due
at once), and every lane at least once a second and when a due time or a wake comes (a retry
falling due, a lease run out elsewhere, a replay). A lane whose claim came back short has no
more until one of those happens: a busy subscription's round does not wait on a query for
every idle one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..connections import Connections
from ..exceptions import (
    BackendError,
    DeliveryError,
    ForgelineError,
    NotFound,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..log import EventLog, RecentRecords, Record
from ..metrics import Metrics
from ..route.router import SubscriptionTable
from ..route.subscription import FileSink, HttpSink, MqttSink, OdooSink, RestSink, WebhookSink
from ..store import Claim, ClaimRequest, Outcome, Store, Subscription
from ..store.base import Attempt
from ..webhooks.egress import EgressRefused
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

#: Beyond the attempt timeout, how long a lease lasts: covers waiting in the lane and
#: recording the outcome.
LEASE_MARGIN = 15.0
#: Of the margin, what must be left after an attempt for its outcome to reach the store.
_RECORDING = 5.0
#: How many deliveries a lane holds (claimed, waiting or being attempted) per unit of
#: concurrency: enough to keep the workers busy while a round commits (4 left 32 workers to a
#: fast receiver idle through most rounds under load, and cost a tenth of the throughput).
_AHEAD = 16
#: The same, for a lane none of whose attempts was timed yet: it may be a slow sink.
_FIRST_AHEAD = 4
_MAX_CLAIM = 256
_IDLE_POLL = 1.0
#: How long a lane whose claim waited too long claims only what its workers can start.
_SLOW_FOR = 60.0
#: Routed records kept in memory for the claims that follow: most deliveries are claimed
#: moments after their event was routed, and need not read it back from the log.
_RECENT = 4096
#: Records read on past a dense run of claims the cache missed.
_READ_AHEAD = 1024


@dataclass(slots=True)
class _Held:
    claim: Claim
    record: Record | None  # None: no longer in the log (retention)
    lease_until: float


class _Lane:
    """One subscription's deliveries in this process."""

    __slots__ = ("drained", "hints", "slow_until", "sub", "typical", "waiting", "workers")

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.waiting: deque[_Held] = deque()
        self.workers = 0
        #: Until then, claim no further ahead than the workers: a claim waited too long.
        self.slow_until = 0.0
        #: Counts what may have made deliveries claimable; ``drained`` is the count a claim
        #: that came back short started from. Equal: nothing to claim until the next hint.
        self.hints = 1
        self.drained = 0
        #: Seconds an attempt of this lane takes, smoothed (None: none timed yet): how far
        #: ahead it may claim.
        self.typical: float | None = None

    def hint(self) -> None:
        self.hints += 1

    @property
    def hungry(self) -> bool:
        return self.hints != self.drained

    def took(self, seconds: float) -> None:
        typical = self.typical
        self.typical = seconds if typical is None else typical + (seconds - typical) * 0.2

    def room(self, now: float) -> int:
        policy = self.sub.spec.policy
        if policy.rate_limit is not None or now < self.slow_until:
            # A rate-limited lane never claims ahead: its pace is kept when claiming, so a
            # claim must start when made (claims piled up behind a slow attempt would go out
            # at once).
            ahead = 1
        elif self.typical is None:
            ahead = _FIRST_AHEAD
        else:
            # The last claim waits (ahead - 1) attempts before its own and must still start
            # within its lease's margin: counting twice the typical attempt leaves room for
            # slower ones. Fast sinks get _AHEAD; a few seconds an attempt, less.
            budget = (LEASE_MARGIN - _RECORDING) / (2.0 * self.typical + 1e-9)
            ahead = min(_AHEAD, 1 + int(budget))
        return ahead * policy.concurrency - len(self.waiting) - self.workers


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
        tenant_sender: HttpSender,
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
        #: For a tenant's url and rest sinks: a session behind the egress policy (SSRF).
        self._tenant_sender = tenant_sender
        self._tenant_rest = RestSender(tenant_sender)
        self._metrics = metrics
        self.owner = owner
        self._lanes: dict[str, _Lane] = {}
        self._attempting = 0
        self._pacer = Pacer()  # policy.rate_limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._released: list[Claim] = []
        self._recent = RecentRecords(_RECENT)
        self._wake = asyncio.Event()
        #: When (monotonic) every lane is claimed for again, hinted or not.
        self._sweep_at = 0.0

    def wake(self) -> None:
        """Something changed that no hint covers (a replay, a subscription): claim for all."""
        self._sweep_at = 0.0
        self._wake.set()

    def routed(self, records: Sequence[Record], subscriptions: set[str]) -> None:
        """The router created deliveries for these records and subscriptions: keep the
        records at hand, and claim for those subscriptions."""
        self._recent.add(records)
        for sub_id in subscriptions:
            self._hint(sub_id)
        self._wake.set()

    def _hint(self, sub_id: str) -> None:
        lane = self._lanes.get(sub_id)
        if lane is not None:  # a lane made later starts hungry
            lane.hint()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    settled = await self._round()
                except BackendError:
                    log.exception("claiming or recording failed; retrying in 1s")
                    await asyncio.sleep(1.0)
                    continue
                if settled:
                    continue  # outcomes recorded free keys and room: claim again at once
                now = time.time()
                if self._attempting or any(lane.workers for lane in self._lanes.values()):
                    # Their outcomes wake us; a retry falling due meanwhile is claimed by the
                    # next sweep. (Workers just started have no attempt yet: not idle either,
                    # and the query below reads every open delivery.)
                    timeout = _IDLE_POLL
                else:
                    try:
                        due = await self._store.next_due()
                    except BackendError:
                        log.exception("reading the next due time failed")
                        due = None
                    # Work already due but not claimed waits for an earlier delivery of its
                    # key (recording that outcome hints its lane) or for the sweep; only a
                    # future due time (a retry) needs a timer. Polling it would spin.
                    timeout = (
                        _IDLE_POLL if due is None or due <= now else min(_IDLE_POLL, due - now)
                    )
                paced = self._next_paced(now)  # a rate-limited subscription's next slot
                sweep = True  # what the timer firing means: every lane, or the paced ones
                if paced is not None and paced - now < timeout:
                    timeout, sweep = paced - now, False
                try:
                    async with asyncio.timeout(max(0.0, timeout)):
                        await self._wake.wait()
                except TimeoutError:
                    if sweep:
                        self._sweep_at = 0.0  # a due time came: it names no lane
                    else:
                        for lane in self._lanes.values():  # a slot came: theirs alone
                            if lane.sub.spec.policy.rate_limit is not None:
                                lane.hint()
        finally:
            await self.drain()

    async def drain(self, grace: float = 5.0) -> None:
        """Let attempts in progress finish (up to ``grace`` seconds), hand back the claims
        not started, and record it all."""
        for lane in self._lanes.values():
            self._release(lane)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()  # its lease expires and another claim delivers it again
        await self._round(claim=False)

    async def _round(self, *, claim: bool = True) -> int:
        """Record, release, claim: answers how much was recorded, released or claimed."""
        now = time.time()
        wanted = self._wanted(now) if claim else []
        outcomes, self._outcomes = self._outcomes, []
        released, self._released = self._released, []
        if not (wanted or outcomes or released):
            return 0
        requests = [
            ClaimRequest(lane.sub, room, lane.sub.spec.policy.timeout + LEASE_MARGIN)
            for lane, room, _ in wanted
        ]
        try:
            batches = await self._store.settle(
                self.owner, now, outcomes=outcomes, released=released, claims=requests
            )
        except BaseException:
            # Kept, to be recorded with the next round: never skipped.
            self._outcomes[:0] = outcomes
            self._released[:0] = released
            raise
        for (lane, _, hints), request, batch in zip(wanted, requests, batches, strict=True):
            if len(batch) < request.limit:
                lane.drained = hints  # all there was, unless a hint came since
        claimed = sum(map(len, batches))
        if claimed:
            try:
                records = await self._records([c.position for batch in batches for c in batch])
            except BaseException:
                # Claimed on disk, but not at hand: handed back with the next round, and
                # claimed again after.
                self._released.extend(claim for batch in batches for claim in batch)
                for lane, _, _ in wanted:
                    lane.hint()
                raise
            for (lane, _, _), request, batch in zip(wanted, requests, batches, strict=True):
                policy = lane.sub.spec.policy
                self._pacer.take(lane.sub.id, policy.rate_limit, len(batch), now)
                lease_until = now + request.lease
                lane.waiting.extend(
                    _Held(claim, records.get(claim.position), lease_until) for claim in batch
                )
                self._staff(lane)
        return claimed + len(outcomes) + len(released)

    def _wanted(self, now: float) -> list[tuple[_Lane, int, int]]:
        """The lanes of the subscriptions in force that may have work, with the room each has
        to claim and its hints so far."""
        clock = time.monotonic()
        if clock >= self._sweep_at:
            self._sweep_at = clock + _IDLE_POLL
            for kept in self._lanes.values():
                kept.hint()
        lanes: dict[str, _Lane] = {}
        for sub in self._table.active():
            lane = self._lanes.pop(sub.id, None) or _Lane(sub)
            lane.sub = sub  # its spec as it is now (an update changes where it sends)
            lanes[sub.id] = lane
        for gone in self._lanes.values():  # disabled or deleted: not one more attempt
            self._release(gone)
        self._lanes = lanes
        wanted = []
        for lane in lanes.values():
            self._staff(lane)  # a worker that stopped on a bug left deliveries waiting
            if not lane.hungry:
                continue
            policy = lane.sub.spec.policy
            room = min(
                _MAX_CLAIM, lane.room(now), self._pacer.room(lane.sub.id, policy.rate_limit, now)
            )
            if room > 0:
                wanted.append((lane, room, lane.hints))
        return wanted

    async def _records(self, positions: list[int]) -> dict[int, Record]:
        found: dict[int, Record] = {}
        missing: list[int] = []
        for position in positions:
            record = self._recent.get(position)
            if record is None:
                missing.append(position)
            else:
                found[position] = record
        if not missing:
            return found
        first, span = min(missing), max(missing) - min(missing) + 1
        if span <= 2 * len(missing):
            # A dense run (a backlog, or a burst the router ran ahead of the cache with): the
            # next rounds will claim what follows it. Reading on from here now is one trip to
            # the log (its reader thread: a GIL handoff that stalls the loop, on this VM kind
            # for up to a few hundred microseconds) where each round would make its own.
            ahead = await self._log.read(first - 1, min(_READ_AHEAD, 8 * span))
            self._recent.add(ahead)
            wanted = set(missing)
            for record in ahead:
                if record.position in wanted:
                    found[record.position] = record
            missing = [position for position in missing if position not in found]
        if missing:
            for record in await self._log.get_many(missing):
                found[record.position] = record
        return found

    def _release(self, lane: _Lane) -> None:
        self._released.extend(held.claim for held in lane.waiting)
        lane.waiting.clear()

    def _staff(self, lane: _Lane) -> None:
        """Start workers for the waiting deliveries, up to the concurrency."""
        # A worker takes the next waiting delivery only once its attempt is over: the ones
        # waiting need workers of their own, up to the concurrency.
        wanted = min(lane.sub.spec.policy.concurrency - lane.workers, len(lane.waiting))
        for _ in range(wanted):
            lane.workers += 1
            task = asyncio.create_task(self._work(lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.waiting:
                held = lane.waiting.popleft()
                timeout = lane.sub.spec.policy.timeout
                now = time.time()
                if held.lease_until - now < timeout + _RECORDING:
                    self._released.append(held.claim)  # claimed again, with a fresh lease
                    lane.slow_until = now + _SLOW_FOR  # attempts this slow: stop claiming ahead
                    lane.hint()
                    self._wake.set()
                    continue
                began = time.monotonic()
                await self._attempt(lane.sub, held.claim, held.record)
                lane.took(time.monotonic() - began)
        finally:
            lane.workers -= 1

    def _next_paced(self, now: float) -> float | None:
        slots = [
            self._pacer.next_free(sub.id, sub.spec.policy.rate_limit, now)
            for sub in self._table.active()
            if sub.spec.policy.rate_limit is not None
        ]
        return min((slot for slot in slots if slot is not None), default=None)

    async def _attempt(self, sub: Subscription, claim: Claim, found: Record | None) -> None:
        self._attempting += 1
        started = time.time()
        clock = time.perf_counter()
        policy = sub.spec.policy
        status: int | None = None
        try:
            if found is None:
                raise PermanentDeliveryError("the event is no longer in the log (retention)")
            event, recorded_at = found.event, found.recorded_at
            original = event
            if self._transform is not None and self._transform.applies(sub.spec):
                event = await self._transform.apply(sub.spec, event)
            sink = sub.spec.sink
            tenant = sub.spec.tenant is not None
            if isinstance(sink, HttpSink):
                sender = self._tenant_sender if tenant else self._sender
                status = (await sender.send(sink, event, policy.timeout)).status
            elif isinstance(sink, RestSink):
                rest = self._tenant_rest if tenant else self._rest
                status = (await rest.send(sink.rest, event, policy.timeout)).status
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
        except EgressRefused as exc:
            # The URL is fine, but its name leads somewhere a tenant's request must not go
            # now: dead at once with the rule, as a webhook endpoint's attempt.
            refused = PermanentDeliveryError(f"refused by the egress policy: {exc.detail}")
            outcome = self._failed(sub, claim, refused, started, clock)
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
            self._attempting -= 1
        self._outcomes.append(outcome)
        self._hint(sub.id)  # recorded, it may free its key, or fall due again at once
        self._wake.set()

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


def _ms(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000.0, 3)
