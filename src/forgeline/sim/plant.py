"""What the simulated plant systems (MES, WMS, QMS) share: a real aiohttp server on a loopback
port, errors answered in each system's own JSON style, fault injection, webhook callbacks with
retries, a JSON state file, and the ``serve_in_thread``/``run`` entry points.

Each system subclasses ``PlantServer``: it adds its routes, says how its errors look
(``error_body``) and what its state is (``snapshot``/``restore``). Handlers raise
``Rejected(status, code, message, field=...)`` for bad input; the error middleware turns that,
unknown routes and undecodable bodies into the system's 4xx JSON, never a 500 page.

    async with WmsServer() as wms:
        ...  # wms.url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiohttp
import orjson
from aiohttp import web

from .._lifecycle import AsyncResource
from ._serving import OnLoop, serve_in_thread, serve_until_signal
from .plant_faults import FaultPlan, plant_fault_middleware

__all__ = [
    "CallbackAttempt",
    "Callbacks",
    "PlantServer",
    "Rejected",
    "http_phrase",
    "now_ts",
    "run_plant_server",
    "serve_plant_in_thread",
]

S = TypeVar("S", bound="PlantServer")
T = TypeVar("T")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_phrase(status: int) -> str:
    """``Unprocessable Entity`` for 422: the words plant systems put beside a status."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def now_ts() -> str:
    """UTC timestamp with milliseconds, the ``ts`` every plant system stamps on its records."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Rejected(Exception):
    """A request the simulated system refuses; the server renders it in the system's style.

    Not a ``ForgelineError``: it never leaves the simulator, it is the simulated system's own
    answer (like the simulated Odoo's ``OdooError``)."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.extra = extra


# --- callbacks out ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackAttempt:
    url: str
    body: dict[str, Any]
    attempt: int
    status: int | None  # None: no HTTP answer (refused, timed out, reset)
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "body": self.body,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
        }


class Callbacks(AsyncResource):
    """Webhook callbacks as a plant system sends them: JSON POST, fire-and-forget from the
    request that caused it, a few retries with doubling backoff on no answer or 5xx/429, then
    given up (logged in ``attempts``). ``secret`` adds ``<header>: sha256=<hmac of body>``."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        tries: int = 3,
        backoff: float = 0.2,
        secret: str | None = None,
        signature_header: str = "X-Signature",
        keep: int = 500,
    ) -> None:
        self.timeout, self.tries, self.backoff = timeout, tries, backoff
        self.secret, self.signature_header = secret, signature_header
        self.attempts: deque[CallbackAttempt] = deque(maxlen=keep)
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def aclose(self) -> None:
        await self.drain(timeout=self.timeout)
        for task in list(self._pending):
            task.cancel()
        if self._pending:
            await asyncio.wait(set(self._pending))
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send(self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Queue one callback; call on the server's loop."""
        if self._session is None:
            return  # not serving: the callback is lost, as with the system switched off
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, headers or {}))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", **headers}
        if self.secret:
            digest = hmac.new(self.secret.encode(), data, hashlib.sha256).hexdigest()
            headers[self.signature_header] = f"sha256={digest}"
        for attempt in range(1, self.tries + 1):
            status: int | None = None
            error: str | None = None
            try:
                assert self._session is not None
                async with self._session.post(url, data=data, headers=headers) as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.attempts.append(CallbackAttempt(url, body, attempt, status, error))
            # 4xx other than 429 is the receiver refusing this body: resending cannot help.
            if status is not None and (status < 500 and status != 429):
                return
            if attempt < self.tries:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the callbacks in flight (tests; shutdown)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    def delivered(self, url: str | None = None) -> list[dict[str, Any]]:
        """Bodies the receiver accepted (2xx), in order."""
        return [a.body for a in self.attempts if a.ok and (url is None or a.url == url)]


# --- the server -------------------------------------------------------------------------------


