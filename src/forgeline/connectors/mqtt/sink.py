"""The MQTT sink: the deliver stage's last hop to a broker (an event, or its data, at QoS 1).

One attempt per call, like every sink; the dispatcher owns the retries. The attempt succeeds
when the broker's PUBACK arrived with a success code, so "delivered" means the broker took
responsibility for the message. Failures are classified in ``errors``: a lost or refused
connection and a missing PUBACK are transient; a PUBACK refusing the publish (MQTT 5: not
authorised, topic name invalid, packet too large) and a topic the event cannot fill are
permanent.

Payloads follow the CloudEvents MQTT binding: ``payload="event"`` sends the structured event
(content type ``application/cloudevents+json``); ``payload="data"`` sends the data alone and,
on MQTT 5, the event's attributes as User Properties (binary mode), so a subscriber that
wants them still has them.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..._lifecycle import AsyncResource
from ...envelope import STRUCTURED_CONTENT_TYPE, Event
from .client import BrokerConnection, connect, disconnect
from .errors import MqttTimeout, MqttUnavailable, classify_puback
from .options import BrokerOptions
from .topics import MqttTarget

__all__ = ["MqttSink"]

# In binary mode the data is the payload and its content type the Content Type property.
_NOT_PROPERTIES = frozenset({"data", "data_base64", "datacontenttype"})


class MqttSink(AsyncResource):
    """A publishing connection to one broker, opened on first use and reopened after a loss.

    Its client id is the broker's with ``-sink-<random>`` appended (or the broker's choice
    when none is set): it must never be the source's, or each would disconnect the other.
    """

    def __init__(self, broker: BrokerOptions) -> None:
        suffix = f"-sink-{secrets.token_hex(4)}"
        client_id = f"{broker.client_id}{suffix}" if broker.client_id else f"forgeline{suffix}"
        self.broker = broker.with_client_id(client_id)
        self._connection: BrokerConnection | None = None
        self._lock = asyncio.Lock()
        self._where = f"MQTT sink at {broker.address}"

    async def open(self) -> None:
        await self._connected()

    async def aclose(self) -> None:
        async with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            await disconnect(connection)

    async def _connected(self) -> BrokerConnection:
        connection = self._connection
        if connection is not None and not connection.lost.done():
            return connection
        async with self._lock:
            if self._connection is not None and not self._connection.lost.done():
                return self._connection
            if self._connection is not None:
                await disconnect(self._connection)
                self._connection = None
            self._connection = await connect(
                self.broker, persistent=False, manual_ack=False, where=self._where
            )
            return self._connection

    async def publish(
        self, event: Event, target: MqttTarget, *, timeout: float | None = None
    ) -> None:
        """Publish ``event`` as ``target`` says and wait for the PUBACK (QoS 1)."""
        topic = target.render(event)
        v5 = self.broker.protocol == "5"
        if target.payload == "event":
            payload = event.to_json()
            properties = _properties(STRUCTURED_CONTENT_TYPE, None) if v5 else None
        else:
            payload = _data_bytes(event)
            attributes = {k: v for k, v in event.to_dict().items() if k not in _NOT_PROPERTIES}
            content = event.datacontenttype or "application/json"
            properties = _properties(content, attributes) if v5 else None
        await self.publish_raw(
            topic,
            payload,
            qos=target.qos,
            retain=target.retain,
            properties=properties,
            timeout=timeout,
        )

    async def publish_raw(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        timeout: float | None = None,
    ) -> None:
        connection = await self._connected()
        try:
            code = await connection.publish_confirmed(
                topic, payload, qos=qos, retain=retain, properties=properties, timeout=timeout
            )
        except TimeoutError:
            await self._drop(connection)
            raise MqttTimeout(f"{self._where}: no PUBACK for {topic!r} in time") from None
        except aiomqtt.MqttError as exc:
            await self._drop(connection)
            raise MqttUnavailable(f"{self._where}: publish to {topic!r} failed: {exc}") from exc
        failure = classify_puback(code, topic)
        if failure is not None:
            raise failure

    async def _drop(self, connection: BrokerConnection) -> None:
        # A publish without its PUBACK leaves the connection in doubt: start the next one clean.
        async with self._lock:
            if self._connection is connection:
                self._connection = None
        await disconnect(connection)


def _data_bytes(event: Event) -> bytes:
    if event.data_base64 is not None:
        return base64.b64decode(event.data_base64)
    if isinstance(event.data, bytes):
        return event.data
    if isinstance(event.data, str) and not (event.datacontenttype or "").endswith("json"):
        return event.data.encode()
    return orjson.dumps(event.data)


def _properties(content_type: str, attributes: dict[str, Any] | None) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = content_type
    if attributes:
        properties.UserProperty = [(name, str(value)) for name, value in attributes.items()]
    return properties
