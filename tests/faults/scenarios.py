"""The fault scenarios: one system of real processes, a load, a fault, a settle, a verdict.

Each scenario runs the sink, one API process and two worker processes (``forgeline serve
--role api|worker``) on the PostgreSQL store and a PostgreSQL or NATS JetStream log, with one
subscription (``ordering: key``) to the sink. The load runs for ``duration`` seconds; the
fault is injected once the load is warm, then healed. The system then *settles*: every
acknowledged event has reached the sink and the subscription's backlog stays empty. The
history goes to the checker.

Backends: the machine's shared PostgreSQL and NATS, in a schema or stream of the run's own
(dropped afterwards), except where the scenario restarts the server — then a private
PostgreSQL cluster or a private nats-server, never the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
import httpx
import nats
import orjson

from forgeline.deliver.dispatcher import LEASE_MARGIN

from .checker import Verdict, check
from .load import Load
from .processes import (
    HubProcess,
    PostgresCluster,
    PrivateNats,
    SinkProcess,
    until,
)

__all__ = ["SABOTAGED", "SCENARIOS", "Scenario", "System", "run_scenario"]

SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SHARED_NATS = "nats://127.0.0.1:4222"
PARTITIONS = 8
#: Per-attempt timeout of the subscription. A worker's lease is this plus the dispatcher's
#: LEASE_MARGIN: how long a dead or paused worker's deliveries wait to be taken over.
ATTEMPT_TIMEOUT = 2.0
LEASE = ATTEMPT_TIMEOUT + LEASE_MARGIN
SETTLE_TIMEOUT = 60.0
STALL_SECONDS = 10.0
_OPEN = ("pending", "retrying", "inflight")

POLICY: dict[str, Any] = {
    "ordering": "key",
    "timeout": ATTEMPT_TIMEOUT,
    "concurrency": 32,
    # Nothing may go dead in a run: a dead letter would stand in for a lost event.
    "retry": {"initial_delay": 0.2, "max_delay": 1.0, "jitter": 0.2, "max_attempts": 1000},
}


@dataclass
class System:
    """The processes of one run, handed to a scenario's fault."""

    workdir: Path
    sink: SinkProcess
    api: HubProcess  # the one faults strike
    apis: list[HubProcess]
    workers: list[HubProcess]
    load: Load
    store: tuple[str, str]  # the store's server and schema
    private_pg: PostgresCluster | None = None
    private_nats: PrivateNats | None = None
    notes: list[str] = field(default_factory=list)
    t0: float = 0.0

    def note(self, text: str) -> None:
        self.notes.append(f"t={time.time() - self.t0:.1f}s {text}")

    async def leases(self, worker: HubProcess) -> int:
        """How many deliveries ``worker`` holds in flight right now, from the store itself
        (a lease owner is ``host:pid:nonce``): a fault must strike while it holds some."""
        assert worker.proc is not None
        server, schema = self.store
        conn = await asyncpg.connect(server, timeout=5)
        try:
            count = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".deliveries'
                " WHERE state = 'inflight' AND lease_owner LIKE $1",
                f"%:{worker.proc.pid}:%",
            )
        finally:
            await conn.close()
        return int(count)

    async def busiest(self, timeout: float = 10.0) -> tuple[HubProcess, int]:
        """Wait until a worker holds leases; answer the one holding most, and how many. The
        leading worker (it routes, so its dispatcher is woken first) is usually the one:
        killing it also proves another takes the lead over."""
        deadline = time.monotonic() + timeout
        while True:
            held = [(await self.leases(worker), index) for index, worker in enumerate(self.workers)]
            count, index = max(held)
            if count:
                return self.workers[index], count
            if time.monotonic() > deadline:
                raise AssertionError(f"no worker held a lease for {timeout:g}s")
            await asyncio.sleep(0.01)


