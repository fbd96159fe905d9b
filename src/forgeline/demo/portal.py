"""The customer portal's webhook receiver in ``forgeline demo``: a partner endpoint on loopback
that checks every delivery as a partner would - with the official ``standardwebhooks``
package and the ``whsec_`` secret the hub showed once, when the endpoint was created - and
takes only what verifies. It is down (500) until the operator brings it back.

Each request is recorded with what the portal made of it, so the checks can say that every
lot release arrived signed and verified, and how many attempts met the outage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..exceptions import ConfigError

__all__ = ["Portal", "PortalRequest", "Unverified", "verify"]

PATH = "/forgeline/webhooks"


@dataclass(frozen=True, slots=True)
class PortalRequest:
    """One request the portal got."""

    webhook_id: str
    event: dict[str, Any] | None  # the verified payload (a CloudEvent); None: not verified
    status: int  # what the portal answered
    at: float
    error: str = ""  # why it did not verify


class Unverified(Exception):
    """The request is not what the endpoint's secret signed."""


def verify(secret: str | None, raw: bytes, headers: dict[str, str]) -> Any:
    """The payload, verified by ``standardwebhooks`` (the reference implementation, not ours)
    against ``secret``; ``Unverified`` saying why not."""
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError as exc:  # a dev extra, which `make demo` installs
        raise ConfigError(
            "the demo's portal verifies with standardwebhooks: pip install -e '.[dev]'"
        ) from exc
    if secret is None:
        raise Unverified("the portal has no secret yet")
    try:
        return Webhook(secret).verify(raw, headers)
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: a garbled header
        raise Unverified(str(exc)) from None


@dataclass
class Portal:
    """``async with Portal() as portal: portal.url`` - set ``secret`` before deliveries come."""

    secret: str | None = None
    up: bool = False
    requests: list[PortalRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Portal:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        try:
            payload = verify(self.secret, raw, dict(request.headers))
        except Unverified as exc:
            self.requests.append(PortalRequest(webhook_id, None, 401, time.time(), str(exc)))
            return web.Response(status=401, text="signature does not verify")
        status = 204 if self.up else 500
        event = payload if isinstance(payload, dict) else {"data": payload}
        self.requests.append(PortalRequest(webhook_id, event, status, time.time()))
        if status == 500:
            return web.Response(status=500, body=orjson.dumps({"error": "portal maintenance"}))
        return web.Response(status=status)

    # -- what the checks read ------------------------------------------------------------------

    def accepted(self) -> list[str]:
        """Ids of the events taken (verified, answered 2xx), in arrival order."""
        return [
            str(r.event.get("id"))
            for r in self.requests
            if r.event is not None and 200 <= r.status < 300
        ]

    def unverified(self) -> list[PortalRequest]:
        return [r for r in self.requests if r.event is None]
