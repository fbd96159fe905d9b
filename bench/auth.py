"""What authentication costs a read: the same handlers with and without it, in one run.

Two processes on 127.0.0.1: this load generator (aiohttp) and a hub (uvicorn + uvloop +
httptools). The hub's app is the real one (``create_app``); a second app over the same hub is
mounted on it at ``/bare``, serving the same two handlers - ``GET /v1/events/{id}`` (one
indexed read) and ``GET /v1/subscriptions`` (the list with its backlog) - called with the
principal's ``Caller`` fixed in advance. The request therefore crosses the same server, the
same middleware (body limit, security headers) and the same handler either way; what differs
is exactly what a guarded request adds: reading the ``Authorization`` header, finding the API
key by its prefix and checking its hash, the key's and principal's state, the scope, and the
per-principal rate limit (in process; its limit is set high enough never to refuse here).
Reads are not audited (only admin actions, replays, discards and refusals are), so this path
writes no audit entry; the key's ``last_used_at`` is written at most once a minute.

For each route, each variant:

a. throughput: ``--concurrency`` closed-loop clients for ``--seconds``, the two variants
   alternating for ``--rounds`` rounds (the mean of the rounds is reported);
b. latency: an open-loop load at a quarter of the slower variant's throughput, the variants
   alternating for ``--rounds`` rounds of ``--seconds``; p50 and p99 of the response time
   (the median of the rounds).

Targets (issue 4): at most 15 % fewer requests/s and at most 2 ms more p99 with auth.
Results go to the terminal and to ``bench/results/auth.json``.

    .venv/bin/python -m bench.auth [--seconds 5] [--concurrency 16] [--rounds 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from fastapi import FastAPI, Request  # module level: the bare routes' annotations name them
from starlette.responses import Response

RESULTS = Path(__file__).resolve().parent / "results" / "auth.json"
TENANT = "acme"
EVENT_ID = "bench-auth-1"
SCOPES = ["events:read", "subscriptions:read"]
ROUTES = {
    "GET /v1/events/{id}": f"/v1/events/{EVENT_ID}",
    "GET /v1/subscriptions": "/v1/subscriptions",
}
#: The latency load, as a share of the slower variant's throughput: busy, not saturated (the
#: load generator shares the machine; near saturation p99 measures its queues, not the hub).
LATENCY_LOAD = 0.25
MAX_LOSS = 0.15  # throughput lost to authentication, at most
MAX_ADDED_P99_MS = 2.0


# -- the served process ----------------------------------------------------------------------


def serve_hub(data_dir: str, port: int) -> None:
    """The hub's real app, with the same handlers mounted unauthenticated at ``/bare``."""
    import uvicorn

    from forgeline.api.app import create_app
    from forgeline.api.events import get_event
    from forgeline.api.subscriptions import list_subscriptions
    from forgeline.config import Settings
    from forgeline.security.access import Caller

    # One principal sends everything: a limit it never reaches keeps the limiter's work (a
    # bucket read and write per request) without a 429 cutting the run short.
    settings = Settings.load(
        env={}, data_dir=Path(data_dir), port=port, rate_limit=1e6, rate_burst=10**6
    )
    app = create_app(settings)
    bare = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    bare.state.hub = app.state.hub
    holder: dict[str, Caller] = {}

    @bare.post("/as/{principal}", include_in_schema=False)
    async def become(principal: str) -> Response:
        """Who the bare routes act as: the bench's principal, set once it exists."""
        holder["caller"] = Caller(principal, "service", TENANT, frozenset(SCOPES), "dev", "api-key")
        return Response(status_code=204)

    @bare.get("/v1/events/{event_id}")
    async def bare_event(request: Request, event_id: str) -> Response:
        return await get_event(request, event_id, holder["caller"], None)

    @bare.get("/v1/subscriptions")
    async def bare_subscriptions(request: Request) -> Response:
        return await list_subscriptions(request, holder["caller"])

    app.mount("/bare", bare)
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the hub exited ({process.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout:g}s")
            await asyncio.sleep(0.1)


async def _prepare(url: str, admin_key: str) -> str:
    """A service principal of tenant acme with an API key, one of its events and five of its
    subscriptions, made through the API as an operator would; answers the key."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(base_url=url, headers=admin) as session:

        async def post(path: str, body: Any) -> Any:
            async with session.post(path, json=body) as response:
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status} {await response.text()}")
                return await response.json() if response.status != 204 else None

        principal = await post(
            "/v1/principals",
            {"kind": "service", "name": "bench", "scopes": SCOPES, "tenant": TENANT},
        )
        key = await post(f"/v1/principals/{principal['id']}/keys", {})
        event = {
            "specversion": "1.0",
            "id": EVENT_ID,
            "source": "bench/auth",
            "type": "production.completed.v1",
            "tenant": TENANT,
            "data": {"qty": 1},
        }
        await post("/v1/events", event)
        for n in range(5):
            sink = {"url": f"http://127.0.0.1:9/sink-{n}"}  # never delivered to: no event fits
            spec = {"name": f"bench-{n}", "types": ["bench.none"], "sink": sink, "tenant": TENANT}
            await post("/v1/subscriptions", spec)
        async with session.post(f"/bare/as/{principal['id']}") as response:
            assert response.status == 204
    return str(key["key"])


# -- load ----------------------------------------------------------------------------------------


def _summary(latencies: list[float], errors: int, wall: float) -> dict[str, Any]:
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


async def closed_loop(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float, workers: int
) -> dict[str, Any]:
    """``workers`` clients, each sending its next request when the last is answered."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                errors += response.status != 200
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return _summary(latencies, errors, time.perf_counter() - started)


async def open_loop(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], seconds: float, rate: float
) -> dict[str, Any]:
    """Requests sent at ``rate`` per second whatever the answers' pace (no coordinated
    omission: a slow answer does not delay the next request)."""
    latencies: list[float] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            errors += response.status != 200
        latencies.append((time.perf_counter() - started) * 1000)

    tasks = []
    started = time.perf_counter()
    for n in range(int(seconds * rate)):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return _summary(latencies, errors, time.perf_counter() - started)


