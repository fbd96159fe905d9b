"""The simulator's real HTTP server: Odoo's wire protocols over aiohttp on a loopback port.

``OdooServer`` wraps an ``OdooSimulator`` (or creates one) and serves XML-RPC, JSON-RPC,
JSON-2, the web session routes and incoming webhooks exactly as Odoo answers them, with an
optional ``FaultPlan`` in front. Handlers call the synchronous simulator directly on the event
loop, so each RPC call is atomic. ``run`` is the blocking entry point behind
``forgeline sim odoo``; ``serve_in_thread`` runs a server on a background loop for synchronous
code (the blocking client libraries in tests).

    async with OdooServer(version=19) as server:
        ...  # server.url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..._lifecycle import AsyncResource
from .._serving import OnLoop, serve_until_signal
from .._serving import serve_in_thread as serve_on_thread
from .faults import FaultPlan, fault_middleware
from .protocols import add_routes
from .protocols.admin import WEBHOOKS
from .protocols.state import STATE, ServerState, html_error
from .service import OdooSimulator
from .webhooks import WebhookSender

__all__ = ["OdooServer", "run", "serve_in_thread"]

T = TypeVar("T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Odoo's DEFAULT_MAX_CONTENT_LENGTH: large create/import payloads must get through.
MAX_BODY_BYTES = 128 * 1024 * 1024


@web.middleware
async def _werkzeug_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    # aiohttp's own 404/405 are plain text; Odoo's are werkzeug's HTML pages.
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            return html_error(exc.status)
        raise


def _workers_middleware(workers: int) -> Any:
    gate: asyncio.Semaphore | None = None

    @web.middleware
    async def limit(request: web.Request, handler: _Handler) -> web.StreamResponse:
        # Like Odoo's prefork workers: at most ``workers`` requests handled at once, the rest
        # wait their turn (on Odoo, in the listen socket's backlog).
        nonlocal gate
        if gate is None:
            gate = asyncio.Semaphore(workers)
        async with gate:
            return await handler(request)

    return limit


class OdooServer(OnLoop, AsyncResource):
    """A simulated Odoo on ``host:port`` (port 0: any free port; ``url`` tells which).

    ``simulator``: serve this one (left open on close); otherwise one is created for
    ``version`` (16–19), persisted to the SQLite file ``data`` if given, and closed with the
    server. ``faults``: a ``FaultPlan`` in front of every route (also settable later through
    ``server.faults``). ``workers``: at most that many requests in flight, the rest queue, as
    with Odoo's prefork workers. ``admin``: mount ``/__sim__/*`` (default: only with faults).
    """

    def __init__(
        self,
        simulator: OdooSimulator | None = None,
        *,
        version: int = 17,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
        workers: int | None = None,
        data: str | Path | None = None,
        admin: bool | None = None,
    ) -> None:
        self._owns_simulator = simulator is None
        self.simulator = simulator if simulator is not None else OdooSimulator(version, path=data)
        self.host = host
        self.port = port
        self.workers = workers
        # The admin API can reconfigure faults: only with faults, or when asked for.
        self.admin = admin if admin is not None else faults is not None
        self.webhooks = WebhookSender()
        self._state = ServerState(self.simulator, faults=faults, admin=self.admin)
        self._runner: web.AppRunner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def faults(self) -> FaultPlan | None:
        return self._state.faults

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        self._state.faults = plan

    @property
    def version(self) -> int:
        return self.simulator.version

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def build_app(self) -> web.Application:
        middlewares: list[Any] = [_werkzeug_errors]
        if self.workers:
            # Outside the faults: injected latency is processing time that holds a worker.
            middlewares.append(_workers_middleware(self.workers))
        middlewares.append(fault_middleware)
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app[STATE] = self._state
        app[WEBHOOKS] = self.webhooks
        add_routes(app, admin=self.admin)
        return app

    async def open(self) -> None:
        if self._runner is not None:
            return
        self.loop = asyncio.get_running_loop()
        await self.webhooks.open()
        self.simulator.webhook_sender = self.webhooks
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = sock.getsockname()[1]
        self._runner = runner

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.webhooks.aclose()
        if self.simulator.webhook_sender is self.webhooks:
            self.simulator.webhook_sender = None
        if self._owns_simulator and runner is not None:
            self.simulator.close()


def serve_in_thread(
    simulator: OdooSimulator | None = None, **kwargs: Any
) -> AbstractContextManager[OdooServer]:
    """Serve on a background event loop for blocking code; same arguments as ``OdooServer``
    (a context manager yielding the server)."""
    return serve_on_thread(lambda: OdooServer(simulator, **kwargs), name="odoo-sim")


def run(
    port: int = 8069,
    version: int = 17,
    data: str | Path | None = None,
    host: str = "127.0.0.1",
    *,
    faults: FaultPlan | None = None,
    admin: bool | None = None,
    workers: int | None = None,
    ready: Callable[[OdooServer], None] | None = None,
) -> None:
    """Serve a simulated Odoo until SIGINT/SIGTERM (``forgeline sim odoo``)."""

    def announce(server: OdooServer) -> None:
        print(
            f"Odoo {server.version}.0 simulator on {server.url} "
            f"(databases: {', '.join(server.simulator.list_databases())})",
            file=sys.stderr,
            flush=True,
        )

    serve_until_signal(
        lambda: OdooServer(
            version=version,
            host=host,
            port=port,
            faults=faults,
            workers=workers,
            data=data,
            admin=admin,
        ),
        ready or announce,
    )