class PlantServer(OnLoop, AsyncResource):
    """A simulated plant system on ``host:port`` (port 0: any free port; ``url`` tells which).

    ``faults``: a ``FaultPlan`` in front of every route (settable later through ``faults``).
    ``admin``: mount ``/__sim__/*`` (default: only with faults), so a demo system cannot be
    reconfigured by whoever reaches its port. ``data``: a JSON file the state is kept in.
    ``seed``: every random choice the system makes derives from it.
    """

    system: ClassVar[str] = "plant"  # "MES", "WMS", "QMS": in messages and thread names

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        faults: FaultPlan | None = None,
        admin: bool | None = None,
        data: str | Path | None = None,
        callback_secret: str | None = None,
    ) -> None:
        self.host, self.port, self.seed = host, port, seed
        self.faults = faults
        self.admin = admin if admin is not None else faults is not None
        self.data = Path(data) if data is not None else None
        self.callbacks = Callbacks(
            secret=callback_secret, signature_header=f"X-{self.system}-Signature"
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # --- what a system supplies ---------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_body(
        self, status: int, code: str, message: str, *, field: str | None, path: str, **extra: Any
    ) -> dict[str, Any]:
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """The state to keep in the ``data`` file."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a ``snapshot`` when opening with an existing ``data`` file."""

    def admin_routes(self, app: web.Application) -> None:
        """Extra ``/__sim__/*`` routes of a system (mounted only with ``admin``)."""

    async def on_open(self) -> None:
        """Start the system's background work (the MES's outbox)."""

    async def on_close(self) -> None:
        """Stop it; called before the HTTP server goes away."""

    # --- shared behaviour ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def error_response(
        self, status: int, code: str, message: str, *, field: str | None = None, path: str = ""
    ) -> web.Response:
        return self.json(self.error_body(status, code, message, field=field, path=path), status)

    @staticmethod
    def json(body: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    @staticmethod
    async def read_json(request: web.Request) -> dict[str, Any]:
        """The request's JSON object, or ``Rejected`` 400/415 saying what is wrong with it."""
        if request.content_type != "application/json":
            raise Rejected(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise Rejected(400, "MALFORMED_JSON", f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Rejected(400, "MALFORMED_JSON", "the body must be a JSON object")
        return body

    def save(self) -> None:
        """Write the state file (atomically: a crash leaves the old or the new one)."""
        if self.data is None:
            return
        tmp = self.data.with_name(self.data.name + ".tmp")
        tmp.write_bytes(orjson.dumps(self.snapshot(), option=orjson.OPT_INDENT_2))
        os.replace(tmp, self.data)

    def _error_middleware(self) -> Any:
        @web.middleware
        async def errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
            try:
                return await handler(request)
            except Rejected as exc:
                body = self.error_body(
                    exc.status,
                    exc.code,
                    exc.message,
                    field=exc.field,
                    path=request.path,
                    **exc.extra,
                )
                return self.json(body, exc.status)
            except web.HTTPException as exc:
                if exc.status >= 400:
                    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "ERROR")
                    text = f"{request.method} {request.path}: {exc.reason}"
                    return self.error_response(exc.status, code, text, path=request.path)
                raise

        return errors

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._error_middleware(), plant_fault_middleware(self)],
            client_max_size=4 * 1024 * 1024,
        )
        self.add_routes(app)
        if self.admin:
            app.router.add_get("/__sim__/faults", self._get_faults)
            app.router.add_post("/__sim__/faults", self._post_faults)
            app.router.add_delete("/__sim__/faults", self._delete_faults)
            app.router.add_get("/__sim__/callbacks", self._get_callbacks)
            self.admin_routes(app)
        return app

    async def _get_faults(self, request: web.Request) -> web.StreamResponse:
        return self.json((self.faults or FaultPlan()).to_dict())

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        spec = await self.read_json(request)
        try:
            plan = FaultPlan.from_dict(spec)
        except (ValueError, TypeError, KeyError) as exc:
            raise Rejected(400, "BAD_FAULT_PLAN", str(exc)) from exc
        if self.faults is None:
            self.faults = plan
        else:
            self.faults.replace(plan)
        return self.json(self.faults.to_dict())

    async def _delete_faults(self, request: web.Request) -> web.StreamResponse:
        if self.faults is not None:
            self.faults.clear()
        return web.Response(status=204)

    async def _get_callbacks(self, request: web.Request) -> web.StreamResponse:
        return self.json([a.to_dict() for a in self.callbacks.attempts])

    async def open(self) -> None:
        if self._runner is not None:
            return
        self.loop = asyncio.get_running_loop()
        if self.data is not None and self.data.exists():
            self.restore(orjson.loads(self.data.read_bytes()))
        await self.callbacks.open()
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
            await self.callbacks.aclose()
            raise
        self.port = sock.getsockname()[1]
        self._runner = runner
        try:
            await self.on_open()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self.on_close()
        await runner.cleanup()
        await self.callbacks.aclose()
        self.save()


def serve_plant_in_thread(factory: Callable[[], S]) -> AbstractContextManager[S]:
    """Serve ``factory()`` on a background event loop, for blocking code (a context manager
    yielding the server)."""
    return serve_in_thread(factory, name="plant-sim")


def run_plant_server(
    factory: Callable[[], S], ready: Callable[[S], None] | None = None, describe: str = ""
) -> None:
    """Serve ``factory()`` until SIGINT/SIGTERM; ``ready`` (default: a line on stderr) once up."""

    def announce(server: S) -> None:
        print(f"{server.system} simulator on {server.url} {describe}", file=sys.stderr, flush=True)

    serve_until_signal(factory, ready or announce)
