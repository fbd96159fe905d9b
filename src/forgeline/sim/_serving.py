"""How every simulator is served: on a background loop for blocking test code, until a
signal for the ``forgeline sim …`` commands, and ``call`` to reach into a running one."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from .._lifecycle import AsyncResource

__all__ = ["OnLoop", "serve_in_thread", "serve_until_signal"]

A = TypeVar("A", bound=AsyncResource)
T = TypeVar("T")


class OnLoop:
    """A server that remembers the loop it runs on (``loop``, set when it opens)."""

    loop: asyncio.AbstractEventLoop | None = None

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the server's loop thread (inspect or steer it from a test)."""
        loop = self.loop
        if loop is None:
            return fn(*args)
        with suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return fn(*args)

        async def invoke() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result()


@contextmanager
def serve_in_thread(factory: Callable[[], A], name: str = "sim") -> Iterator[A]:
    """Serve ``factory()`` on a background event loop, for blocking code."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()

    async def build() -> A:
        # Built on its loop: its asyncio objects belong there.
        server = factory()
        await server.open()
        return server

    server: A | None = None
    try:
        server = asyncio.run_coroutine_threadsafe(build(), loop).result(timeout=30)
        yield server
    finally:
        if server is not None:
            with suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def serve_until_signal(factory: Callable[[], A], ready: Callable[[A], None]) -> None:
    """Serve ``factory()`` until SIGINT/SIGTERM, calling ``ready`` once it is up."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with factory() as server:
            ready(server)
            await stop.wait()

    asyncio.run(serve())
