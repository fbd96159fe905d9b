"""Forgeline split into processes, for ``bench.scaleout``: one API process and N workers.

Each is ``forgeline serve --role api|worker`` (the command an operator runs), configured by
``FORGELINE_STORE_URL`` / ``FORGELINE_LOG_URL`` / ``FORGELINE_DATA_DIR`` / ``FORGELINE_PORT``
on fresh PostgreSQL schemas (and a fresh JetStream stream), dropped afterwards. The load
generator posts to the API; the workers route and deliver to the bench receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import nats
import nats.js.errors
import orjson
import psutil

from forgeline.security.secretbox import new_master_key

from . import profile
from .events import make_event
from .relay import (
    BATCH_TYPE,
    STRUCTURED_TYPE,
    Client,
    Proc,
    free_port,
    percentile,
    receiver_latencies,
    wait_delivered,
    wait_http,
)

FORGELINE = str(Path(sys.executable).parent / "forgeline")
# ``forgeline serve --role worker`` runs on asyncio's default loop (``asyncio.run``) while
# ``--role api`` gets uvloop from uvicorn; ``--worker-loop uvloop`` starts the same CLI with
#: One master key for every process of a run: they share a store, so they share its secrets.
MASTER_KEY = new_master_key()

# uvloop's policy installed first, to price that difference.
_UVLOOP_CLI = (
    "import asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from forgeline.cli import main; main()"
)


@dataclass
class Backend:
    """One store + log pairing, named for the table; URLs made unique per run."""

    name: str  # "postgres" or "nats": the log's engine (the store is PostgreSQL in both)
    pg_dsn: str
    nats_url: str
    tag: str = ""

    def __post_init__(self) -> None:
        self.tag = f"{os.getpid():x}{secrets.token_hex(3)}"

    @property
    def store_schema(self) -> str:
        return f"bench_so_{self.tag}_store"

    @property
    def log_schema(self) -> str:
        return f"bench_so_{self.tag}_log"

    @property
    def stream(self) -> str:
        return f"BENCH_SO_{self.tag}"

    def env(self) -> dict[str, str]:
        store = f"{self.pg_dsn}?schema={self.store_schema}"
        if self.name == "nats":
            log = f"{self.nats_url}?stream={self.stream}&partitions=8"
        else:
            log = f"{self.pg_dsn}?schema={self.log_schema}"
        return {"FORGELINE_STORE_URL": store, "FORGELINE_LOG_URL": log}

    async def drop(self) -> None:
        """Remove what a run created: its schemas, its streams."""
        conn = await asyncpg.connect(self.pg_dsn)
        try:
            for schema in (self.store_schema, self.log_schema):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        if self.name == "nats":
            nc = await nats.connect(self.nats_url)
            try:
                js = nc.jetstream()
                for stream in (self.stream, f"KV_{self.stream}_dedup"):
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_stream(stream)
            finally:
                await nc.close()


@contextlib.contextmanager
def spawn_cli(
    name: str, args: list[str], env: dict[str, str], workdir: Path, *, uvloop: bool = False
) -> Iterator[Proc]:
    """``forgeline ARGS`` as a child process; SIGTERM (a worker drains), then kill."""
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("w")
    command = [sys.executable, "-c", _UVLOOP_CLI] if uvloop else [FORGELINE]
    popen = subprocess.Popen(
        [*command, *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
            # Processes sharing a store share the master key their secrets are sealed with.
            "FORGELINE_MASTER_KEY": MASTER_KEY,
            **env,
        },
    )
    try:
        yield Proc(name, popen, log_path, log_file)
    finally:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)
        log_file.close()


async def wait_log(proc: Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        if text in proc.log_tail():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not print {text!r} in {timeout}s:\n{proc.log_tail()}")


class CpuMeter:
    """CPU seconds per kind of process (ours by name; the servers by executable) over a
    phase, as a share of one core: where the machine's two cores went."""

    def __init__(self, procs: list[Proc]) -> None:
        self.procs = procs
        self._before: dict[int, tuple[str, float]] = {}
        self._machine: Any = None
        self._start = 0.0

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        found: dict[int, tuple[str, float]] = {}
        ours = {p.popen.pid: p.name.rstrip("0123456789") for p in self.procs}
        ours[os.getpid()] = "client"
        for ps in psutil.process_iter(["name"]):
            name = ours.get(ps.pid)
            if name is None:
                exe = ps.info["name"] or ""
                if exe.startswith("postgres"):
                    name = "postgres"
                elif exe.startswith("nats-server"):
                    name = "nats-server"
                else:
                    continue
            with contextlib.suppress(psutil.Error):
                times = ps.cpu_times()
                found[ps.pid] = (name, times.user + times.system)
        return found

    def start(self) -> None:
        self._before = self._snapshot()
        self._machine = psutil.cpu_times()
        self._start = time.monotonic()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        wall = time.monotonic() - self._start
        shares: dict[str, float] = {}
        for pid, (name, seconds) in after.items():
            spent = seconds - self._before.get(pid, (name, 0.0))[1]
            shares[name] = shares.get(name, 0.0) + spent / wall
        machine = psutil.cpu_times()
        idle = machine.idle - self._machine.idle
        total = sum(machine) - sum(self._machine)
        busy = (1 - idle / total) * psutil.cpu_count() if total else 0.0
        # Whatever else ran meanwhile (the machine is shared): a large share taints the run.
        shares["other"] = max(0.0, busy - sum(shares.values()))
        shares["machine_busy"] = busy
        return shares


