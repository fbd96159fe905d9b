"""The ``forgeline`` command: serve a hub, and drive a running one over its HTTP API.

``serve``, ``demo`` and ``token`` work on this machine; ``events``, ``subs``, ``dlq`` and
``replay`` are HTTP clients of a hub at ``--url`` (env ``FORGELINE_URL``), authenticated with
``--token`` (env ``FORGELINE_TOKEN``; default: the admin key of the local data directory).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import orjson
import typer
import yaml
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from . import cli_plant, cli_security, cli_webhooks
from ._cli import DataDir, err, fail, out
from .cli_serve import serve
from .envelope import BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, Event
from .exceptions import ForgelineError
from .hub import read_admin_key

__all__ = ["app", "main"]

BATCH_SIZE = 500
POLL_SECONDS = 0.5
DEFAULT_URL = "http://127.0.0.1:8080"

app = typer.Typer(
    name="forgeline",
    help="Forgeline: durable events between Odoo and the shop floor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Publish, show and tail events.", no_args_is_help=True)
subs_app = typer.Typer(help="List, create and delete subscriptions.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect, replay and discard dead letters.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(subs_app, name="subs")
app.add_typer(dlq_app, name="dlq")
cli_plant.register(app)
cli_security.register(app)
app.add_typer(cli_webhooks.app, name="webhooks")
app.command()(serve)


def main() -> None:
    app()


# -- local commands ----------------------------------------------------------------------------


@app.command()
def demo(
    smoke: Annotated[bool, typer.Option(help="A short run that checks itself.")] = False,
) -> None:
    """Run the built-in demo: a hub, sinks and a stream of shop-floor events."""
    try:
        run_demo = importlib.import_module("forgeline.demo").run_demo
    except ModuleNotFoundError as exc:
        if exc.name != "forgeline.demo":
            raise
        fail("the demo is not part of this installation", 2)
    ok = bool(asyncio.run(run_demo(smoke=smoke)))
    raise typer.Exit(0 if ok else 1)


# -- the HTTP client ---------------------------------------------------------------------------

Url = Annotated[str, typer.Option(envvar="FORGELINE_URL", help="The hub's base URL.")]
Token = Annotated[
    str | None,
    typer.Option(envvar="FORGELINE_TOKEN", help="API key [default: the data dir's admin key]"),
]


def _client(url: str, token: str | None, data_dir: Path | None) -> httpx.Client:
    key = token or read_admin_key(data_dir or Path(".forgeline"))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:  # noqa: RET503 (fail never returns)
    """One request; a problem answer or an unreachable hub ends the command with exit 1."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        fail(f"no hub at {client.base_url}")
    except httpx.TransportError as exc:
        fail(f"{client.base_url}: {exc or type(exc).__name__}")
    if response.is_success:
        return response.json() if response.content else None
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        body = response.json()
        lines = [f"{body.get('title', response.status_code)}: {body.get('detail', '')}"]
        lines += [f"  {e.get('path', '')}: {e.get('message', '')}" for e in body.get("errors", [])]
        fail("\n".join(lines))
    fail(f"HTTP {response.status_code}: {response.text[:500]}")


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# -- events ------------------------------------------------------------------------------------


def _read_events(file: str) -> list[Any]:
    """A JSON event, a JSON array of events, or JSON Lines, from a file or stdin ('-')."""
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        items = []
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    fail(f"{file}:{number}: not JSON: {exc}")
        return items
    return document if isinstance(document, list) else [document]


