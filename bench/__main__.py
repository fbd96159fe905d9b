"""``python -m bench`` (``make bench``): Forgeline's throughput, latency and memory, each next to
the raw limit measured in the same run on the same machine.

1. Batch append: ``SqliteLog.append`` in batches of 100 and 1,000 events (~350-byte JSON
   bodies) vs plain ``sqlite3`` writing the same rows into the same table (the faster of
   ``executemany`` and multi-row ``INSERT … VALUES`` of 400 rows, as the log now writes), with
   the same PRAGMAs (WAL, synchronous=FULL) and one transaction per batch. Events/s each;
   ratio = log / raw (target >= 0.5x).
2. End-to-end relay, three processes on 127.0.0.1: this load generator (aiohttp), the hub
   (``bench.hub_server``: uvicorn + uvloop + httptools) and a receiver (``bench.receiver``:
   aiohttp answering 204), with one subscription (32 concurrent deliveries) to the receiver.
   a. throughput: 20,000 events POSTed in batches of 100 (8 concurrent POSTs); delivered
      events/s at the receiver, from the first POST to the last arrival (target >= 2,000/s).
      Raw limit: the same client POSTing single events straight to the receiver with the
      same concurrency as the hub's deliveries (32); ratio = delivered/s / raw requests/s.
   b. latency: single-event POSTs at a steady 500/s for 20 s (open loop); p50/p99 of the
      receiver's arrival time minus the send time the client put in ``data.sent`` (target
      p99 <= 100 ms). Raw limit: the same paced load straight to the receiver; ratio =
      relay / raw (how many times slower).
3. Memory: the hub's RSS (psutil) idle after start and at the end of the steady load
   (target <= 150 MB); ratio = end / idle.
4. Odoo import (``bench.odoo_import``): 50,000 product records from the simulated Odoo with
   the connector (keyset pages) vs a naive odoorpc loop reading one record per call (timed
   on a sample, extrapolated), same run; target >= 20x faster and <= 1 call per 500 records.
   The simulator's own in-process ``search_read`` rate is reported as the ceiling.

Results go to the terminal (one table) and to ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

import psutil
import uvloop
from rich.console import Console
from rich.table import Table

from . import append, odoo_import, profile, relay

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _row(
    name: str,
    figure: float,
    raw: float | None,
    unit: str,
    target: str,
    ok: bool | None,
    ratio: float | None = None,
) -> dict[str, Any]:
    if ratio is None and raw:
        ratio = figure / raw
    return {
        "measurement": name,
        "figure": figure,
        "raw": raw,
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "ok": ok,
    }


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in results["append"]:
        ratio = item["log_events_per_s"] / item["raw_events_per_s"]
        out.append(
            _row(
                f"1. append, batches of {item['batch']}",
                item["log_events_per_s"],
                item["raw_events_per_s"],
                "events/s",
                ">= 0.5x",
                ratio >= 0.5,
            )
        )
    r = results["relay"]
    raw, tput, lat, mem = r["raw"], r["throughput"], r["latency"], r["memory"]
    delivered_all = tput["delivered"] == tput["events"]
    out.append(
        _row(
            "2a. relay throughput (delivered)",
            tput["delivered_events_per_s"],
            raw["requests_per_s"],
            "events/s",
            ">= 2,000/s",
            tput["delivered_events_per_s"] >= 2000 and delivered_all and not tput["errors"],
        )
    )
    out.append(
        _row(
            "    ingest of the same batches",
            tput["ingest_events_per_s"],
            None,
            "events/s",
            "",
            None,
        )
    )
    for q in ("50", "99"):
        figure, limit = lat[f"p{q}_ms"], raw[f"latency_p{q}_ms"]
        out.append(
            _row(
                f"2b. latency p{q} @ {lat['rate']:g}/s",
                figure,
                limit,
                "ms",
                "<= 100 ms" if q == "99" else "",
                (figure <= 100 and lat["delivered"] == lat["sent"]) if q == "99" else None,
            )
        )
    out.append(_row("    ingest ack p99 (POST answered)", lat["ack_p99_ms"], None, "ms", "", None))
    out.append(
        _row("    hub CPU, steady load", lat["hub_cpu_share"] * 100, None, "% core", "", None)
    )
    hub_cpu = tput["cpu_share"]["hub"] * 100
    out.append(_row("    hub CPU, throughput phase", hub_cpu, None, "% core", "", None))
    out.append(_row("3. hub RSS idle", mem["idle_mb"], None, "MB", "<= 150 MB", None))
    out.append(
        _row(
            "3. hub RSS end of steady load",
            mem["end_of_steady_mb"],
            mem["idle_mb"],
            "MB",
            "<= 150 MB",
            mem["end_of_steady_mb"] <= 150 and mem["peak_mb"] <= 150,
        )
    )
    out.append(_row("    hub RSS peak", mem["peak_mb"], mem["idle_mb"], "MB", "", None))
    odoo = results.get("odoo_import")
    if odoo:
        con, naive, raw = odoo["connector"], odoo["naive_odoorpc"], odoo["raw_search_read"]
        out.append(
            _row(
                "4. Odoo import, connector vs naive odoorpc",
                con["records_per_s"],
                naive["records_per_s"],
                "records/s",
                ">= 20x",
                odoo["speedup"] >= 20,
            )
        )
        out.append(
            _row(
                "    records per RPC call",
                con["records_per_call"],
                None,
                "records",
                ">= 500",
                con["records_per_call"] >= 500,
            )
        )
        out.append(
            _row(
                "    simulator search_read in-process (ceiling)",
                raw["records_per_s"],
                None,
                "records/s",
                "",
                None,
            )
        )
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("events/s", "records/s"):
        return f"{value:,.0f}/s"
    return f"{value:,.1f} {unit}"


def render(table_rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Forgeline bench (raw = the limit measured in this run)")
    for column in ("measurement", "forgeline", "raw limit", "ratio", "target", ""):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for row in table_rows:
        verdict = {True: "[green]ok[/]", False: "[red]MISSED[/]", None: ""}[row["ok"]]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        table.add_row(
            row["measurement"],
            _fmt(row["figure"], row["unit"]),
            _fmt(row["raw"], row["unit"]),
            ratio,
            row["target"],
            verdict,
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="throughput events")
    parser.add_argument("--rate", type=float, default=500.0, help="steady events/s")
    parser.add_argument("--duration", type=float, default=20.0, help="steady seconds")
    parser.add_argument("--skip-append", action="store_true")
    parser.add_argument("--skip-odoo", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="sample the hub with py-spy (installed apart)"
    )
    # Scale-out bench (bench/scaleout.py): PostgreSQL and NATS, split processes; on its own.
    parser.add_argument("--scaleout", action="store_true", help="run python -m bench.scaleout")
    args = parser.parse_args()
    if args.scaleout:
        from . import scaleout  # needs asyncpg and nats-py (the postgres, nats extras)

        scaleout.main([])
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    started = time.time()
    results: dict[str, Any] = {
        "started_at": started,
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "append": [],
    }
    if not args.skip_append:
        console.log("1. batch append: SqliteLog vs raw sqlite3")
        results["append"] = asyncio.run(append.run(total=args.events))
    console.log("2-3. relay through a hub process")
    folded = profile.RESULTS / "hub-profile.folded" if args.profile else None
    config = relay.Config(
        events=args.events, rate=args.rate, duration=args.duration, profile=folded
    )
    results["relay"] = uvloop.run(relay.run(config, log=console.log))
    if not args.skip_odoo:
        console.log("4. Odoo import: connector vs naive odoorpc, from the simulator")
        results["odoo_import"] = odoo_import.run()
    results["rows"] = rows(results)
    results["seconds"] = time.time() - started
    render(results["rows"], console)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"{results['seconds']:.0f}s; results in {RESULTS}")
    if folded is not None and folded.exists():
        for kind, items in profile.top(folded).items():
            console.print(f"hub profile, top {kind} (% of samples):")
            for frame, share in items:
                console.print(f"  {share:5.1f}%  {frame}", highlight=False)


if __name__ == "__main__":
    main()
