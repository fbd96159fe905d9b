"""Split roles: an API process and a worker process over PostgreSQL, as operators run them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from forgeline.route.subscription import SubscriptionSpec
from forgeline.testing import Receiver

from .faults.processes import free_port
from .services import require

pytestmark = pytest.mark.postgres

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, str]]:
    require("postgres")
    name = f"fl_roles_{uuid.uuid4().hex[:10]}"
    url = f"{SERVER}?schema={name}"
    yield {"FORGELINE_LOG_URL": url, "FORGELINE_STORE_URL": url}
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def _serve(role: str, port: int, data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    forgeline = str(Path(sys.executable).with_name("forgeline"))
    variables = {
        **os.environ,
        **env,
        "FORGELINE_ROLE": role,
        "FORGELINE_PORT": str(port),
        "FORGELINE_DATA_DIR": str(data_dir),
    }
    variables.pop("FORGELINE_CONFIG", None)
    return subprocess.Popen([forgeline, "serve"], env=variables, stderr=subprocess.PIPE, text=True)


def _get(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"nothing answers {url}"
            time.sleep(0.1)


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=20)
    process.stderr.close()  # type: ignore[union-attr]
    return code


async def test_an_api_and_a_worker_deliver_and_each_reports_its_own_health(
    backends: dict[str, str], tmp_path: Path
) -> None:
    api_port, worker_port = free_port(), free_port()
    api = _serve("api", api_port, tmp_path / "api", backends)
    worker = _serve("worker", worker_port, tmp_path / "worker", backends)
    try:
        assert _get(f"http://127.0.0.1:{api_port}/readyz", api).status_code == 200
        ops = f"http://127.0.0.1:{worker_port}"
        assert _get(f"{ops}/readyz", worker).json() == {"status": "ready"}
        assert httpx.get(f"{ops}/v1/events").status_code == 404  # a worker serves no API
        key = (tmp_path / "api" / "admin.key").read_text().strip()
        async with (
            Receiver() as receiver,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}",
                headers={"Authorization": f"Bearer {key}"},
            ) as http,
        ):
            spec = {"name": "erp", "types": ["production.*"], "sink": {"url": receiver.url()}}
            assert (await http.post("/v1/subscriptions", json=spec)).status_code == 201
            event = {
                "specversion": "1.0", "id": "e-1", "source": "mes/line-1",
                "type": "production.completed.v1", "data": {"qty": 1},
            }  # fmt: skip
            assert (await http.post("/v1/events", json=event)).status_code == 201
            await receiver.wait_for(1, timeout=20)  # routed and delivered by the worker
        metrics = httpx.get(f"{ops}/metrics").text
        assert 'forgeline_deliveries_total{outcome="delivered",subscription="erp"} 1.0' in metrics
    finally:
        assert _stop(worker) == 0  # stopped after its in-flight attempts, not killed
        # uvicorn shuts the API down gracefully, then re-raises the SIGTERM it caught, as a
        # process manager expects of a process that was asked to stop.
        assert _stop(api) in (0, -signal.SIGTERM)


async def test_a_follower_routes_while_the_leader_hangs(
    backends: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hung leader (SIGSTOP, a stuck host) keeps its session and so its lock: a follower
    # must notice the routing cursor standing still and route meanwhile.
    from forgeline import Event, Hub, Settings
    from forgeline import hub as hub_module

    monkeypatch.setattr(hub_module, "_LEAD_EVERY", 0.1)
    monkeypatch.setattr(hub_module, "_STALL", 0.5)

    def settings(name: str) -> Settings:
        return Settings.load(
            env={},
            data_dir=tmp_path / name,
            log_url=backends["FORGELINE_LOG_URL"],
            store_url=backends["FORGELINE_STORE_URL"],
            role="worker",
        )

    async with Hub(settings("a")) as leader:
        for _ in range(50):
            if leader.leading:
                break
            await asyncio.sleep(0.05)
        assert leader.leading
        hang = asyncio.Event()

        async def hung_step() -> int:
            await hang.wait()
            return 0

        monkeypatch.setattr(leader.router, "step", hung_step)
        async with Hub(settings("b")) as follower, Receiver() as receiver:
            assert not follower.leading
            spec = SubscriptionSpec.model_validate(
                {"name": "erp", "types": ["production.*"], "sink": {"url": receiver.url()}}
            )
            await follower.create_subscription(spec)
            await asyncio.sleep(0.3)  # the leader's router is inside its hung step by now
            await follower.publish([Event.new("production.completed.v1", "mes/line-1", {"qty": 1})])
            await receiver.wait_for(1, timeout=10)  # routed by the follower, delivered
            assert not follower.leading
        hang.set()
