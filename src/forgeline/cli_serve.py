"""``forgeline serve``: a hub in this process, as one role or all of them.

``all`` (the embedded default) and ``api`` serve the HTTP API through uvicorn; ``worker``
serves only its ops endpoints and stops after its in-flight attempts on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from uvicorn import Server as uvicornServer

from ._cli import DataDir, fail, out
from .config import Settings
from .exceptions import ForgelineError
from .hub import ADMIN_KEY_FILE

__all__ = ["serve"]


def serve(
    data_dir: DataDir = None,
    port: Annotated[int | None, typer.Option(envvar="FORGELINE_PORT")] = None,
    host: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option(envvar="FORGELINE_CONFIG")] = None,
    role: Annotated[
        str | None,
        typer.Option(
            envvar="FORGELINE_ROLE",
            help="all (default): API and workers; api: the HTTP API only; worker: routing, "
            "delivery and sources only. api/worker need PostgreSQL (and NATS) backends.",
        ),
    ] = None,
) -> None:
    """Run a hub: the HTTP API, routing and delivery, in this process (or one --role)."""
    import uvicorn

    from .api.app import create_app

    try:
        settings = Settings.load(
            config_file=config, data_dir=data_dir, port=port, host=host, role=role
        )
        if settings.role == "worker":
            _run_worker(settings)
            return
        guard = _StartupGuard(create_app(settings))
    except ForgelineError as exc:
        fail(str(exc), 2)
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    server_config = uvicorn.Config(
        guard,
        host=settings.host,
        port=settings.port,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    # The guard reports a startup ForgelineError itself, without uvicorn's extra line.
    logging.getLogger("uvicorn.error").addFilter(lambda record: guard.error is None)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the hub runs and the port is bound
                key = settings.data_dir / ADMIN_KEY_FILE
                host = f"[{settings.host}]" if ":" in settings.host else settings.host
                out.print(
                    f"[green]Forgeline hub on[/green] [bold]http://{host}:{settings.port}[/bold]"
                    f" · admin key in {escape(str(key))} (forgeline token --admin)",
                    soft_wrap=True,
                )

    try:
        Server(server_config).run()
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start, after logging why
        if guard.error is None:
            raise typer.Exit(1) from exc
    if guard.error is not None:
        fail(str(guard.error), 2)


def _run_worker(settings: Settings) -> None:
    """A worker process until SIGINT/SIGTERM (in-flight attempts finish first), serving only
    /healthz, /readyz and /metrics on --port, for probes and Prometheus."""
    import uvicorn

    from .api.app import create_ops_app
    from .hub import Hub

    async def work() -> None:
        async with Hub(settings) as hub:
            config = uvicorn.Config(
                create_ops_app(hub),
                host=settings.host,
                port=settings.port,
                lifespan="off",
                access_log=False,
                log_level="warning",
            )
            server = _OpsServer(config)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, server.request_exit)
            out.print(
                f"[green]Forgeline worker[/green] pid {os.getpid()} · log "
                f"{_scheme(settings.log)} · store {_scheme(settings.store)} · "
                f"ops on http://{settings.host}:{settings.port}"
            )
            await server.serve()
            if not server.started:
                raise ForgelineError(f"cannot serve the worker's ops port {settings.port}")

    asyncio.run(work())


class _OpsServer(uvicornServer):
    """uvicorn without its own signal handling: it re-raises a caught SIGTERM once it has
    stopped, which would end the process before the hub let in-flight attempts finish."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True


def _scheme(url: str) -> str:
    return url.split(":", 1)[0]  # never the rest: a URL may carry a password


class _StartupGuard:
    """ASGI wrapper that catches a ``ForgelineError`` raised while the hub starts (data
    directory locked, bad backend) so that uvicorn does not log a traceback for it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: ForgelineError | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # forwarded below, once we know what failed
                return
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except ForgelineError as exc:
            if held:
                self.error = exc
                await send({"type": "lifespan.startup.failed", "message": ""})
            raise
        except BaseException:
            for message in held:
                await send(message)
            raise