async def measure_route(
    url: str, path: str, key: str, *, seconds: float, concurrency: int, rounds: int
) -> dict[str, Any]:
    variants = {
        "auth": (f"{url}{path}", {"Authorization": f"Bearer {key}"}),
        "bare": (f"{url}/bare{path}", {}),
    }
    connector = aiohttp.TCPConnector(limit=concurrency * 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target, headers in variants.values():  # warm up both: connections, caches
            await closed_loop(session, target, headers, 1.0, concurrency)
        throughput: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (target, headers) in variants.items():
                throughput[name].append(
                    await closed_loop(session, target, headers, seconds, concurrency)
                )
        rates = {
            name: statistics.fmean(r["requests_per_s"] for r in runs)
            for name, runs in throughput.items()
        }
        rate = LATENCY_LOAD * min(rates.values())
        paced: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, (target, headers) in variants.items():
                paced[name].append(await open_loop(session, target, headers, seconds, rate))
        latency = {
            name: {
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "errors": sum(r["errors"] for r in runs),
                "rounds": runs,
            }
            for name, runs in paced.items()
        }
    return {
        "throughput": {
            name: {"requests_per_s": rates[name], "rounds": runs}
            for name, runs in throughput.items()
        },
        "latency": {"rate": rate, **latency},
        "loss": 1 - rates["auth"] / rates["bare"],
        "added_p99_ms": latency["auth"]["p99_ms"] - latency["bare"]["p99_ms"],
        "added_p50_ms": latency["auth"]["p50_ms"] - latency["bare"]["p50_ms"],
        "errors": sum(r["errors"] for runs in throughput.values() for r in runs)
        + sum(r["errors"] for r in latency.values()),
    }


async def run(seconds: float = 5.0, concurrency: int = 16, rounds: int = 2) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as data_dir:
        port = _free_port()
        hub = subprocess.Popen(
            [sys.executable, "-m", "bench.auth", "--serve-hub", data_dir, str(port)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await _until_up(f"{url}/healthz", hub)
            key = await _prepare(url, (Path(data_dir) / "admin.key").read_text().strip())
            routes = {
                name: await measure_route(
                    url, path, key, seconds=seconds, concurrency=concurrency, rounds=rounds
                )
                for name, path in ROUTES.items()
            }
        finally:
            hub.terminate()
            hub.wait(timeout=10)
    return {
        "seconds": seconds,
        "concurrency": concurrency,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "routes": routes,
        "ok": all(
            r["loss"] <= MAX_LOSS and r["added_p99_ms"] <= MAX_ADDED_P99_MS and not r["errors"]
            for r in routes.values()
        ),
    }


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    table = Table(
        title=f"Authenticated (API key, rate-limited) vs the same handler bare, "
        f"{results['concurrency']} clients, {results['seconds']:g} s x {results['rounds']} rounds"
    )
    for column in ("route", "variant", "requests/s", "p50 @ rate", "p99 @ rate", "lost", "+p99"):
        table.add_column(column, justify="left" if column in ("route", "variant") else "right")
    for name, route in results["routes"].items():
        loss, added = route["loss"], route["added_p99_ms"]
        for variant in ("bare", "auth"):
            latency = route["latency"][variant]
            table.add_row(
                name if variant == "bare" else "",
                "no auth" if variant == "bare" else "API key",
                f"{route['throughput'][variant]['requests_per_s']:,.0f}",
                f"{latency['p50_ms']:.2f} ms",
                f"{latency['p99_ms']:.2f} ms",
                "" if variant == "bare" else f"{loss:.1%} (<= {MAX_LOSS:.0%})",
                "" if variant == "bare" else f"{added:+.2f} ms (<= {MAX_ADDED_P99_MS:g})",
            )
        table.add_row("", f"at {route['latency']['rate']:,.0f}/s", "", "", "", "", "")
    console.print(table)
    errors = sum(route["errors"] for route in results["routes"].values())
    if errors:  # a bench whose answers were not all 200 measured something else
        console.print(f"[red]{errors} answers were not 200[/red]")
    console.print("targets met" if results["ok"] else "[red]a target is missed[/red]")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-hub":
        serve_hub(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    import uvloop

    started = time.time()
    results = uvloop.run(run(args.seconds, args.concurrency, args.rounds))
    results["started_at"] = started
    render(results)
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {args.json}")


if __name__ == "__main__":
    main()
