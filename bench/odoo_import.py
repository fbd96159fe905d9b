"""Bulk import from Odoo: the connector's keyset paging vs the naive per-record RPC loop.

One simulated Odoo 17 (``OdooServer`` on a background thread, loopback HTTP) holds 50,000
``product.product`` records (made by the simulator's ``datagen`` in-process before serving,
with their templates, BoMs and stock; plain ORM creates if ``datagen`` is missing). In the
same run:

a. the connector: ``import_records`` (``iter_search_read``, 2,000 records a page, the next
   page fetched while the current one is handled) over JSON-RPC;
b. the naive loop most scripts write with odoorpc: ``search`` all ids, then ``read`` one
   record per call. It is timed on a sample (``--sample`` records, 1,000 by default) and
   extrapolated to every record (said so in the results);
c. the raw limit: the simulator's own ``search_read`` of the same pages, in-process, no HTTP.

Wall time, RPC calls, records per call and the ratio b / a (target >= 20x, and <= 1 call per
500 records) go to the terminal and to ``bench/results/odoo_import.json``.

    .venv/bin/python -m bench.odoo_import [--records 50000] [--page 2000] [--sample 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results" / "odoo_import.json"
FIELDS = ["name", "default_code", "barcode", "list_price", "standard_price", "categ_id", "uom_id"]
MODEL = "product.product"


def populate(simulator: Any, count: int) -> dict[str, Any]:
    """``count`` products in database ``demo``; how they were made and how long it took."""
    started = time.perf_counter()
    existing = simulator.execute_kw("demo", 2, MODEL, "search_count", [[]], {})
    missing = max(0, count - existing)
    try:
        from forgeline.sim.odoo import datagen
    except ImportError:
        datagen = None  # type: ignore[assignment]
    if datagen is not None and missing:
        method = "datagen"
        with simulator.transaction("demo") as env:
            datagen.generate(env, products=missing, partners=0, orders=0, seed=7)
    else:
        method = "orm"
        chunk = 5000
        for start in range(0, missing, chunk):
            vals = [
                {"name": f"Bench product {i:06d}", "default_code": f"BP{i:06d}",
                 "list_price": 10.0 + i % 97, "standard_price": 5.0 + i % 13}
                for i in range(start, min(missing, start + chunk))
            ]  # fmt: skip
            simulator.execute_kw("demo", 2, MODEL, "create", [vals], {})
    total = simulator.execute_kw("demo", 2, MODEL, "search_count", [[]], {})
    return {"method": method, "records": total, "seconds": time.perf_counter() - started}


async def connector_import(url: str, page: int) -> dict[str, Any]:
    from forgeline.connectors.odoo import OdooClient, import_records

    async with OdooClient(
        url, "demo", login="admin", password="admin", protocol="jsonrpc"
    ) as client:
        before = client.requests
        started = time.perf_counter()
        result = await import_records(client, MODEL, [], FIELDS, page_size=page)
        seconds = time.perf_counter() - started
        calls = client.requests - before
    return {
        "records": result.records,
        "pages": result.pages,
        "calls": calls,
        "seconds": seconds,
        "records_per_s": result.records / seconds,
        "records_per_call": result.records / calls,
        "protocol": "jsonrpc",
        "page_size": page,
    }


def naive_odoorpc(url: str, sample: int) -> dict[str, Any]:
    import odoorpc  # type: ignore[import-untyped]

    parts = urlsplit(url)
    odoo = odoorpc.ODOO(parts.hostname, port=parts.port, timeout=60)
    odoo.login("demo", "admin", "admin")
    started = time.perf_counter()
    ids = odoo.execute_kw(MODEL, "search", [[]])
    search_seconds = time.perf_counter() - started
    picked = ids[:sample]
    started = time.perf_counter()
    for record_id in picked:
        odoo.execute_kw(MODEL, "read", [[record_id]], {"fields": FIELDS})
    per_record = (time.perf_counter() - started) / len(picked)
    total = len(ids)
    return {
        "records": total,
        "sampled": len(picked),
        "calls": 1 + total,
        "seconds": search_seconds + per_record * total,
        "extrapolated": len(picked) < total,
        "per_record_ms": per_record * 1000,
        "records_per_s": total / (search_seconds + per_record * total),
        "records_per_call": total / (1 + total),
    }


def raw_search_read(simulator: Any, page: int) -> dict[str, Any]:
    """The simulator's own paging, in-process: the ceiling any client over HTTP stays under."""
    started = time.perf_counter()
    last, records, pages = 0, 0, 0
    while True:
        rows = simulator.execute_kw(
            "demo", 2, MODEL, "search_read", [[("id", ">", last)]],
            {"fields": FIELDS, "limit": page, "order": "id"},
        )  # fmt: skip
        if not rows:
            break
        records += len(rows)
        pages += 1
        last = rows[-1]["id"]
        if len(rows) < page:
            break
    seconds = time.perf_counter() - started
    return {
        "records": records,
        "pages": pages,
        "seconds": seconds,
        "records_per_s": records / seconds,
        "pages_per_s": pages / seconds,
    }


def run(records: int = 50_000, page: int = 2000, sample: int = 1000) -> dict[str, Any]:
    from forgeline.sim.odoo import OdooSimulator
    from forgeline.sim.odoo.server import serve_in_thread

    simulator = OdooSimulator(17)
    try:
        setup = populate(simulator, records)
        with serve_in_thread(simulator) as server:
            connector = asyncio.run(connector_import(server.url, page))
            naive = naive_odoorpc(server.url, sample)
        raw = raw_search_read(simulator, page)
    finally:
        simulator.close()
    speedup = naive["seconds"] / connector["seconds"]
    return {
        "setup": setup,
        "connector": connector,
        "naive_odoorpc": naive,
        "raw_search_read": raw,
        "speedup": speedup,
        "targets": {
            "speedup >= 20x": speedup >= 20,
            "<= 1 call per 500 records": connector["records_per_call"] >= 500,
        },
    }


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    con, naive, raw = results["connector"], results["naive_odoorpc"], results["raw_search_read"]
    table = Table(title=f"Odoo import of {con['records']:,} product.product records")
    for column in ("path", "wall", "records/s", "RPC calls", "records/call"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row(
        f"a. connector, keyset pages of {con['page_size']:,} (+1 count)",
        f"{con['seconds']:.2f} s", f"{con['records_per_s']:,.0f}", f"{con['calls']:,}",
        f"{con['records_per_call']:,.0f}",
    )  # fmt: skip
    note = f" (sample of {naive['sampled']:,}, extrapolated)" if naive["extrapolated"] else ""
    table.add_row(
        f"b. naive odoorpc, read per record{note}",
        f"{naive['seconds']:.1f} s", f"{naive['records_per_s']:,.0f}", f"{naive['calls']:,}",
        f"{naive['records_per_call']:.2f}",
    )  # fmt: skip
    table.add_row(
        "c. simulator search_read in-process (raw)",
        f"{raw['seconds']:.2f} s", f"{raw['records_per_s']:,.0f}", f"{raw['pages']} pages",
        f"{raw['pages_per_s']:.1f} pages/s",
    )  # fmt: skip
    console.print(table)
    verdicts = ", ".join(f"{k}: {'ok' if v else 'MISSED'}" for k, v in results["targets"].items())
    console.print(f"speedup a vs b: {results['speedup']:.0f}x ({verdicts})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.odoo_import", description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--page", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=1000, help="naive reads actually timed")
    args = parser.parse_args()
    started = time.time()
    results = run(args.records, args.page, args.sample)
    results["started_at"] = started
    results["seconds"] = time.time() - started
    render(results)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
