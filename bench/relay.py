"""Measurements 2 and 3: the hub as a real process between a load generator and a receiver.

Three processes on 127.0.0.1: this one (the aiohttp load generator), the hub
(``bench.hub_server``) and the receiver (``bench.receiver``). One subscription routes every
event to the receiver with the default delivery policy (32 concurrent deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import psutil

from . import profile
from .events import make_event

BATCH_TYPE = "application/cloudevents-batch+json"
STRUCTURED_TYPE = "application/cloudevents+json"
#: The subscription's delivery concurrency (the policy default); the raw client uses it too.
DELIVERY_CONCURRENCY = 32
_MiB = 1024 * 1024


@dataclass
class Config:
    events: int = 20_000  # throughput: events posted to the hub, and requests posted raw
    batch: int = 100
    post_concurrency: int = 8  # concurrent batch POSTs to the hub
    rate: float = 500.0  # steady load, single-event POSTs per second
    duration: float = 20.0  # steady load, seconds
    raw_duration: float = 10.0  # the same paced load straight to the receiver
    drain_timeout: float = 120.0  # how long to wait for deliveries to arrive
    profile: Path | None = None  # py-spy folded stacks of the hub during the relay phases


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: TextIO
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.popen.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / _MiB

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def spawn(name: str, module: str, *args: str, workdir: Path) -> Iterator[Proc]:
    """Run ``python -m module args`` as a child; terminate it (then kill) on the way out."""
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("w")
    popen = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield Proc(name, popen, log_path, log_file)
    finally:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)
        log_file.close()


async def wait_http(session: aiohttp.ClientSession, url: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout}s:\n{proc.log_tail()}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def closed_loop(
    count: int, concurrency: int, send: Callable[[int], Awaitable[None]]
) -> float:
    """Run ``send(0..count-1)`` with ``concurrency`` workers; answer the seconds taken."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await send(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


class Client:
    """The load generator: one aiohttp session, every request checked for a 2xx."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.errors: list[str] = []
        self.ack_latencies: list[float] = []

    async def post(self, url: str, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        start = time.perf_counter()
        try:
            async with self.session.post(
                url, data=body, headers={"Content-Type": content_type, **headers}
            ) as response:
                await response.read()
                if response.status >= 300:
                    self.errors.append(f"HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        self.ack_latencies.append(time.perf_counter() - start)

    async def closed_loop(
        self, count: int, concurrency: int, send: Callable[[int], Awaitable[None]]
    ) -> float:
        return await closed_loop(count, concurrency, send)

    async def paced(
        self, rate: float, duration: float, send: Callable[[int], Awaitable[None]]
    ) -> tuple[int, float]:
        """Open loop: start ``send(i)`` at ``i / rate`` seconds, whatever earlier ones do
        (at most 1,000 outstanding); answer how many were started and the seconds taken."""
        total = int(rate * duration)
        limit = asyncio.Semaphore(1000)
        tasks: set[asyncio.Task[None]] = set()

        async def guarded(index: int) -> None:
            async with limit:
                await send(index)

        start = time.perf_counter()
        index = 0
        while index < total:
            now = time.perf_counter() - start
            while index < total and index / rate <= now:
                task = asyncio.create_task(guarded(index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            await asyncio.sleep(max(0.0, index / rate - (time.perf_counter() - start)))
        elapsed = time.perf_counter() - start
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        return total, elapsed


async def receiver_stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/stats") as response:
        stats: dict[str, Any] = orjson.loads(await response.read())
        return stats


async def receiver_latencies(session: aiohttp.ClientSession, base: str, phase: str) -> list[float]:
    async with session.get(f"{base}/latencies", params={"phase": phase}) as response:
        values: list[float] = orjson.loads(await response.read())
        return values


async def wait_delivered(
    session: aiohttp.ClientSession, base: str, phase: str, count: int, timeout: float
) -> dict[str, Any]:
    """Poll the receiver until ``count`` distinct events of ``phase`` arrived (or time out)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = (await receiver_stats(session, base)).get(phase, {"unique": 0, "requests": 0})
        if stats["unique"] >= count or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