Fault = Callable[[System], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    log: Literal["postgres", "nats"]
    fault: Fault | None
    fail_percent: int = 0
    duration: float = 10.0  # seconds of load
    rate: float = 200.0  # events per second
    private: Literal["postgres", "nats"] | None = None  # the server this scenario restarts
    apis: int = 1  # API processes, sharing the load
    policy: dict[str, Any] = field(default_factory=lambda: POLICY)
    # Sabotage, to prove the checker sees violations (see sink.py): never in a real scenario.
    sink_drop_percent: int = 0


# -- faults ----------------------------------------------------------------------------------


async def _warm(system: System, acked: int = 300) -> None:
    await until(lambda: system.load.acked >= acked, 20, f"{acked} acknowledged events")


async def kill_worker(system: System) -> None:
    await _warm(system)
    victim, held = await system.busiest()
    victim.kill()
    system.note(f"kill -9 {victim.name} holding {held} leases, at {system.load.acked} acked")
    await asyncio.sleep(1.0)
    await victim.start()  # as a supervisor would; its old leases still run out first
    system.note(f"{victim.name} restarted")


async def kill_api(system: System, kills: int = 3) -> None:
    await _warm(system)
    jitter = random.Random(7)
    load = system.load
    for kill in range(kills):
        await until(
            lambda: load.batches_in_flight > 0 or load.stopping, 10, "a batch POST in flight", 0.001
        )
        if load.stopping:
            # A slow machine spent the load's time on the kills before: killing an API no
            # one is posting to would test nothing.
            assert kill > 0, "the load ended before the first kill"
            system.note(f"load over after {kill} kills")
            return
        # A few ms into the request: parsing, appending, committing or answering it.
        await asyncio.sleep(jitter.uniform(0.0, 0.008))
        in_flight = system.load.posts_in_flight
        system.api.kill()
        system.note(f"kill -9 {system.api.name} with {in_flight} POSTs in flight")
        await asyncio.sleep(1.0)
        await system.api.start()
        system.note(f"{system.api.name} restarted")
        await asyncio.sleep(1.0)


async def restart_nats(system: System) -> None:
    assert system.private_nats is not None
    await _warm(system)
    system.private_nats.terminate()
    system.note("nats-server stopped (SIGTERM)")
    await asyncio.sleep(2.0)
    await system.private_nats.start()
    system.note("nats-server started")


async def kill_nats(system: System) -> None:
    assert system.private_nats is not None
    await _warm(system)
    system.private_nats.kill()
    system.note("nats-server killed (SIGKILL)")
    await asyncio.sleep(2.0)
    await system.private_nats.start()
    system.note("nats-server started")


async def restart_postgres(system: System) -> None:
    assert system.private_pg is not None
    await _warm(system)
    # Immediate: no checkpoint, every session cut — a crash, recovered from the WAL.
    await asyncio.to_thread(system.private_pg.stop, "immediate")
    system.note("postgres stopped (-m immediate)")
    await asyncio.sleep(2.0)
    await asyncio.to_thread(system.private_pg.start)
    system.note("postgres started")


async def pause_worker(system: System) -> None:
    await _warm(system)
    victim, held = await system.busiest()
    victim.signal(signal.SIGSTOP)
    system.note(
        f"SIGSTOP {victim.name} holding {held} leases, for {LEASE + 3:g}s (lease {LEASE:g}s)"
    )
    await asyncio.sleep(LEASE + 3.0)
    victim.signal(signal.SIGCONT)
    system.note(f"SIGCONT {victim.name}")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("worker-kill", "postgres", kill_worker),
        Scenario("api-kill", "postgres", kill_api),
        Scenario("nats-restart", "nats", restart_nats, private="nats"),
        Scenario("postgres-restart", "postgres", restart_postgres, private="postgres"),
        Scenario("worker-pause", "nats", pause_worker),
        Scenario("sink-503", "nats", None, fail_percent=10),
        # Beyond the list, for make faults: the same faults on the other log.
        Scenario("worker-kill-nats", "nats", kill_worker),
        Scenario("api-kill-nats", "nats", kill_api),
        Scenario("nats-kill", "nats", kill_nats, private="nats"),
        # Two API processes appending at once (the commit-order trap of log readers), one of
        # them killed mid-batch.
        Scenario("api-kill-2apis", "postgres", kill_api, apis=2),
        Scenario("api-kill-2apis-nats", "nats", kill_api, apis=2),
    )
}


#: The harness's self-test: a sink that loses 3% of what it acknowledged, and a subscription
#: without ordering whose sink refuses 10% of first attempts, so retried events arrive after
#: their key's later ones. The checker must report lost and reordered events; a harness that
#: cannot see them would pass anything.
SABOTAGED = Scenario(
    "sabotaged",
    "postgres",
    None,
    fail_percent=10,
    duration=4.0,
    policy={**POLICY, "ordering": "none"},
    sink_drop_percent=3,
)


# -- backends --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _backends(
    scenario: Scenario, workdir: Path, run: str
) -> AsyncIterator[
    tuple[dict[str, str], tuple[str, str], PostgresCluster | None, PrivateNats | None]
]:
    cluster: PostgresCluster | None = None
    private_nats: PrivateNats | None = None
    schemas = (f"faults_{run}_log", f"faults_{run}_store")
    stream = f"FAULTS_{run}"
    try:
        if scenario.private == "postgres":
            cluster = PostgresCluster()
            await asyncio.to_thread(cluster.init)
            await asyncio.to_thread(cluster.start)
            postgres = cluster.url
        else:
            postgres = SHARED_POSTGRES
        if scenario.private == "nats":
            private_nats = PrivateNats(workdir)
            await private_nats.start()
            nats_server = private_nats.url
        else:
            nats_server = SHARED_NATS
        env = {"FORGELINE_STORE_URL": f"{postgres}?schema={schemas[1]}"}
        store = (postgres, schemas[1])
        if scenario.log == "postgres":
            env["FORGELINE_LOG_URL"] = f"{postgres}?schema={schemas[0]}"
        else:
            env["FORGELINE_LOG_URL"] = f"{nats_server}?stream={stream}&partitions={PARTITIONS}"
        yield env, store, cluster, private_nats
    finally:
        if private_nats is not None:
            private_nats.kill()
        elif scenario.log == "nats":
            await _drop_stream(SHARED_NATS, stream)
        if cluster is not None:
            await asyncio.to_thread(cluster.destroy)
        else:
            await _drop_schemas(SHARED_POSTGRES, schemas)


