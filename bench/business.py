"""Availability API: served from the hub's cache vs asked straight of the simulated Odoo.

Three processes on 127.0.0.1: this load generator (aiohttp), a simulated Odoo 19
(``OdooServer``, JSON-RPC) and a hub (uvicorn + uvloop + httptools) with the business routes,
its ERP being that simulator (JSON-RPC, admin/admin, the connector's default 4 connections).
The same closed-loop load (``--concurrency`` workers for ``--seconds``, cycling over the demo's
10 SKUs at site WH) runs three ways in one run; ``--odoo-latency`` and ``--odoo-workers``
make the simulator answer like a loaded production Odoo (its own calls take well under 1 ms):

a. ``GET /v1/inventory/availability`` on a hub whose cache is warm (TTL 60 s): what plant
   screens polling the hub get;
b. the raw limit: the same question straight to the simulator, one JSON-RPC ``search_read``
   of ``product.product`` with the warehouse's location in the context, what a plant app
   calling Odoo directly sends;
c. the API with the cache off (TTL 1 us, deadline 30 s): every request reads through to Odoo,
   so the hub's cost on top of (b) shows (concurrent asks for one SKU still share one read).

Requests/s, p50 and p99 (ms) and errors each; ratios a/b and c/b. Results go to the terminal
and to ``bench/results/business.json``.

    .venv/bin/python -m bench.business [--seconds 10] [--concurrency 16]
        [--odoo-latency 0.02 --odoo-workers 4] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

RESULTS = Path(__file__).resolve().parent / "results" / "business.json"
SKUS = ["RM-LEG", "RM-TOP", "RM-SCREW", "RM-PANEL", "RM-HINGE", "RM-VARN",
        "FG-TABLE", "FG-CAB", "FG-LAMP", "SRV-ASM"]  # fmt: skip
SITE = "WH"
FIELDS = ["default_code", "uom_id", "qty_available", "free_qty"]


# -- the served processes ----------------------------------------------------------------------


def serve_odoo(port: int, latency: float, workers: int) -> None:
    from forgeline.sim.odoo.faults import FaultPlan, FaultRule
    from forgeline.sim.odoo.server import run

    faults = FaultPlan([FaultRule(latency=latency)]) if latency > 0 else None
    run(port=port, version=19, faults=faults, workers=workers or None)


def serve_hub(data_dir: str, port: int, odoo_url: str, ttl: float, deadline: float) -> None:
    import uvicorn

    from forgeline.api.app import create_app
    from forgeline.api.business import install_business
    from forgeline.business import BusinessSettings
    from forgeline.config import Settings
    from forgeline.systems import OdooSystem

    system = OdooSystem(url=odoo_url, db="demo", login="admin", password="admin")
    # The per-principal rate limit (1,000/s by default) would cap the one bench principal.
    settings = Settings.load(
        env={},
        data_dir=Path(data_dir),
        port=port,
        systems={"erp": system},
        rate_limit=1_000_000.0,
        rate_burst=1_000_000,
    )
    app = create_app(settings)
    install_business(app, BusinessSettings(availability_ttl=ttl, availability_deadline=deadline))
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bench.business", *args], cwd=Path.cwd())


async def _until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the process serving {url} exited ({process.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout:g}s")
            await asyncio.sleep(0.1)


# -- load ----------------------------------------------------------------------------------------


async def closed_loop(
    ask: Callable[[aiohttp.ClientSession, str], Awaitable[bool]],
    *,
    seconds: float,
    concurrency: int,
) -> dict[str, Any]:
    """``concurrency`` workers asking in turn for the SKUs for ``seconds``; latencies in ms."""
    latencies: list[float] = []
    errors = 0
    skus = itertools.cycle(SKUS)
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                sku = next(skus)
                started = time.perf_counter()
                ok = await ask(session, sku)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def api_asker(url: str, key: str) -> Callable[[aiohttp.ClientSession, str], Awaitable[bool]]:
    headers = {"Authorization": f"Bearer {key}"}

    async def ask(session: aiohttp.ClientSession, sku: str) -> bool:
        params = {"sku": sku, "site": SITE}
        async with session.get(
            f"{url}/v1/inventory/availability", params=params, headers=headers
        ) as response:
            body = await response.json()
            return response.status == 200 and body.get("stale") is False

    return ask


async def odoo_asker(url: str) -> Callable[[aiohttp.ClientSession, str], Awaitable[bool]]:
    """A JSON-RPC ``search_read`` per question, as a client of Odoo's own would send it."""
    ids = itertools.count(1)

    async def execute(session: aiohttp.ClientSession, model: str, args: list[Any], kw: Any) -> Any:
        call = ["demo", 2, "admin", model, "search_read", args, kw]
        params = {"service": "object", "method": "execute_kw", "args": call}
        body = {"jsonrpc": "2.0", "method": "call", "params": params, "id": next(ids)}
        async with session.post(f"{url}/jsonrpc", json=body) as response:
            return await response.json()

    async with aiohttp.ClientSession() as session:
        answer = await execute(
            session, "stock.warehouse", [[["code", "=", SITE]]], {"fields": ["view_location_id"]}
        )
    location = answer["result"][0]["view_location_id"][0]

    async def ask(session: aiohttp.ClientSession, sku: str) -> bool:
        kw = {"fields": FIELDS, "limit": 2, "context": {"location": location}}
        answer = await execute(session, "product.product", [[["default_code", "=", sku]]], kw)
        return "result" in answer and len(answer["result"]) == 1

    return ask