@contextlib.contextmanager
def sampling(pid: int, out: Path) -> Iterator[None]:
    """py-spy on ``pid`` into folded stacks at ``out``: non-blocking (the process is not
    paused, so the figures move less) and without ``--gil`` (on this Python that mode kept
    only a handful of samples); py-spy leaves out threads idle in the event loop's poll, so
    the samples are where the process was busy."""
    exe = profile.py_spy()
    if exe is None:
        raise RuntimeError("profiling needs py-spy: .venv/bin/pip install py-spy")
    args = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    proc = subprocess.Popen(
        [*args, "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Load:
    events: int
    batch: int
    post_concurrency: int
    rate: float
    duration: float
    profile_events: int  # 0: no profile pass
    concurrency: int = 32  # the subscription's deliveries in flight (the policy default)
    worker_uvloop: bool = False  # workers on uvloop instead of the CLI's asyncio loop


async def run_split(
    backend: Backend,
    workers: int,
    load: Load,
    session: aiohttp.ClientSession,
    sink_base: str,
    log: Callable[[str], None],
    profile_dir: Path | None,
) -> dict[str, Any]:
    """Measure one topology: throughput, then steady latency, then (``profile_dir``) a
    profiled throughput pass; the schemas and streams are dropped whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="forgeline-bench-scaleout-"))
    port = free_port()
    env = {
        **backend.env(),
        "FORGELINE_DATA_DIR": str(workdir / "data"),
        "FORGELINE_PORT": str(port),
    }
    try:
        with contextlib.ExitStack() as stack:
            api = stack.enter_context(spawn_cli("api", ["serve", "--role", "api"], env, workdir))
            hub_url = f"http://127.0.0.1:{port}"
            await wait_http(session, f"{hub_url}/readyz", api, 60)
            key = (workdir / "data" / "admin.key").read_text().strip()
            auth = {"Authorization": f"Bearer {key}"}
            spec = {
                "name": "bench",
                "types": ["production.*"],
                "sink": {"url": f"{sink_base}/sink"},
                "policy": {"concurrency": load.concurrency},
            }
            async with session.post(f"{hub_url}/v1/subscriptions", json=spec, headers=auth) as r:
                if r.status != 201:
                    raise RuntimeError(f"subscription refused: {r.status} {await r.text()}")
            procs = [api]
            for index in range(workers):
                args = ["serve", "--role", "worker"]
                worker = spawn_cli(f"worker{index}", args, env, workdir, uvloop=load.worker_uvloop)
                procs.append(stack.enter_context(worker))
            for proc in procs[1:]:
                await wait_log(proc, "Forgeline worker", 60)
            return await _measure(
                backend, workers, load, session, hub_url, auth, sink_base, procs, log, profile_dir
            )
    finally:
        await backend.drop()
        shutil.rmtree(workdir, ignore_errors=True)


async def _measure(
    backend: Backend,
    workers: int,
    load: Load,
    session: aiohttp.ClientSession,
    hub_url: str,
    auth: dict[str, str],
    sink_base: str,
    procs: list[Proc],
    log: Callable[[str], None],
    profile_dir: Path | None,
) -> dict[str, Any]:
    client = Client(session)
    events_url = f"{hub_url}/v1/events"
    label = f"{backend.name}-{workers}w"

    def single(phase: str) -> Callable[[int], Awaitable[None]]:
        async def send(index: int) -> None:
            body = orjson.dumps(make_event(index, phase))
            await client.post(events_url, body, STRUCTURED_TYPE, auth)

        return send

    async def batched(phase: str, count: int) -> dict[str, Any]:
        """``count`` events in batches, posted as fast as the API takes them; delivered/s
        from the first POST to the last arrival at the receiver."""
        batches = -(-count // load.batch)

        async def send(index: int) -> None:
            sent = time.time()
            first = index * load.batch
            items = [
                make_event(i, phase, sent) for i in range(first, min(count, first + load.batch))
            ]
            await client.post(events_url, orjson.dumps(items), BATCH_TYPE, auth)

        client.errors.clear()
        meter = CpuMeter(procs)
        meter.start()
        start = time.time()
        ingest_seconds = await client.closed_loop(batches, load.post_concurrency, send)
        stats = await wait_delivered(session, sink_base, phase, count, 120)
        cpu = meter.stop()
        for proc in procs:
            proc.check()
        return {
            "events": count,
            "ingest_events_per_s": count / ingest_seconds,
            "delivered": stats["unique"],
            "delivery_requests": stats["requests"],
            "duplicates": stats["requests"] - stats["unique"],
            "delivered_events_per_s": stats["unique"] / (stats["last"] - start),
            "cpu_share": cpu,
            "errors": len(client.errors),
            "first_errors": client.errors[:3],
        }

    # Warm up: connections, prepared statements, the workers' first claims.
    await client.closed_loop(200, 8, single(f"{label}-warmup"))
    await wait_delivered(session, sink_base, f"{label}-warmup", 200, 60)

    tput = await batched(f"{label}-tput", load.events)
    log(
        f"{label}: ingested {tput['ingest_events_per_s']:,.0f}/s, delivered"
        f" {tput['delivered_events_per_s']:,.0f}/s ({tput['delivered']:,} of {load.events:,},"
        f" {tput['duplicates']} duplicate deliveries)"
    )

    phase = f"{label}-lat"
    client.errors.clear()
    client.ack_latencies.clear()
    meter = CpuMeter(procs)
    meter.start()
    sent, seconds = await client.paced(load.rate, load.duration, single(phase))
    steady = await wait_delivered(session, sink_base, phase, sent, 60)
    cpu = meter.stop()
    values = await receiver_latencies(session, sink_base, phase)
    ack = list(client.ack_latencies)
    lat = {
        "rate": load.rate,
        "achieved_rate": sent / seconds,
        "sent": sent,
        "delivered": steady["unique"],
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": max(values, default=float("nan")) * 1000,
        "ack_p50_ms": percentile(ack, 50) * 1000,
        "ack_p99_ms": percentile(ack, 99) * 1000,
        "cpu_share": cpu,
        "errors": len(client.errors),
    }
    log(
        f"{label}: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms at {load.rate:g}/s"
        f" (POST answered p99 {lat['ack_p99_ms']:.1f} ms)"
    )
    out: dict[str, Any] = {"workers": workers, "throughput": tput, "latency": lat}

    if profile_dir is not None and load.profile_events:
        # A separate pass, so that py-spy's own CPU does not weigh on the figures above.
        folded = {p.name: profile_dir / f"scaleout-{label}-{p.name}.folded" for p in procs}
        with contextlib.ExitStack() as stack:
            for proc in procs:
                stack.enter_context(sampling(proc.popen.pid, folded[proc.name]))
            await asyncio.sleep(0.5)  # py-spy attaches
            profiled = await batched(f"{label}-profile", load.profile_events)
        out["profile"] = {
            "events": load.profile_events,
            "delivered_events_per_s": profiled["delivered_events_per_s"],
            "cpu_share": profiled["cpu_share"],
            "files": {name: str(path) for name, path in folded.items()},
            "top": {name: profile.top(path, 8) for name, path in folded.items() if path.exists()},
        }
    return out
