"""Simulated Odoo servers (17 and 19) on real loopback ports, with a fault plan that records
every request it sees: its path, and how many were in flight at once."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from forgeline.connectors.odoo import OdooClient, OdooRetry

pytest.importorskip("forgeline.sim.odoo.server")

from forgeline.sim.odoo.faults import FaultDecision, FaultPlan, FaultRule
from forgeline.sim.odoo.server import OdooServer

#: Retries quick enough for tests; the classification is what is under test, not the waits.
FAST = OdooRetry(attempts=4, initial_delay=0.01, max_delay=0.05)
_PASS = FaultRule()


class Recorder(FaultPlan):
    """Lets every request through (after ``latency``), recording it; ``script`` holds faults
    for the next requests, in order (one ``FaultDecision`` each)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.paths: list[str] = []
        self.script: deque[FaultDecision] = deque()
        self.latency = 0.0
        self.inflight = 0
        self.peak = 0

    def decide(self, path: str) -> FaultDecision | None:
        self.paths.append(path)
        if self.script:
            return self.script.popleft()
        return FaultDecision(rule=_PASS, delay=self.latency)

    @asynccontextmanager
    async def admission(self, rule: FaultRule) -> AsyncIterator[bool]:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            yield True
        finally:
            self.inflight -= 1

    # --- scripting ----------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Proxy error pages; the call is not processed."""
        for _ in range(count):
            self.script.append(FaultDecision(rule=FaultRule(error_status=status), error=True))

    def drop_next(self, count: int = 1) -> None:
        """Processed and committed, then the connection is closed without an answer."""
        for _ in range(count):
            self.script.append(FaultDecision(rule=_PASS, drop=True))

    def garbage_next(self, count: int = 1) -> None:
        """Processed, then a 200 whose body is neither JSON nor XML."""
        for _ in range(count):
            self.script.append(FaultDecision(rule=_PASS, garbage=True))

    def slow_next(self, seconds: float, count: int = 1) -> None:
        for _ in range(count):
            self.script.append(FaultDecision(rule=_PASS, delay=seconds))

    def count(self, fragment: str) -> int:
        return sum(fragment in path for path in self.paths)


@asynccontextmanager
async def serving(version: int, **kwargs: Any) -> AsyncIterator[OdooServer]:
    server = OdooServer(version=version, faults=Recorder(), **kwargs)
    async with server:
        yield server


def recorder(server: OdooServer) -> Recorder:
    plan = server.faults
    assert isinstance(plan, Recorder)
    return plan


@pytest.fixture
async def odoo17() -> AsyncIterator[OdooServer]:
    async with serving(17) as server:
        yield server


@pytest.fixture
async def odoo19() -> AsyncIterator[OdooServer]:
    async with serving(19) as server:
        yield server


@pytest.fixture(params=[17, 19])
async def odoo(request: pytest.FixtureRequest) -> AsyncIterator[OdooServer]:
    async with serving(request.param) as server:
        yield server


def api_key(server: OdooServer, uid: int = 2) -> str:
    key = server.simulator.create_api_key("demo", uid, "forgeline tests")
    assert isinstance(key, str)
    return key


ClientFactory = Callable[..., OdooClient]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    """``await connect(server, **options)``: an open client, closed after the test. Uses the
    API key on 19 (JSON-2) and the password on older versions, unless told otherwise."""
    clients: list[OdooClient] = []

    async def make(server: OdooServer, **options: Any) -> OdooClient:
        options.setdefault("retry", FAST)
        options.setdefault("timeout", 5.0)
        if "password" not in options and "api_key" not in options:
            if server.version >= 19:
                options["api_key"] = api_key(server)
            else:
                options["password"] = "admin"
        options.setdefault("login", "admin")
        client = OdooClient(server.url, "demo", **options)
        clients.append(client)
        await client.open()
        recorder(server).paths.clear()
        return client

    yield make
    for client in clients:
        await client.aclose()
