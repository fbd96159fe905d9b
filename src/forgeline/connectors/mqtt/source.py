"""The MQTT source: messages from the broker into the log, acknowledged only once durable.

This is the first stage of the data path for the shop floor (MES, machines, gateways
publishing to Mosquitto). The loop, per connection::

    receive (paho callback)  ->  inbox  ->  batch (up to max_batch, lingering max_delay)
        ->  Ingest.store: one log append for the whole batch  ->  PUBACK every message

A PUBACK leaves only after the append returned, i.e. after the events are durable (SQLite
COMMIT with synchronous=FULL, Postgres commit, JetStream PubAck). A crash anywhere before
that leaves the message unacknowledged in the broker's session, which redelivers it on the
next connection; ``Ingest`` makes that redelivery a no-op in the log. So at QoS 1 nothing
is lost, and nothing is stored twice.

Why batches, and why that is what keeps Mosquitto from dropping: Mosquitto holds, per
client, ``max_inflight_messages`` (20) unacknowledged messages in flight — for MQTT 5 the
client's Receive Maximum instead — plus ``max_queued_messages`` (1,000) waiting behind
them, and *silently drops* what exceeds that ("Outgoing messages are being dropped"). A
consumer that does slow work per message before acknowledging falls behind a burst and
loses it (DESIGN.md §6: Node-RED lost 205 of 2,000). Here the slow work (the fsync) is paid
once per batch, and routing and delivery happen later, from the log, decoupled from ingest.
And the source asks for an in-flight window of 65,535 messages (MQTT 5 Receive Maximum):
a burst faster than the appends waits in the source's memory, unacknowledged, instead of
in the broker's 1,000-message queue. Measured here: 20,000 QoS 1 messages published in
0.7 s by ``mosquitto_pub`` all reached the log; with a window of 2,000, 13,000 of them were
dropped by Mosquitto.

The session is persistent (a stable client id, clean start off, a Session Expiry for MQTT
5): messages published while the source is down wait in the broker, up to its queue limits
(the broker settings a plant needs are in ``bench/mqtt_ingest.py``'s docstring). With a
``group``, every filter is subscribed as ``$share/<group>/<filter>`` and the broker spreads
messages over the group's members: several workers, each with its own client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import aiomqtt

from ..._lifecycle import AsyncResource
from ...exceptions import BackendError, ConfigError, ForgelineError
from .client import BrokerConnection, connect, disconnect
from .ingest import BatchResult, Ingest, Publish
from .options import BrokerOptions, Delivery
from .topics import TopicRule, shared

__all__ = ["Backoff", "MqttSource", "SourceStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential delays with downward jitter, for reconnects and failed appends."""

    initial: float = 0.2
    maximum: float = 15.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, failures: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, failures - 1))
        return base * (1.0 - self.jitter * random.random())


@dataclass(slots=True)
class SourceStats:
    received: int = 0
    appended: int = 0
    duplicates: int = 0
    quarantined: int = 0
    collisions: int = 0
    batches: int = 0
    connects: int = 0
    #: Connections that ended other than by ``aclose`` (broker restart, network, refusal).
    failures: int = 0
    append_failures: int = 0

    def add(self, result: BatchResult) -> None:
        self.appended += result.appended
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.collisions += result.collisions


class _Stopped(Exception):
    """Closing while an append kept failing: leave the batch unacknowledged."""