async def _drop_schemas(url: str, schemas: tuple[str, ...]) -> None:
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(url, timeout=5)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def _drop_stream(url: str, stream: str) -> None:
    with contextlib.suppress(Exception):  # cleanup only: a leftover stream harms no one
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=1)
        try:
            js = nc.jetstream()
            for name in (stream, f"KV_{stream}_dedup"):
                with contextlib.suppress(Exception):
                    await js.delete_stream(name)
        finally:
            await nc.close()


# -- one run ---------------------------------------------------------------------------------


async def _backlog(api: HubProcess) -> dict[str, int] | None:
    try:
        async with api.client(timeout=3.0) as client:
            response = await client.get("/v1/subscriptions/faults")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    backlog: dict[str, int] = response.json()["backlog"]
    return backlog


async def _settle(system: System) -> None:
    """Until every acknowledged event was delivered and the backlog stays empty — or, when
    some never arrive, until the backlog has been empty and the sink silent for
    ``STALL_SECONDS`` (longer than any poll interval of the log, so a slow router is waited
    for, not mistaken for a loss)."""
    acked = {event.id for event in system.load.events.values() if event.acked_at is not None}
    deadline = time.monotonic() + SETTLE_TIMEOUT
    quiet = 0
    seen = -1
    silent_since = time.monotonic()
    while time.monotonic() < deadline:
        deliveries = system.sink.deliveries()
        if len(deliveries) != seen:
            seen, silent_since = len(deliveries), time.monotonic()
        backlog = await _backlog(system.api)
        empty = backlog is not None and not any(backlog.get(s) for s in _OPEN)
        if empty and time.monotonic() - silent_since > STALL_SECONDS:
            system.note(f"stalled: backlog empty, sink silent for {STALL_SECONDS:g}s")
            return
        delivered = {d.id for d in deliveries if d.ok}
        quiet = quiet + 1 if acked <= delivered and empty else 0
        if quiet >= 3:  # 1.5 s with nothing left: late routes and redeliveries have landed
            return
        await asyncio.sleep(0.5)
    system.note(f"not settled after {SETTLE_TIMEOUT:g}s; backlog {await _backlog(system.api)}")


def _save_history(workdir: Path, load: Load) -> None:
    """What the load generator saw, beside the sink's journal, for a post-mortem."""
    with (workdir / "published.jsonl").open("wb") as out:
        for event in load.events.values():
            out.write(orjson.dumps(dataclasses.asdict(event)) + b"\n")


async def run_scenario(scenario: Scenario, workdir: Path) -> Verdict:
    workdir.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:10]
    async with _backends(scenario, workdir, run) as (env, store, cluster, private_nats):
        sink = SinkProcess(
            workdir,
            scenario.fail_percent,
            drop_percent=scenario.sink_drop_percent,
        )
        shared = workdir / "api"
        apis = [
            HubProcess(f"api-{i}", "api", workdir, env, data_dir=shared)
            for i in range(1, scenario.apis + 1)
        ]
        api = apis[0]
        workers = [HubProcess(f"worker-{i}", "worker", workdir, env) for i in (1, 2)]
        processes = [sink, *apis, *workers]
        system: System | None = None
        try:
            await sink.start()
            for process in apis:
                await process.start()
            async with api.client() as client:
                body = {"name": "faults", "types": ["faults.*"], "sink": {"url": sink.url},
                        "policy": scenario.policy}  # fmt: skip
                response = await client.post("/v1/subscriptions", json=body)
                assert response.status_code == 201, response.text
            await asyncio.gather(*(worker.start() for worker in workers))
            load = Load([a.url for a in apis], api.admin_key, run, rate=scenario.rate)
            system = System(workdir, sink, api, apis, workers, load, store, cluster, private_nats)
            system.t0 = time.time()
            load.start()
            fault = asyncio.create_task(scenario.fault(system)) if scenario.fault else None
            await asyncio.sleep(scenario.duration)
            await load.stop()
            system.note(
                f"load stopped: {len(load.events)} sent, {load.acked} acked, "
                f"{load.failed_posts} failed POSTs, {load.stored_unanswered} events found"
                " stored by a retry"
            )
            if fault is not None:
                await fault  # a fault may outlast the load (a pause past the lease)
            healed = time.time()
            _save_history(workdir, load)
            await _settle(system)
            settled = time.time()
            await asyncio.sleep(0.5)
            verdict = check(scenario.name, load.events.values(), sink.deliveries())
            verdict.settle_seconds = settled - healed
            verdict.notes = system.notes
            for process in processes:
                if process.runs and not process.alive:
                    verdict.notes.append(f"{process.name} died: {process.output()[-500:]}")
            return verdict
        except BaseException:
            if system is not None:
                print("\n".join(system.notes))
            for process in processes:
                print(f"--- {process.name} ---\n{process.output()}")
            raise
        finally:
            for process in reversed(processes):
                process.terminate(grace=5.0)
