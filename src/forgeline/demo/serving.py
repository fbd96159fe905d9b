"""The hub as ``forgeline demo`` serves it: ``forgeline.testing.running_hub``'s loopback
uvicorn, with the business APIs' settings the run's scale asks for.

The availability cache's defaults (5 s reuse, 2 s patience with Odoo) suit a plant; a demo
that shows a cached answer and then a stale one would sit out those seconds, so it shortens
them - ``BusinessSettings`` is what a deployment would tune the same way.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from ..api.app import create_app
from ..api.business import install_business
from ..business import BusinessServices, BusinessSettings
from ..config import Settings
from ..hub import Hub

__all__ = ["serve_hub"]


@asynccontextmanager
async def serve_hub(
    settings: Settings, business: BusinessSettings
) -> AsyncIterator[tuple[Hub, str, BusinessServices]]:
    """A started hub, its API on a free loopback port: ``(hub, base_url, business)``."""
    hub = Hub(settings)
    await hub.start()
    try:
        app = create_app(hub=hub)
        services = install_business(app, business)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
            sock.bind(("127.0.0.1", 0))
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if task.done():
                        task.result()  # it failed to start: say why
                    await asyncio.sleep(0.01)
                yield hub, f"http://127.0.0.1:{sock.getsockname()[1]}", services
            finally:
                server.should_exit = True
                await task
                await services.aclose()
    finally:
        await hub.stop()