async def through_hub(
    odoo_url: str, *, ttl: float, deadline: float, seconds: float, concurrency: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-business-") as data_dir:
        port = _free_port()
        hub = _spawn("--serve-hub", data_dir, str(port), odoo_url, str(ttl), str(deadline))
        try:
            url = f"http://127.0.0.1:{port}"
            await _until_up(f"{url}/healthz", hub)
            key = (Path(data_dir) / "admin.key").read_text().strip()
            ask = api_asker(url, key)
            # Warm up: the connection to Odoo, the site, and (with a TTL) every SKU.
            await closed_loop(ask, seconds=1.0, concurrency=concurrency)
            return await closed_loop(ask, seconds=seconds, concurrency=concurrency)
        finally:
            hub.terminate()
            hub.wait(timeout=10)


async def run(
    seconds: float = 10.0, concurrency: int = 16, odoo_latency: float = 0.0, odoo_workers: int = 0
) -> dict[str, Any]:
    port = _free_port()
    odoo = _spawn("--serve-odoo", str(port), str(odoo_latency), str(odoo_workers))
    try:
        odoo_url = f"http://127.0.0.1:{port}"
        await _until_up(f"{odoo_url}/web/version", odoo)
        cached = await through_hub(
            odoo_url, ttl=60.0, deadline=2.0, seconds=seconds, concurrency=concurrency
        )
        ask = await odoo_asker(odoo_url)
        await closed_loop(ask, seconds=1.0, concurrency=concurrency)
        direct = await closed_loop(ask, seconds=seconds, concurrency=concurrency)
        uncached = await through_hub(
            odoo_url, ttl=1e-6, deadline=30.0, seconds=seconds, concurrency=concurrency
        )
    finally:
        odoo.terminate()
        odoo.wait(timeout=10)
    return {
        "seconds": seconds,
        "concurrency": concurrency,
        "odoo_latency": odoo_latency,
        "odoo_workers": odoo_workers or None,
        "cpus": os.cpu_count(),
        "api_cached": cached,
        "odoo_direct": direct,
        "api_uncached": uncached,
        "cached_vs_direct": cached["requests_per_s"] / direct["requests_per_s"],
        "uncached_vs_direct": uncached["requests_per_s"] / direct["requests_per_s"],
    }


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    odoo = "simulated Odoo"
    if results["odoo_latency"]:
        odoo += f" at {results['odoo_latency'] * 1000:g} ms a call"
    if results["odoo_workers"]:
        odoo += f", {results['odoo_workers']} workers"
    table = Table(
        title=f"Availability, {results['concurrency']} concurrent clients, "
        f"{results['seconds']:g} s each ({odoo}; raw = straight to it)"
    )
    for column in ("path", "requests/s", "p50", "p99", "errors", "vs raw"):
        table.add_column(column, justify="left" if column == "path" else "right")
    direct = results["odoo_direct"]["requests_per_s"]
    for label, key in (
        ("a. API, from the hub's cache", "api_cached"),
        ("b. straight to the simulated Odoo (raw)", "odoo_direct"),
        ("c. API, read through to Odoo every time", "api_uncached"),
    ):
        row = results[key]
        table.add_row(
            label, f"{row['requests_per_s']:,.0f}", f"{row['p50_ms']:.1f} ms",
            f"{row['p99_ms']:.1f} ms", f"{row['errors']}", f"{row['requests_per_s'] / direct:.2f}x",
        )  # fmt: skip
    console.print(table)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-odoo":
        serve_odoo(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-hub":
        data_dir, port, odoo_url, ttl, deadline = sys.argv[2:7]
        serve_hub(data_dir, int(port), odoo_url, float(ttl), float(deadline))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.business", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--odoo-latency",
        type=float,
        default=0.0,
        help="seconds each Odoo call takes (a real"
        " Odoo's stock read is tens of ms; the simulator's well under one)",
    )
    parser.add_argument(
        "--odoo-workers", type=int, default=0, help="Odoo workers (requests served at once)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    import uvloop

    started = time.time()
    results = uvloop.run(run(args.seconds, args.concurrency, args.odoo_latency, args.odoo_workers))
    results["started_at"] = started
    render(results)
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.json}")


if __name__ == "__main__":
    main()
