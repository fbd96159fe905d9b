"""``python -m bench.scaleout``: the relay through split processes on the scale-out backends,
each next to the bare drivers doing the same work in the same run.

Topologies, each on fresh PostgreSQL schemas (and JetStream streams), dropped afterwards:

- store PostgreSQL + log PostgreSQL, and store PostgreSQL + log NATS JetStream;
- one API process (``forgeline serve --role api``) and one worker, then one API and two
  workers (``--role worker``), all on this 2-core machine with PostgreSQL, NATS, the
  receiver (``bench.receiver``) and this load generator.

For each: (a) throughput: ``--events`` events POSTed to the API in batches of 100 (8 POSTs
at once), delivered/s at the receiver from the first POST to the last arrival; (b) latency:
single-event POSTs at a steady ``--rate`` for ``--duration`` s (open loop), p50/p99 of
arrival minus the client's send time, and of the POST's answer (ingest ack).

Raw floors (``bench.scaleout_raw``), same events, same receiver, same POSTs in flight (32,
the subscription's default concurrency; ``--concurrency``):
asyncpg inserting batches and claiming them with ``FOR UPDATE SKIP LOCKED`` then marking
them delivered, with the POST and without it (the database's ceiling for the work); nats-py
publishing with ``Nats-Msg-Id``, pull-consuming and acking after the POST. No HTTP ingest in
front of the floors: the ratio prices Forgeline's whole path (HTTP in, log, routing, store,
HTTP out) against the engines' own floor for storing and handing out the events.

Where the time goes: CPU per process in each phase (share of one core; the machine has two),
and with py-spy installed (``.venv/bin/pip install py-spy``) an extra profiled throughput pass
per topology sampling the API and each worker (non-blocking, busy threads only), folded
stacks in ``bench/results/scaleout-*.folded``, summed into stages of the data path.

Results: one table on the terminal, everything in ``bench/results/scaleout.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import uvloop
from rich.console import Console
from rich.table import Table

from . import profile, scaleout_raw
from .events import make_event
from .relay import STRUCTURED_TYPE, Client, free_port, spawn, wait_delivered, wait_http
from .scaleout_hub import Backend, Load, run_split

RESULTS = Path(__file__).resolve().parent / "results" / "scaleout.json"
PG_DSN = os.environ.get("FORGELINE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("FORGELINE_BENCH_NATS", "nats://127.0.0.1:4222")
_tags = itertools.count()


def _raw_floor(name: str, target: scaleout_raw.Target) -> scaleout_raw.Floor:
    tag = f"{os.getpid():x}_{next(_tags)}"
    if name == "postgres":
        return scaleout_raw.PgFloor(PG_DSN, f"bench_so_raw_{tag}", target)
    return scaleout_raw.NatsFloor(NATS_URL, f"BENCH_SO_RAW_{tag}", target)


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    log = console.log
    load = Load(
        events=args.events,
        batch=100,
        post_concurrency=8,
        rate=args.rate,
        duration=args.duration,
        profile_events=args.profile_events,
        concurrency=args.concurrency,
        worker_uvloop=args.worker_loop == "uvloop",
    )
    profile_dir = None
    if not args.no_profile:
        if profile.py_spy() is None:
            log("py-spy not found (.venv/bin/pip install py-spy): no profile pass")
        else:
            profile_dir = RESULTS.parent
            profile_dir.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="forgeline-bench-scaleout-"))
    out: dict[str, Any] = {}
    try:
        port = free_port()
        with spawn("receiver", "bench.receiver", str(port), workdir=workdir) as receiver:
            sink = f"http://127.0.0.1:{port}"
            connector = aiohttp.TCPConnector(limit=1100)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                await wait_http(session, f"{sink}/stats", receiver, 30)
                client = Client(session)
                target = scaleout_raw.Target(session, sink, args.concurrency)

                async def warm(index: int) -> None:
                    body = orjson.dumps(make_event(index, "warmup-raw"))
                    await client.post(f"{sink}/sink", body, STRUCTURED_TYPE, {})

                await client.closed_loop(500, 32, warm)
                await wait_delivered(session, sink, "warmup-raw", 500, 30)
                for name in args.backends:
                    log(f"[bold]{name}[/]: raw floor")
                    raw = await scaleout_raw.measure(
                        lambda name=name: _raw_floor(name, target),  # type: ignore[misc]
                        name,
                        events=load.events,
                        batch=load.batch,
                        producers=load.post_concurrency,
                        rate=load.rate,
                        duration=min(load.duration, 10.0),
                        client=client,
                        db_only=name == "postgres",
                        log=log,
                    )
                    split: dict[str, Any] = {}
                    for workers in args.workers:
                        log(f"[bold]{name}[/]: 1 API + {workers} worker(s)")
                        backend = Backend(name, PG_DSN, NATS_URL)
                        split[str(workers)] = await run_split(
                            backend,
                            workers,
                            load,
                            session,
                            sink,
                            log,
                            profile_dir,
                        )
                    out[name] = {"raw": raw, "split": split}
                receiver.check()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# -- the table -----------------------------------------------------------------------------

LABELS = {"postgres": "PG store + PG log", "nats": "PG store + NATS log"}
SHORT = {"postgres": "PG/PG", "nats": "PG/NATS"}


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: (measurement, forgeline, raw, unit, ratio, note)."""
    out: list[dict[str, Any]] = []

    def row(
        name: str,
        figure: float | None,
        raw: float | None,
        unit: str,
        note: str = "",
        ratio: float | None = None,
    ) -> None:
        if ratio is None and figure is not None and raw:
            ratio = figure / raw
        out.append(
            {"measurement": name, "figure": figure, "raw": raw, "unit": unit, "ratio": ratio}
            | {"note": note}
        )

    for name, result in results["backends"].items():
        label = LABELS[name]
        raw = result["raw"]
        raw_tput = raw["throughput"]["events_per_s"]
        raw_lat = raw["latency"]
        floor = "asyncpg SKIP LOCKED + POST" if name == "postgres" else "nats-py pull + POST"
        split = result["split"]
        for workers, measured in split.items():
            tput = measured["throughput"]
            cpu = tput["cpu_share"]
            # CPU that none of this run's processes used: other work on a shared machine.
            other = cpu["other"] * 100
            busy = f"other load {other:.0f}%" + (" (noisy)" if other > 25 else "")
            missing = tput["events"] - tput["delivered"]
            note = f"{busy}; {tput['duplicates']} dup" + (f"; {missing} MISSING" if missing else "")
            row(
                f"{label}: delivered/s, 1 API + {workers}w",
                tput["delivered_events_per_s"],
                raw_tput,
                "events/s",
                f"raw: {floor}; {note}",
            )
            row(
                "    ingest (POSTs of 100 answered)",
                tput["ingest_events_per_s"],
                raw["throughput"]["insert_events_per_s"],
                "events/s",
                "raw: driver inserts, no HTTP",
            )
        if "1" in split and "2" in split:
            one = split["1"]["throughput"]["delivered_events_per_s"]
            two = split["2"]["throughput"]["delivered_events_per_s"]
            row(f"{label}: 2 workers vs 1", two, one, "events/s", "same machine, 2 cores")
        if "db_only" in raw:
            row(
                "    raw without the POST (DB ceiling)",
                None,
                raw["db_only"]["events_per_s"],
                "events/s",
                "insert + claim + mark, asyncpg",
            )
        for workers, measured in split.items():
            lat = measured["latency"]
            lost = lat["sent"] - lat["delivered"]
            for q in ("50", "99"):
                row(
                    f"{label}: p{q} @ {lat['rate']:g}/s, 1 API + {workers}w",
                    lat[f"p{q}_ms"],
                    raw_lat[f"p{q}_ms"],
                    "ms",
                    f"POST answered p{q} {lat[f'ack_p{q}_ms']:.1f} ms"
                    + (f"; {lost} MISSING" if lost else ""),
                )
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "events/s":
        return f"{value:,.0f}/s"
    return f"{value:,.1f} {unit}"


