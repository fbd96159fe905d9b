"""Outgoing webhooks: how the simulated Odoo POSTs "Send Webhook Notification" automations.

The simulator calls ``webhook_sender(url, body)`` after a commit; ``WebhookSender`` posts the
body as Odoo does: only ``Content-Type: application/json`` (no signature, no auth), a 1 s
timeout, no retry, fire-and-forget on the server's event loop so the RPC call that triggered it
never waits for, nor fails because of, the receiver. A bounded log of attempts lets tests and
``GET /__sim__/webhooks`` check what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..._lifecycle import AsyncResource

__all__ = ["WebhookAttempt", "WebhookSender"]

TIMEOUT_SECONDS = 1.0  # Odoo's requests.post(..., timeout=1)


@dataclass(frozen=True)
class WebhookAttempt:
    url: str
    body: bytes
    status: int | None  # None: no HTTP answer (refused, timed out, reset)
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "body": self.body.decode(errors="replace"),
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 4),
        }


class WebhookSender(AsyncResource):
    """The simulator's ``webhook_sender``: callable from the loop's thread or any other."""

    def __init__(self, *, timeout: float = TIMEOUT_SECONDS, keep: int = 200) -> None:
        self.timeout = timeout
        self.attempts: deque[WebhookAttempt] = deque(maxlen=keep)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # No User-Agent of ours, no cookies between receivers: only what Odoo sends.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
            )

    async def aclose(self) -> None:
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __call__(self, url: str, body: bytes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not serving: Odoo without network would lose the notification too
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start(url, body)
        else:
            loop.call_soon_threadsafe(self._start, url, body)

    def _start(self, url: str, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._post(url, body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, url: str, body: bytes) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            assert self._session is not None
            async with self._session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # Odoo logs the failure and moves on: no retry.
            error = f"{type(exc).__name__}: {exc}"
        self.attempts.append(WebhookAttempt(url, body, status, error, time.monotonic() - started))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the posts in flight (tests; shutdown)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
