"""``forgeline sim …``, ``forgeline sync …`` and ``forgeline check``: the commands that touch
the plant's systems rather than a running hub.

``sim odoo`` serves the protocol-faithful Odoo simulator; ``sync odoo`` pulls records out of
an Odoo (real or simulated) in pages with a progress bar; ``check`` validates a config file
and reports every error with its path.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import Settings
from .exceptions import ForgelineError

__all__ = ["register"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

sim_app = typer.Typer(
    help="Simulated plant systems: real servers on loopback for demos and tests.",
    no_args_is_help=True,
)
sync_app = typer.Typer(help="Batch sync with the plant's systems.", no_args_is_help=True)
map_app = typer.Typer(help="Mappings: try one on a sample.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
    app.add_typer(sync_app, name="sync")
    app.add_typer(map_app, name="map")
    app.command("check")(check)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    return typer.Exit(code)


@sim_app.command("odoo")
def sim_odoo(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8069,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    odoo_version: Annotated[
        int, typer.Option("--odoo-version", min=16, max=19, help="Odoo major to behave like.")
    ] = 17,
    data: Annotated[
        Path | None, typer.Option(help="SQLite file that keeps the state across restarts.")
    ] = None,
    faults: Annotated[
        bool, typer.Option(help="Enable the POST /__sim__/faults admin endpoint.")
    ] = False,
    records: Annotated[
        int,
        typer.Option(
            min=0, help="Also generate about this many records (deterministic) before serving."
        ),
    ] = 0,
) -> None:
    """Serve a simulated Odoo (XML-RPC, JSON-RPC, JSON-2) with the database 'demo'
    (admin/admin), like a fresh Odoo with demo data."""
    from .sim.odoo.server import OdooServer, run

    def ready(server: OdooServer) -> None:
        if records:
            from .sim.odoo.datagen import generate, generate_counts

            with server.simulator.transaction("demo") as env:
                counts = generate(env, **generate_counts(records))
            err.print(f"generated {sum(counts.values()):,} records: {counts}")
        err.print(
            f"Odoo {server.version}.0 simulator on {server.url} "
            f"(databases: {', '.join(server.simulator.list_databases())}; admin/admin)"
        )

    run(port=port, host=host, version=odoo_version, data=data, admin=faults, ready=ready)


Port = Annotated[int, typer.Option(help="Port to listen on.")]
Host = Annotated[str, typer.Option(help="Address to bind.")]
Seed = Annotated[int, typer.Option(help="Seed of the simulation's choices.")]
Data = Annotated[Path | None, typer.Option(help="JSON file that keeps the state.")]
Callback = Annotated[
    str | None, typer.Option("--callback-url", help="POST the system's callbacks here.")
]
Faults = Annotated[bool, typer.Option(help="Enable the /__sim__/faults admin endpoint.")]


@sim_app.command("mes")
def sim_mes(
    port: Port = 8071,
    host: Host = "127.0.0.1",
    broker: Annotated[
        str | None, typer.Option(help="Publish over MQTT here: mqtt://host:1883.")
    ] = None,
    post_to: Annotated[
        str | None, typer.Option("--post-to", help="Or POST each message to this URL.")
    ] = None,
    site: Annotated[str, typer.Option(help="The site in the topics.")] = "site1",
    tick: Annotated[float, typer.Option(min=0.01, help="Seconds per production cycle.")] = 1.0,
    seed: Seed = 0,
    data: Data = None,
    faults: Faults = False,
) -> None:
    """Serve a simulated MES: work orders over REST, production, consumption and state
    messages over MQTT (or HTTP), in its own vocabulary."""
    from .sim.mes import run

    run(
        port, host, site=site, broker=broker, post_to=post_to, tick=tick, seed=seed,
        data=data, admin=faults,
    )  # fmt: skip


@sim_app.command("wms")
def sim_wms(
    port: Port = 8072,
    host: Host = "127.0.0.1",
    auto_complete: Annotated[
        float | None, typer.Option(help="Seconds after which new tasks complete by themselves.")
    ] = None,
    callback_url: Callback = None,
    seed: Seed = 0,
    data: Data = None,
    faults: Faults = False,
) -> None:
    """Serve a simulated WMS: put-away tasks and stock by bin, in its own vocabulary."""
    from .sim.wms import run

    run(
        port, host, auto_complete=auto_complete, callback_url=callback_url, seed=seed,
        data=data, admin=faults,
    )  # fmt: skip


@sim_app.command("qms")
def sim_qms(
    port: Port = 8073,
    host: Host = "127.0.0.1",
    lot: Annotated[
        list[str] | None,
        typer.Option(help="LOT=RESULT: script one lot (e.g. L1-2600001=REJECTED)."),
    ] = None,
    reject_rate: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
    decide_after: Annotated[float, typer.Option(min=0.0)] = 0.5,
    callback_url: Callback = None,
    seed: Seed = 0,
    data: Data = None,
    faults: Faults = False,
) -> None:
    """Serve a simulated QMS: inspections, results and lot holds, in its own vocabulary."""
    from .sim.qms import run

    lots: dict[str, str] = {}
    for item in lot or []:
        name, sep, result = item.partition("=")
        if not sep or not name or not result:
            raise _fail(f"--lot {item!r}: write LOT=RESULT", 2)
        lots[name] = result.upper()
    run(
        port, host, lots=lots, reject_rate=reject_rate, decide_after=decide_after,
        callback_url=callback_url, seed=seed, data=data, admin=faults,
    )  # fmt: skip


OdooUrl = Annotated[str, typer.Option("--url", envvar="ODOO_URL", help="Odoo's base URL.")]


@sync_app.command("odoo")
def sync_odoo(
    model: Annotated[str, typer.Argument(help="e.g. product.product")],
    url: OdooUrl = "http://127.0.0.1:8069",
    db: Annotated[str, typer.Option(envvar="ODOO_DB")] = "demo",
    login: Annotated[str | None, typer.Option(envvar="ODOO_LOGIN")] = None,
    password: Annotated[str | None, typer.Option(envvar="ODOO_PASSWORD")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="ODOO_API_KEY")] = None,
    fields: Annotated[str, typer.Option(help="Comma-separated field names [default: all]")] = "",
    domain: Annotated[str, typer.Option(help="An Odoo domain as JSON")] = "[]",
    page_size: Annotated[int, typer.Option(min=1, max=10_000)] = 2000,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write JSON lines here [default: stdout]")
    ] = None,
) -> None:
    """Read every record of MODEL that matches --domain, in pages, as JSON lines."""
    try:
        parsed_domain = json.loads(domain)
    except json.JSONDecodeError as exc:
        raise _fail(f"--domain is not JSON: {exc}", 2) from exc
    if not isinstance(parsed_domain, list):
        raise _fail('--domain must be a JSON list such as [["active", "=", true]]', 2)
    names = [name.strip() for name in fields.split(",") if name.strip()]
    try:
        count = asyncio.run(
            _sync_odoo(
                model,
                url=url,
                db=db,
                credentials={"login": login, "password": password, "api_key": api_key},
                fields=names,
                domain=parsed_domain,
                page_size=page_size,
                output=output,
            )
        )
    except ForgelineError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from exc
    err.print(
        f"[green]{count} {escape(model)} records[/green]" + (f" → {output}" if output else "")
    )


async def _sync_odoo(
    model: str,
    *,
    url: str,
    db: str,
    credentials: dict[str, str | None],
    fields: list[str],
    domain: list[Any],
    page_size: int,
    output: Path | None,
) -> int:
    from .connectors.odoo import OdooClient, iter_search_read

    sink = output.open("wb") if output else sys.stdout.buffer
    written = 0
    try:
        async with OdooClient(
            url,
            db,
            login=credentials["login"],
            password=credentials["password"],
            api_key=credentials["api_key"],
        ) as client:
            total = await client.search_count(model, domain)
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=err, transient=output is None) as progress:
                task = progress.add_task(model, total=total)
                pages = iter_search_read(client, model, domain, fields, page_size=page_size)
                async for page in pages:
                    sink.write(b"".join(orjson.dumps(r) + b"\n" for r in page))
                    written += len(page)
                    progress.update(task, completed=written)
    finally:
        if output:
            sink.close()
        else:
            sink.flush()
    return written


def check(
    config: Annotated[Path, typer.Argument(help="The YAML config file to validate.")],
) -> None:
    """Validate a config file: every error with its path, exit 0 only when it is usable."""
    try:
        settings = Settings.load(config_file=config, env={})
    except ForgelineError as exc:
        problems = [f"\n  {e['path']}: {e['message']}" for e in exc.errors if len(exc.errors) > 1]
        raise _fail(f"{exc}{''.join(problems)}", 1) from exc
    flows: dict[str, list[str]] = {}
    for spec in settings.subscriptions:
        if spec.flow is not None:
            flows.setdefault(spec.flow, []).append(spec.name.removeprefix(spec.flow + "."))
    plain = len(settings.subscriptions) - sum(map(len, flows.values()))
    kinds = sorted({system.kind for system in settings.systems.values()})
    out.print(
        f"[green]{escape(str(config))} is valid[/green]: {len(settings.systems)} system(s) "
        f"({', '.join(kinds) or 'none'}), {len(flows)} flow(s), {plain} subscription(s), "
        f"{len(settings.ownership)} ownership rule(s)"
    )
    for name, targets in flows.items():
        out.print(f"  flow {escape(name)} -> {escape(', '.join(targets))}")


@map_app.command("test")
def map_test(
    mapping: Annotated[Path, typer.Argument(help="The mapping (YAML or JSON).")],
    sample: Annotated[
        Path, typer.Argument(help="A sample: a CloudEvent, or its data alone (JSON).")
    ],
    xref: Annotated[
        Path | None,
        typer.Option(help="Cross-reference rows: [[system, entity, external id, canonical id]]."),
    ] = None,
) -> None:
    """Map SAMPLE with MAPPING: print the result as JSON, or the exact error (exit 1)."""
    from .mapping import map_test as run_map_test

    try:
        result = run_map_test(mapping, sample, xref)
    except ForgelineError as exc:
        problems = [f"\n  {e['path']}: {e['message']}" for e in exc.errors if len(exc.errors) > 1]
        raise _fail(f"{type(exc).__name__}: {exc}{''.join(problems)}") from exc
    typer.echo(result)  # plain: rich would wrap long lines and read [brackets] as markup
