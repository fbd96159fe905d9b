"""Test doubles of Forgeline's own interfaces, shipped so users' tests and ours share them.

``Receiver`` is a real HTTP server on loopback (not an in-process fake) that records every
delivery it gets and answers as a script tells it: succeed, fail with a status, stall past a
timeout, or ask for a delay with Retry-After. ``running_hub`` serves a hub's API on a real port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from .config import Settings
from .hub import Hub

__all__ = ["Received", "Receiver", "Reply", "running_hub"]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    event: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 204
    body: str = ""
    delay: float = 0.0  # seconds to wait before answering (a slow or hanging sink)
    headers: dict[str, str] = field(default_factory=dict)


#: Decides the reply to one request: (path, event, how many times this event came to this
#: path before) — so two subscriptions of one event each see their own first attempt.
Script = Callable[[str, dict[str, Any], int], Reply]


def always_ok(path: str, event: dict[str, Any], seen: int) -> Reply:
    return Reply()


class Receiver:
    """``async with Receiver() as r: r.url('/erp')`` — a recording HTTP sink on loopback."""

    def __init__(self, script: Script = always_ok, *, port: int = 0) -> None:
        self.script = script
        self.received: list[Received] = []  # every request, including failed attempts
        self.accepted: list[Received] = []  # requests answered 2xx
        self._seen: dict[tuple[str, str], int] = {}
        self._port = port
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.port = 0

    async def __aenter__(self) -> Receiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        event = orjson.loads(await request.read())
        key = (request.path, str(event.get("id", "")))
        seen = self._seen.get(key, 0)
        self._seen[key] = seen + 1
        got = Received(request.path, event, dict(request.headers), time.time())
        self.received.append(got)
        reply = self.script(request.path, event, seen)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if 200 <= reply.status < 300:
            self.accepted.append(got)
        self._changed.set()
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    def ids(self, path: str | None = None) -> list[str]:
        """Ids of accepted events, in arrival order (duplicates included)."""
        return [r.event["id"] for r in self.accepted if path is None or r.path == path]

    async def wait_for(self, count: int, *, timeout: float = 10.0, path: str | None = None) -> None:
        """Until ``count`` distinct events were accepted (at ``path``), or TimeoutError."""
        async with asyncio.timeout(timeout):
            while len(set(self.ids(path))) < count:
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def running_hub(settings: Settings) -> AsyncIterator[tuple[Hub, str]]:
    """A hub with its HTTP API served by uvicorn on a free loopback port: ``(hub, base_url)``."""
    import socket

    import uvicorn

    from .api.app import create_app

    hub = Hub(settings)
    await hub.start()
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets created as TCP; without it every
    # answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub=hub), log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield hub, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
        await hub.stop()
