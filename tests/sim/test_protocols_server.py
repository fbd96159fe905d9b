"""The server itself: lifecycle, persistence, workers, and the blocking ``run`` entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from forgeline.sim.odoo.faults import FaultPlan, FaultRule
from forgeline.sim.odoo.server import OdooServer

VERSION_CALL = {"params": {"service": "common", "method": "version", "args": []}, "id": 1}


def create_partner(name: str) -> dict[str, object]:
    args = ["demo", 2, "admin", "res.partner", "create", [{"name": name}], {}]
    return {"params": {"service": "object", "method": "execute_kw", "args": args}, "id": 1}


async def test_lifecycle_and_persistence(tmp_path: Path) -> None:
    data = tmp_path / "odoo.sqlite"
    async with OdooServer(version=18, data=data) as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            created = (await http.post("/jsonrpc", json=create_partner("Persisted"))).json()
    async with OdooServer(version=18, data=data) as again:
        assert again.port != 0
        rows = again.simulator.execute_kw(
            "demo", 2, "res.partner", "read", [[created["result"]]], {"fields": ["name"]}
        )
        assert rows == [{"id": created["result"], "name": "Persisted"}]


async def test_workers_serialise_slow_requests() -> None:
    faults = FaultPlan([FaultRule(latency=0.15)])
    async with (
        OdooServer(version=17, workers=1, faults=faults) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        started = time.monotonic()
        responses = await asyncio.gather(
            *(http.post("/jsonrpc", json=VERSION_CALL) for _ in range(3))
        )
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert time.monotonic() - started >= 0.45


def test_run_serves_until_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"from forgeline.sim.odoo.server import run; run(port={port}, version=19)"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, env={**os.environ}, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert f"Odoo 19.0 simulator on http://127.0.0.1:{port}" in line
        version = httpx.get(f"http://127.0.0.1:{port}/web/version").json()
        assert version["version"] == "19.0"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