class MemorySampler:
    """The hub's peak RSS, sampled every 100 ms while running."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self.proc.rss_mb())
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def run(config: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="forgeline-bench-relay-"))
    try:
        hub_port, receiver_port = free_port(), free_port()
        with (
            spawn("receiver", "bench.receiver", str(receiver_port), workdir=workdir) as receiver,
            spawn(
                "hub", "bench.hub_server", str(workdir / "data"), str(hub_port), workdir=workdir
            ) as hub,
        ):
            if config.profile is None:
                return await _measure(config, hub, receiver, hub_port, receiver_port, workdir, log)
            with profile.sampling(hub.popen.pid, config.profile):
                return await _measure(config, hub, receiver, hub_port, receiver_port, workdir, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(
    config: Config,
    hub: Proc,
    receiver: Proc,
    hub_port: int,
    receiver_port: int,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    hub_url = f"http://127.0.0.1:{hub_port}"
    sink_base = f"http://127.0.0.1:{receiver_port}"
    connector = aiohttp.TCPConnector(limit=1100)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_http(session, f"{sink_base}/stats", receiver, 30)
        await wait_http(session, f"{hub_url}/readyz", hub, 30)
        await asyncio.sleep(1.0)
        idle_mb = hub.rss_mb()
        key = (workdir / "data" / "admin.key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        spec = {
            "name": "bench",
            "types": ["production.*"],
            "sink": {"url": f"{sink_base}/sink"},
            "policy": {"concurrency": DELIVERY_CONCURRENCY},
        }
        async with session.post(f"{hub_url}/v1/subscriptions", json=spec, headers=auth) as resp:
            if resp.status != 201:
                raise RuntimeError(f"subscription refused: {resp.status} {await resp.text()}")
        client = Client(session)
        events_url = f"{hub_url}/v1/events"

        def one(phase: str) -> Callable[[int], Awaitable[None]]:
            async def send(index: int) -> None:
                body = orjson.dumps(make_event(index, phase))
                await client.post(events_url, body, STRUCTURED_TYPE, auth)

            return send

        def direct(phase: str) -> Callable[[int], Awaitable[None]]:
            async def send(index: int) -> None:
                body = orjson.dumps(make_event(index, phase))
                await client.post(f"{sink_base}/sink", body, STRUCTURED_TYPE, {})

            return send

        # Warm up both paths (connections, caches) before anything is timed.
        await client.closed_loop(200, 8, one("warmup"))
        await client.closed_loop(500, DELIVERY_CONCURRENCY, direct("warmup-raw"))
        await wait_delivered(session, sink_base, "warmup", 200, 30)

        # 2c. raw limits: the same client straight to the receiver.
        log("raw: closed-loop requests straight to the receiver")
        client.errors.clear()
        raw_seconds = await client.closed_loop(
            config.events, DELIVERY_CONCURRENCY, direct("raw-tput")
        )
        raw_rps = config.events / raw_seconds
        log(f"raw: {raw_rps:,.0f} req/s; paced {config.rate:g}/s for {config.raw_duration:g}s")
        await client.paced(config.rate, config.raw_duration, direct("raw-lat"))
        raw_lat = await receiver_latencies(session, sink_base, "raw-lat")
        raw_errors = list(client.errors)

        # 2a. relay throughput: batches posted as fast as they are taken.
        log(f"relay: {config.events:,} events in batches of {config.batch}")
        client.errors.clear()
        batches = -(-config.events // config.batch)
        cpu_before = {p.name: p.cpu_seconds() for p in (hub, receiver)}
        self_cpu = psutil.Process().cpu_times()
        sampler = MemorySampler(hub)
        sampler.start()

        async def send_batch(index: int) -> None:
            sent = time.time()
            first = index * config.batch
            items = [
                make_event(i, "tput", sent)
                for i in range(first, min(config.events, first + config.batch))
            ]
            await client.post(events_url, orjson.dumps(items), BATCH_TYPE, auth)

        wall_start = time.time()
        ingest_seconds = await client.closed_loop(batches, config.post_concurrency, send_batch)
        tput = await wait_delivered(session, sink_base, "tput", config.events, config.drain_timeout)
        wall = time.time() - wall_start
        self_after = psutil.Process().cpu_times()
        cpu = {p.name: (p.cpu_seconds() - cpu_before[p.name]) / wall for p in (hub, receiver)}
        cpu["client"] = (
            self_after.user + self_after.system - self_cpu.user - self_cpu.system
        ) / wall
        delivered_seconds = tput["last"] - wall_start
        delivered_rate = tput["unique"] / delivered_seconds
        tput_errors = list(client.errors)
        after_tput_mb = hub.rss_mb()
        log(
            f"relay: ingested {config.events / ingest_seconds:,.0f}/s,"
            f" delivered {delivered_rate:,.0f}/s ({tput['unique']:,} events)"
        )

        # 2b. latency at a steady rate of single-event POSTs.
        log(f"relay: paced {config.rate:g} events/s for {config.duration:g}s")
        client.errors.clear()
        client.ack_latencies.clear()
        hub_cpu = hub.cpu_seconds()
        sent_count, paced_seconds = await client.paced(config.rate, config.duration, one("lat"))
        steady_cpu = (hub.cpu_seconds() - hub_cpu) / paced_seconds
        steady = await wait_delivered(session, sink_base, "lat", sent_count, 30)
        ack = list(client.ack_latencies)
        end_mb = hub.rss_mb()
        await sampler.stop()
        lat = await receiver_latencies(session, sink_base, "lat")
        hub.check()
        receiver.check()
        return {
            "raw": {
                "requests_per_s": raw_rps,
                "concurrency": DELIVERY_CONCURRENCY,
                "latency_p50_ms": percentile(raw_lat, 50) * 1000,
                "latency_p99_ms": percentile(raw_lat, 99) * 1000,
                "errors": len(raw_errors),
            },
            "throughput": {
                "events": config.events,
                "batch": config.batch,
                "post_concurrency": config.post_concurrency,
                "ingest_events_per_s": config.events / ingest_seconds,
                "delivered": tput["unique"],
                "delivery_requests": tput["requests"],
                "delivered_events_per_s": delivered_rate,
                "cpu_share": cpu,
                "errors": len(tput_errors),
                "first_errors": tput_errors[:3],
            },
            "latency": {
                "rate": config.rate,
                "achieved_rate": sent_count / paced_seconds,
                "sent": sent_count,
                "delivered": steady["unique"],
                "p50_ms": percentile(lat, 50) * 1000,
                "p99_ms": percentile(lat, 99) * 1000,
                "max_ms": max(lat, default=float("nan")) * 1000,
                "mean_ms": statistics.fmean(lat) * 1000 if lat else float("nan"),
                "ack_p50_ms": percentile(ack, 50) * 1000,
                "ack_p99_ms": percentile(ack, 99) * 1000,
                "hub_cpu_share": steady_cpu,
                "errors": len(client.errors),
                "first_errors": client.errors[:3],
            },
            "memory": {
                "idle_mb": idle_mb,
                "after_throughput_mb": after_tput_mb,
                "end_of_steady_mb": end_mb,
                "peak_mb": sampler.peak_mb,
            },
        }
