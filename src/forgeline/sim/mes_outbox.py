"""The simulated MES's outbound path: a store-and-forward queue sending to MQTT or over HTTP.

A shop-floor gateway does not drop what it could not send: messages wait here, in the order the
MES produced them, and leave only when the broker acknowledged them at QoS 1 (PUBACK) or the
HTTP receiver answered 2xx. One message is in flight at a time, so order holds across broker
restarts and outages; a message resent after a lost acknowledgement is a duplicate with the
same ``msgId`` (at-least-once). ``PublishFaults`` stalls the sender on purpose.

Without a broker the same bodies are POSTed to one URL with ``X-MES-Topic`` and
``X-MES-Message-Type`` headers; a 4xx answer (but 408/429) means the receiver refuses that
message for good, so it is set aside in ``refused`` and the queue moves on.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from .plant_faults import PublishFaults

if TYPE_CHECKING:
    import aiomqtt

__all__ = ["Message", "Outbox"]


@dataclass(frozen=True)
class Message:
    kind: str  # "state" | "consumption" | "production": the topic's last level
    topic: str
    body: dict[str, Any]


class Outbox:
    """``broker`` (``mqtt://[user:pass@]host:port``) wins over ``post_to`` (an HTTP URL); with
    neither, messages count as sent at once (kept in ``sent`` only). ``on_change`` is called
    whenever the queue shrinks (the MES saves its state file)."""

    def __init__(
        self,
        *,
        broker: str | None,
        post_to: str | None,
        client_id: str,
        faults: PublishFaults,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker, self.post_to, self.client_id = broker, post_to, client_id
        self.faults = faults
        self.on_change = on_change
        self.queue: deque[Message] = deque()
        self.sent: deque[Message] = deque(maxlen=5000)  # acknowledged, in order
        self.refused: list[tuple[Message, int]] = []  # the HTTP receiver answered 4xx
        self._changed = asyncio.Event()

    def put(self, message: Message) -> None:
        self.queue.append(message)
        self._changed.set()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued message was acknowledged (tests; shutdown)."""
        async with asyncio.timeout(timeout):
            while self.queue:
                self._changed.clear()
                await self._changed.wait()

    async def run(self) -> None:
        """Send until cancelled."""
        if self.broker is not None:
            await self._mqtt(self.broker)
        else:
            await self._http(self.post_to)

    async def _next(self) -> Message:
        while not self.queue:
            self._changed.clear()
            await self._changed.wait()
        await self.faults.gate()
        return self.queue[0]

    def _done(self, refused: int | None = None) -> None:
        # Only now does the message leave the queue: a crash or an outage before the
        # acknowledgement sends it again.
        message = self.queue.popleft()
        if refused is None:
            self.sent.append(message)
        else:
            self.refused.append((message, refused))
        self._changed.set()
        self.on_change()

    async def _mqtt(self, broker: str) -> None:
        import aiomqtt

        url = urlsplit(broker if "://" in broker else f"mqtt://{broker}")
        while True:
            try:
                async with aiomqtt.Client(
                    url.hostname or "127.0.0.1",
                    url.port or 1883,
                    identifier=self.client_id,
                    username=url.username,
                    password=url.password,
                    timeout=5,
                ) as client:
                    while True:
                        message = await self._next()
                        await _publish(client, message)
                        self._done()
            except aiomqtt.MqttError:
                # Broker gone or restarting: the unacknowledged message stays first in line.
                await asyncio.sleep(0.5)

    async def _http(self, url: str | None) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            backoff = 0.1
            while True:
                message = await self._next()
                if url is None:
                    self._done()
                    continue
                headers = {"X-MES-Topic": message.topic, "X-MES-Message-Type": message.kind}
                status: int | None = None
                try:
                    async with session.post(url, json=message.body, headers=headers) as answer:
                        status = answer.status
                        await answer.read()
                except (aiohttp.ClientError, TimeoutError, OSError):
                    status = None
                if status is not None and 200 <= status < 300:
                    self._done()
                    backoff = 0.1
                elif status is not None and 400 <= status < 500 and status not in (408, 429):
                    self._done(refused=status)
                else:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)


async def _publish(client: aiomqtt.Client, message: Message) -> None:
    """Publish at QoS 1 and wait for the PUBACK, or fail as soon as the connection drops.

    aiomqtt leaves a pending publish waiting for its timeout when the link dies under it;
    racing the client's disconnection future (as aiomqtt's own message iterator does) turns
    an outage into a prompt reconnect, and retrieving that future's exception keeps asyncio
    from logging it as never retrieved."""
    import aiomqtt

    sent = asyncio.ensure_future(client.publish(message.topic, orjson.dumps(message.body), qos=1))
    gone = client._disconnected
    await asyncio.wait({sent, gone}, return_when=asyncio.FIRST_COMPLETED)
    if sent.done():
        sent.result()
        return
    sent.cancel()
    with suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await sent
    error = gone.exception()
    raise aiomqtt.MqttError("the broker connection dropped before the PUBACK") from error