class MqttSource(AsyncResource):
    """Subscribes to ``rules``' filters at QoS 1 and appends what arrives with ``publish``
    (``log.append`` or the hub's ``publish``). ``open`` starts the loop in a task and
    returns at once (a broker that is down delays nothing: the loop retries); ``ready()``
    waits for the subscription; ``aclose`` lets the current batch finish and be
    acknowledged, then disconnects. ``run()`` is the same loop for a caller's own task."""

    def __init__(
        self,
        broker: BrokerOptions,
        rules: Sequence[TopicRule],
        publish: Publish,
        *,
        group: str | None = None,
        max_batch: int = 1000,
        max_delay: float = 0.002,
        max_payload: int = 256 * 1024,
        backoff: Backoff | None = None,
    ) -> None:
        if not broker.client_id:
            raise ConfigError(
                "an MQTT source needs a stable client_id: it names the persistent session "
                "that keeps messages while the source is down"
            )
        if not rules:
            raise ConfigError("an MQTT source needs at least one topic rule")
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self.broker = broker
        self.client_id = broker.client_id
        self.rules = list(rules)
        self.filters = [shared(rule.pattern, group) for rule in self.rules]
        self.group = group
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.backoff = backoff or Backoff()
        self.stats = SourceStats()
        self.ingest = Ingest(
            self.rules,
            session=broker.client_id,
            quarantine_source=f"mqtt://{broker.address}",
            max_payload=max_payload,
        )
        self._publish = publish
        self._stop = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The last connection failure, as a Forgeline error (for health checks).
        self.last_error: ForgelineError | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self.broker.protocol == "3.1.1":
            log.warning(
                "MQTT source %r speaks 3.1.1: the broker's max_inflight_messages (Mosquitto: "
                "20) bounds its window, and a burst beyond max_queued_messages is dropped; "
                "use MQTT 5 or raise both on the broker",
                self.client_id,
            )
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"mqtt-source:{self.client_id}"
            )
            self._task.add_done_callback(self._ended)

    async def run(self) -> None:
        """The loop in the calling task, until cancelled: for a supervisor that owns the
        task (the hub's). Cancelling may interrupt a batch between its append and its
        PUBACKs; the broker then redelivers it and the log recognises every message."""
        self._stop.clear()
        await self._run()

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until the source is connected and subscribed (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        try:
            # The batch being appended finishes and is acknowledged; then a clean DISCONNECT.
            async with asyncio.timeout(self.broker.timeout + 5):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _ended(self, task: asyncio.Task[None]) -> None:
        # A failure here is a bug (connection and log errors are retried inside): say so at
        # once rather than when someone finally closes the source.
        if not task.cancelled() and task.exception() is not None:
            log.error("MQTT source %r stopped", self.client_id, exc_info=task.exception())

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        where = f"MQTT source {self.client_id!r} at {self.broker.address}"
        while not self._stop.is_set():
            try:
                connection = await connect(
                    self.broker, persistent=True, manual_ack=True, where=where
                )
            except ForgelineError as exc:
                failures += 1
                self._failed(exc, failures, where)
                await self._pause(self.backoff.delay(failures))
                continue
            self.stats.connects += 1
            try:
                await connection.subscribe_all(self.filters)
                self._subscribed.set()
                failures = 0
                self.last_error = None
                await self._pump(connection)
            except (aiomqtt.MqttError, ForgelineError) as exc:
                failures += 1
                self._failed(exc, failures, where)
            except _Stopped:
                pass
            finally:
                self._subscribed.clear()
                await disconnect(connection)
            if failures:
                await self._pause(self.backoff.delay(failures))

    def _failed(self, exc: BaseException, failures: int, where: str) -> None:
        self.stats.failures += 1
        self.last_error = (
            exc if isinstance(exc, ForgelineError) else ForgelineError(f"{where}: {exc}")
        )
        level = logging.WARNING if failures < 5 else logging.ERROR
        log.log(level, "%s: %s; reconnecting (attempt %d)", where, exc, failures + 1)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _pump(self, connection: BrokerConnection) -> None:
        inbox = connection.inbox
        while True:
            await connection.wait_for_messages(self._stop)
            if not inbox:
                return  # stopping, nothing received: what the broker still has, it keeps
            if self.max_delay > 0 and len(inbox) < self.max_batch and not self._stop.is_set():
                # Linger briefly so a trickle still makes batches; under load the inbox fills
                # during the previous append and this wait is skipped.
                await asyncio.sleep(self.max_delay)
            count = min(len(inbox), self.max_batch)
            batch = [inbox.popleft() for _ in range(count)]
            self.stats.received += count
            await self._store(batch)
            self.stats.batches += 1
            # PUBACKs in the order the messages came, as MQTT requires, after they are durable.
            for delivery in batch:
                if not connection.ack(delivery):
                    connection.raise_if_lost()
            if self._stop.is_set():
                return  # what is still in the inbox stays unacknowledged: redelivered later

    async def _store(self, batch: list[Delivery]) -> None:
        failures = 0
        while True:
            try:
                self.stats.add(await self.ingest.store(batch, self._publish))
                return
            except BackendError as exc:
                # The log is down: keep the batch unacknowledged (the broker holds it, and
                # queues what follows up to its limits) and try again.
                failures += 1
                self.stats.append_failures += 1
                if self._stop.is_set():
                    raise _Stopped from exc
                log.warning("MQTT source %r: append failed (%s); retrying", self.client_id, exc)
                await self._pause(self.backoff.delay(failures))