@events_app.command("publish")
def events_publish(
    file: Annotated[
        str | None, typer.Argument(help="JSON, JSON array or JSON Lines; - is stdin")
    ] = None,
    type: Annotated[str | None, typer.Option("--type", help="Type of a single new event")] = None,
    source: Annotated[str, typer.Option(help="Source of a single new event")] = "forgeline/cli",
    subject: Annotated[str | None, typer.Option(help="Subject of a single new event")] = None,
    data: Annotated[str | None, typer.Option(help="JSON data of a single new event")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Publish events from FILE, or one event built from --type/--source/--subject/--data."""
    if (file is None) == (type is None):
        fail("give a FILE, or --type (with --source, --subject, --data) for one event", 2)
    with _client(url, token, data_dir) as client:
        if file is None:
            try:
                payload = orjson.loads(data) if data is not None else None
                event = Event.new(type or "", source, payload, subject=subject)
            except orjson.JSONDecodeError as exc:
                fail(f"--data is not JSON: {exc}", 2)
            except ForgelineError as exc:
                fail(_describe(exc))
            headers = {"content-type": STRUCTURED_CONTENT_TYPE}
            answer = _call(client, "POST", "/v1/events", content=event.to_json(), headers=headers)
            results = answer["events"]
        else:
            results = _publish_batches(client, _read_events(file))
    duplicates = sum(1 for r in results if r["duplicate"])
    out.print(f"stored {len(results) - duplicates}, duplicates {duplicates}")


def _describe(exc: ForgelineError) -> str:
    return "\n".join([exc.detail] + [f"  {e['path']}: {e['message']}" for e in exc.errors])


def _publish_batches(client: httpx.Client, items: list[Any]) -> list[dict[str, Any]]:
    if not items:
        fail("no events to publish")
    results: list[dict[str, Any]] = []
    headers = {"content-type": BATCH_CONTENT_TYPE}
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("publishing", total=len(items))
        for start in range(0, len(items), BATCH_SIZE):
            batch = items[start : start + BATCH_SIZE]
            try:
                body = orjson.dumps(batch)
                answer = _call(client, "POST", "/v1/events", content=body, headers=headers)
            except typer.Exit:
                if start:  # error paths such as [3].type count from the batch's first event
                    err.print(
                        f"[red]events {start}..{start + len(batch) - 1} were refused "
                        f"(paths count from event {start}); the {start} before were stored[/red]"
                    )
                raise
            results += answer["events"]
            progress.advance(task, len(batch))
    return results


@events_app.command("show")
def events_show(
    event_id: Annotated[str, typer.Argument(metavar="ID")],
    source: Annotated[str | None, typer.Option(help="Needed when several sources used ID")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Print one event as CloudEvents JSON."""
    with _client(url, token, data_dir) as client:
        event = _call(
            client, "GET", f"/v1/events/{_seg(event_id)}", params=_drop_none(source=source)
        )
    out.print_json(data=event)


@events_app.command("tail")
def events_tail(
    type: Annotated[str | None, typer.Option("--type", help="Type pattern, e.g. 'lot.*'")] = None,
    after: Annotated[int, typer.Option(min=0, help="Start after this log position")] = 0,
    follow: Annotated[bool, typer.Option(help="Keep polling for new events")] = True,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Print events from the log: position, type, subject, id (one line each)."""
    with _client(url, token, data_dir) as client:
        try:
            for record in _records(client, after, type, follow):
                event = record["event"]
                typer.echo(
                    f"{record['position']}\t{event['type']}\t{event.get('subject') or '-'}"
                    f"\t{event['id']}"
                )
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def _records(
    client: httpx.Client, after: int, type: str | None, follow: bool
) -> Iterator[dict[str, Any]]:
    while True:
        params = _drop_none(after=after, type=type, limit=1000)
        page = _call(client, "GET", "/v1/events", params=params)
        yield from page["events"]
        if page["next_after"] != after:
            after = page["next_after"]
            continue
        if not follow:
            return
        time.sleep(POLL_SECONDS)


# -- subscriptions -----------------------------------------------------------------------------


def _sink_text(sink: dict[str, Any]) -> str:
    if "url" in sink:
        return str(sink["url"])
    return f"publish {sink.get('publish', {}).get('type', '?')}"


@subs_app.command("list")
def subs_list(url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None) -> None:
    """Subscriptions with their backlog."""
    with _client(url, token, data_dir) as client:
        items = _call(client, "GET", "/v1/subscriptions")["subscriptions"]
    table = Table("name", "id", "types", "sink", "pending/retrying/dead")
    for sub in items:
        backlog = sub.get("backlog", {})
        pending = backlog.get("pending", 0) + backlog.get("inflight", 0)
        counts = f"{pending}/{backlog.get('retrying', 0)}/{backlog.get('dead', 0)}"
        name = sub["name"] if sub.get("enabled", True) else f"{sub['name']} (disabled)"
        table.add_row(
            escape(name), sub["id"], escape(", ".join(sub["types"])),
            escape(_sink_text(sub["sink"])), counts,
        )  # fmt: skip
    out.print(table)


@subs_app.command("create")
def subs_create(
    name: Annotated[str | None, typer.Argument(metavar="NAME")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Type pattern (repeat)")] = None,
    sink_url: Annotated[
        str | None, typer.Option("--url", help="The sink: POST events here")
    ] = None,
    ordering: Annotated[str | None, typer.Option(help="'key': in order per partition key")] = None,
    filter: Annotated[
        str | None, typer.Option("--filter", help="Expression over the event")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1)] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A spec in JSON or YAML")] = None,
    hub_url: Annotated[
        str, typer.Option("--hub", envvar="FORGELINE_URL", help="The hub's base URL.")
    ] = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create a subscription: NAME --type T --url SINK [options], or --file spec.json."""
    if file is not None:
        if name or types or sink_url:
            fail("give either --file or NAME --type --url, not both", 2)
        try:
            spec = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            fail(f"cannot read {file}: {exc}", 2)
    else:
        if not (name and types and sink_url):
            fail("give NAME, at least one --type and --url (or --file spec.json)", 2)
        policy: dict[str, Any] = _drop_none(ordering=ordering)
        if max_attempts is not None:
            policy["retry"] = {"max_attempts": max_attempts}
        spec = _drop_none(name=name, types=types, sink={"url": sink_url}, filter=filter)
        if policy:
            spec["policy"] = policy
    with _client(hub_url, token, data_dir) as client:
        sub = _call(client, "POST", "/v1/subscriptions", json=spec)
    out.print(f"created subscription {escape(sub['name'])} ({sub['id']})")


@subs_app.command("delete")
def subs_delete(
    id_or_name: Annotated[str, typer.Argument(metavar="ID_OR_NAME")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Delete a subscription and its deliveries."""
    with _client(url, token, data_dir) as client:
        _call(client, "DELETE", f"/v1/subscriptions/{_seg(id_or_name)}")
    out.print(f"deleted subscription {escape(id_or_name)}")


@app.command("replay")
def replay(
    subscription: Annotated[str, typer.Argument(help="Subscription id or name")],
    after: Annotated[int, typer.Option(min=0, help="Positions after this one")] = 0,
    until: Annotated[int | None, typer.Option(min=0, help="Up to this position")] = None,
    since: Annotated[str | None, typer.Option(help="Logged from this ISO time (with zone)")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Type pattern")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Deliver a range of the log to a subscription again."""
    body = _drop_none(after=after, until=until, since=since, type=type)
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", f"/v1/subscriptions/{_seg(subscription)}/replay", json=body)
    out.print(f"scheduled {answer['scheduled']} deliveries for {escape(subscription)}")


# -- dead letters ------------------------------------------------------------------------------

Subscription = Annotated[str | None, typer.Option(help="Subscription id or name")]
TypePattern = Annotated[str | None, typer.Option("--type", help="Event type pattern")]
DeadId = Annotated[int | None, typer.Argument(metavar="[ID]")]
All = Annotated[bool, typer.Option("--all", help="Every dead letter matching the filters")]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@dlq_app.command("list")
def dlq_list(
    subscription: Subscription = None,
    type: TypePattern = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Dead letters, oldest first."""
    table = Table("id", "subscription", "type", "event id", "attempts", "last error", "dead at")
    after = 0
    with _client(url, token, data_dir) as client:
        while True:
            params = _drop_none(subscription=subscription, type=type, after=after, limit=1000)
            page = _call(client, "GET", "/v1/deadletters", params=params)
            for d in page["deadletters"]:
                error = d.get("last_error") or d.get("reason") or ""
                if d.get("last_status"):
                    error = f"HTTP {d['last_status']} {error}"
                table.add_row(
                    str(d["id"]), d["subscription"], escape(d["event_type"]),
                    escape(d["event_id"]), str(d["attempts"]), escape(error[:80]),
                    _when(d.get("updated_at")),
                )  # fmt: skip
            if page["next_after"] is None:
                break
            after = page["next_after"]
    out.print(table)


@dlq_app.command("show")
def dlq_show(
    dead_id: Annotated[int, typer.Argument(metavar="ID")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """A dead letter: every attempt, and the event."""
    with _client(url, token, data_dir) as client:
        d = _call(client, "GET", f"/v1/deadletters/{dead_id}")
    out.print(
        f"[bold]dead letter {d['id']}[/bold] · subscription {d['subscription']} · "
        f"event {escape(d['event_id'])} ({escape(d['event_type'])}) at position {d['position']}"
    )
    if d.get("reason"):
        out.print(f"reason: {escape(d['reason'])}")
    table = Table("#", "time", "status", "outcome", "error", "response")
    for a in d.get("history", []):
        table.add_row(
            str(a["attempt"]), _when(a["started_at"]), str(a.get("status") or "-"),
            a["outcome"], escape(a.get("error") or ""), escape((a.get("response") or "")[:200]),
        )  # fmt: skip
    out.print(table)
    if d.get("event") is None:
        out.print("the event is no longer in the log")
    else:
        out.print_json(data=d["event"])


def _bulk_or_one(
    dead_id: int | None, all_: bool, subscription: str | None, type: str | None
) -> str | None:
    """The path for one dead letter, or None for --all (checking the arguments fit)."""
    if (dead_id is None) == (not all_):
        fail("give a dead letter ID, or --all (with --subscription / --type)", 2)
    if dead_id is not None and (subscription or type):
        fail("--subscription and --type go with --all", 2)
    return None if dead_id is None else f"/v1/deadletters/{dead_id}"


@dlq_app.command("replay")
def dlq_replay(
    dead_id: DeadId = None,
    all_: All = False,
    subscription: Subscription = None,
    type: TypePattern = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Deliver dead letters again: one by ID, or --all matching the filters."""
    one = _bulk_or_one(dead_id, all_, subscription, type)
    with _client(url, token, data_dir) as client:
        if one is not None:
            answer = _call(client, "POST", f"{one}/replay")
        else:
            body = _drop_none(subscription=subscription, type=type)
            answer = _call(client, "POST", "/v1/deadletters/replay", json=body)
    out.print(f"replayed {answer['replayed']}")


@dlq_app.command("discard")
def dlq_discard(
    dead_id: DeadId = None,
    reason: Annotated[str, typer.Option(help="Why (kept with the delivery)")] = "",
    all_: All = False,
    subscription: Subscription = None,
    type: TypePattern = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Discard dead letters with a --reason: one by ID, or --all matching the filters."""
    one = _bulk_or_one(dead_id, all_, subscription, type)
    if not reason.strip():
        fail("--reason is required", 2)
    with _client(url, token, data_dir) as client:
        if one is not None:
            answer = _call(client, "POST", f"{one}/discard", json={"reason": reason})
        else:
            body = _drop_none(subscription=subscription, type=type, reason=reason)
            answer = _call(client, "POST", "/v1/deadletters/discard", json=body)
    out.print(f"discarded {answer['discarded']}")
