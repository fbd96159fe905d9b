"""The connection to an MQTT broker, with the three things aiomqtt 2.x does not expose.

aiomqtt (up to 2.5) drives paho-mqtt on the event loop and sends a PUBACK as soon as a
message is handed over; its pull request for manual acknowledgements (empicano/aiomqtt#346)
is not merged. paho-mqtt 2.x has them (``manual_ack_set``, ``ack``). So
:class:`BrokerConnection` subclasses ``aiomqtt.Client`` and reaches the paho client
underneath for exactly three things, all in this class and nowhere else:

* **manual PUBACK**: a message is acknowledged only when :meth:`ack` is called, which the
  source does once the message's batch is durable in the log;
* **the DUP flag** of each delivery (aiomqtt's ``Message`` drops it): the source's dedup of
  redelivered messages depends on it (see ``ingest``);
* **PUBACK reason codes** (MQTT 5): aiomqtt's ``publish`` waits for a PUBACK but throws its
  reason code away, so a broker refusing a publish would look like a success to a sink.

Deliveries go straight into a deque the source drains in batches (cheaper than aiomqtt's
queue-and-task per message). Both sides are on the event loop thread: aiomqtt reads the
socket from a loop reader callback, so paho's callbacks never race with the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ...exceptions import ConfigError
from .errors import MqttAuthError, classify_connect_error
from .options import BrokerOptions, Delivery

__all__ = ["BrokerConnection", "connect", "disconnect"]


class BrokerConnection(aiomqtt.Client):
    """One connection (``async with``); a new object for every reconnect."""

    def __init__(self, options: BrokerOptions, *, persistent: bool, manual_ack: bool) -> None:
        if persistent and not options.client_id:
            raise ConfigError("a persistent MQTT session needs a stable client_id")
        v5 = options.protocol == "5"
        properties: Properties | None = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            # Without a Session Expiry Interval an MQTT 5 session ends at disconnect, whatever
            # the clean-start flag says: the messages published meanwhile would be lost.
            properties.SessionExpiryInterval = options.session_expiry if persistent else 0
            properties.ReceiveMaximum = options.receive_maximum
        super().__init__(
            options.host,
            options.port,
            username=options.username,
            password=options.password,
            identifier=options.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # aiomqtt's default "clean on first connect" would wipe the session at every
            # process start: the opposite of what a persistent session is for.
            clean_session=None if v5 else not persistent,
            clean_start=(not persistent) if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=options.keepalive,
            timeout=options.timeout,
            tls_context=ssl.create_default_context() if options.tls else None,
            # Outgoing QoS 1 publishes allowed in flight at once (a sink under load).
            max_inflight_messages=options.receive_maximum,
        )
        self.options = options
        self.inbox: deque[Delivery] = deque()
        self.arrived = asyncio.Event()
        self._confirmations: dict[int, asyncio.Future[int]] = {}
        if manual_ack:
            self._client.manual_ack_set(True)

    # -- receiving ---------------------------------------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers refuse such topics; never crash on one anyway
            topic = bytes(message._topic).decode("utf-8", "replace")
        self.inbox.append(
            Delivery(
                topic=topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                dup=bool(message.dup),
                retain=bool(message.retain),
            )
        )
        self.arrived.set()

    def ack(self, delivery: Delivery) -> bool:
        """Send the PUBACK of a QoS 1 delivery; ``False`` if the connection is gone (the broker
        then redelivers the message to the session, flagged DUP)."""
        if delivery.qos == 0:
            return True
        return self._client.ack(delivery.mid, delivery.qos) == paho.MQTT_ERR_SUCCESS

    @property
    def lost(self) -> asyncio.Future[None]:
        """Done when the connection is gone (with the error, if it broke)."""
        return self._disconnected

    async def wait_for_messages(self, stop: asyncio.Event) -> None:
        """Until a delivery is waiting, ``stop`` is set, or the connection is lost (raises)."""
        while not self.inbox and not stop.is_set():
            self.arrived.clear()
            if self.inbox:
                return
            waiters: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(self.arrived.wait()),
                asyncio.ensure_future(stop.wait()),
            ]
            try:
                await asyncio.wait([*waiters, self.lost], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            self.raise_if_lost()

    def raise_if_lost(self) -> None:
        if self.lost.done():
            reason = self.lost.exception() if not self.lost.cancelled() else None
            raise aiomqtt.MqttError(f"connection lost: {reason or 'disconnected'}")

    async def subscribe_all(self, filters: Sequence[str], *, qos: int = 1) -> None:
        """Subscribe to every filter in one SUBSCRIBE; a refused one is a permanent error."""
        if self.options.protocol == "5":
            # Retain handling 1: retained messages only for a subscription the session did not
            # have yet, so a reconnect does not replay them as new events.
            topics: list[Any] = [(f, SubscribeOptions(qos=qos, retainHandling=1)) for f in filters]
        else:
            topics = [(f, qos) for f in filters]
        granted = await self.subscribe(topics)
        for topic_filter, code in zip(filters, granted, strict=False):
            value = getattr(code, "value", code)
            if isinstance(value, int) and value >= 0x80:
                raise MqttAuthError(
                    f"{self.options.address}: subscription to {topic_filter!r} refused "
                    f"(reason code 0x{value:02X}); check the broker's ACL"
                )

    # -- publishing --------------------------------------------------------------------------

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Any,
    ) -> None:
        waiter = self._confirmations.pop(mid, None)
        if waiter is not None and not waiter.done():
            code = getattr(reason_code, "value", reason_code)
            waiter.set_result(code if isinstance(code, int) else 0)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_confirmed(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
        timeout: float | None = None,
    ) -> int:
        """Publish and wait for the broker's PUBACK; answer its reason code (0 for QoS 0)."""
        self.raise_if_lost()
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        if qos == 0:
            return 0
        # paho calls on_publish for QoS 1 only from the socket reader, later on this thread:
        # registering the waiter after publish() returned cannot miss the PUBACK.
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._confirmations[info.mid] = waiter
        try:
            async with asyncio.timeout(timeout or self.options.timeout):
                pending: list[asyncio.Future[Any]] = [waiter, self.lost]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._confirmations.pop(info.mid, None)
        if not waiter.done():
            self.raise_if_lost()
        return waiter.result()


async def connect(
    options: BrokerOptions, *, persistent: bool, manual_ack: bool, where: str
) -> BrokerConnection:
    """An open connection, or a classified Forgeline error."""
    connection = BrokerConnection(options, persistent=persistent, manual_ack=manual_ack)
    try:
        await connection.__aenter__()
    except aiomqtt.MqttError as exc:
        raise classify_connect_error(exc, where) from exc
    return connection


async def disconnect(connection: BrokerConnection) -> None:
    """Close politely if the connection still stands; never raises (it is being dropped)."""
    with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
        await connection.__aexit__(None, None, None)
    if connection.lost.done() and not connection.lost.cancelled():
        connection.lost.exception()  # retrieved: no "exception never retrieved" at exit