def render(table_rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Forgeline scale-out bench (raw = bare drivers, same run)")
    for column in ("measurement", "forgeline", "raw floor", "ratio", "note"):
        table.add_column(column, justify="left" if column in ("measurement", "note") else "right")
    for r in table_rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        table.add_row(
            r["measurement"],
            _fmt(r["figure"], r["unit"]),
            _fmt(r["raw"], r["unit"]),
            ratio,
            r["note"],
        )
    console.print(table)


def render_cpu(results: dict[str, Any], console: Console) -> None:
    """CPU per process during each throughput phase: what saturates the two cores."""
    table = Table(title="CPU during the throughput phase (% of one core; workers summed)")
    kinds = ["api", "worker", "postgres", "nats-server", "receiver", "client", "other"]
    kinds.append("machine_busy")
    table.add_column("topology")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for name, result in results["backends"].items():
        for workers, measured in result["split"].items():
            cpu = measured["throughput"]["cpu_share"]
            table.add_row(
                f"{LABELS[name]}, {workers}w",
                *(f"{cpu.get(kind, 0.0) * 100:.0f}" for kind in kinds),
            )
    console.print(table)


# Stages of the data path, by the innermost frame of a sample that names one: a sample in
# orjson under ``Event.to_json`` is "envelope" (event parsing and JSON), one in asyncpg under
# ``PostgresStore.claim`` is "store"; "log" is the event log's calls, "HTTP in" the API's
# request handling, "HTTP out" the delivery POSTs. Checked in this order for each frame,
# leaf first.
STAGES = (
    ("HTTP out", ("HttpSender.send",)),
    ("metrics", ("prometheus_client/",)),
    ("envelope", ("forgeline/envelope.py",)),
    ("store", ("PostgresStore.", "store/postgres.py")),
    ("log", ("PostgresLog.", "NatsLog.", "log/postgres.py", "log/nats.py")),
    ("routing", ("Router.", "SubscriptionTable.", "route/")),
    ("dispatch", ("Dispatcher.",)),
    ("HTTP in", ("uvicorn/", "starlette/", "fastapi/", "forgeline/api/")),
)
# Samples under no Forgeline frame: the drivers' own tasks and callbacks (aiohttp sends a
# request from a task of its own; asyncpg and nats-py parse replies in protocol callbacks).
# Each library serves one stage in a worker, except asyncpg (store and PostgreSQL log).
LIBRARIES = (
    ("HTTP out", ("aiohttp/",)),
    ("asyncpg (store or log)", ("asyncpg/",)),
    ("log", ("nats/",)),
    ("HTTP in", ("httptools", "h11")),
)
COLUMNS = [name for name, _ in STAGES] + ["asyncpg (store or log)", "loop, other"]


def _stage_of(frames: list[str]) -> str:
    for table in (STAGES, LIBRARIES):
        for frame in reversed(frames):
            found = next((n for n, marks in table if any(m in frame for m in marks)), None)
            if found:
                return found
    return "loop, other"


def stages(folded: Path) -> dict[str, float]:
    """% of a process's busy samples per stage; "loop, other" is the event loop itself
    (its poll, its callbacks; uvloop's own C code shows as ``Runner.run``)."""
    counts: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        stage = _stage_of(stack.split(";"))
        counts[stage] = counts.get(stage, 0) + count
    return {name: 100 * count / total for name, count in counts.items()} if total else {}


def _samples(folded: Path) -> int:
    return sum(
        int(line.rpartition(" ")[2])
        for line in folded.read_text().splitlines()
        if line.rpartition(" ")[2].isdigit()
    )


def render_stages(results: dict[str, Any], console: Console) -> None:
    names = COLUMNS
    table = Table(title="Where each process's busy time goes (py-spy, % of its samples)")
    table.add_column("process")
    table.add_column("samples", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for backend, result in results["backends"].items():
        for workers, measured in result["split"].items():
            prof = measured.get("profile")
            if not prof:
                continue
            for proc, shares in prof["stages"].items():
                table.add_row(
                    f"{SHORT[backend]} {workers}w {proc}",
                    str(prof["samples"][proc]),
                    *(f"{shares.get(name, 0.0):.0f}" for name in names),
                )
    console.print(table)


def render_profiles(results: dict[str, Any], console: Console) -> None:
    for name, result in results["backends"].items():
        for workers, measured in result["split"].items():
            prof = measured.get("profile")
            if not prof:
                continue
            for proc, top in prof["top"].items():
                for kind in ("self", "inclusive"):
                    console.print(
                        f"{LABELS[name]}, {workers}w, {proc}: top {kind} (% of busy samples)",
                        style="bold",
                    )
                    for frame, share in top[kind]:
                        console.print(f"  {share:5.1f}%  {frame}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=10_000, help="throughput events")
    parser.add_argument("--rate", type=float, default=200.0, help="steady events/s")
    parser.add_argument("--duration", type=float, default=10.0, help="steady seconds")
    parser.add_argument("--profile-events", type=int, default=12_000, help="profiled pass")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy pass")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="deliveries in flight (both paths)"
    )
    parser.add_argument(
        "--worker-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the workers' event loop (asyncio: what `forgeline serve --role worker` runs)",
    )
    parser.add_argument("--frames", action="store_true", help="print the top profile frames")
    parser.add_argument(
        "--backends", default="postgres,nats", type=lambda s: [x for x in s.split(",") if x]
    )
    parser.add_argument(
        "--workers", default="1,2", type=lambda s: [int(x) for x in s.split(",") if x]
    )
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    started = time.time()
    results: dict[str, Any] = {
        "started_at": started,
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": dict(vars(args)),
    }
    results["backends"] = uvloop.run(run(args, console))
    for result in results["backends"].values():
        for measured in result["split"].values():
            prof = measured.get("profile")
            if prof:
                files = {proc: Path(path) for proc, path in prof["files"].items()}
                prof["stages"] = {p: stages(f) for p, f in files.items() if f.exists()}
                prof["samples"] = {p: _samples(f) for p, f in files.items() if f.exists()}
    results["rows"] = rows(results)
    results["seconds"] = time.time() - started
    render(results["rows"], console)
    render_cpu(results, console)
    render_stages(results, console)
    if args.frames:
        render_profiles(results, console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"{results['seconds']:.0f}s; results in {RESULTS}")


if __name__ == "__main__":
    main()
