"""``forgeline webhooks …``: outbound webhook endpoints, from the command line.

HTTP clients of a running hub (``--url`` / ``FORGELINE_URL``), authenticated with ``--token``
(``FORGELINE_TOKEN``; default: the admin key of the local data directory), as the rest of the
``forgeline`` command is. ``create`` and ``rotate`` print a ``whsec_`` secret once: the hub
keeps it sealed and never shows it again.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from ._cli import DataDir, fail, out
from ._cli_http import Token, Url
from ._cli_http import call as _call
from ._cli_http import hub_client as _client

__all__ = ["app"]

DEFAULT_URL = "http://127.0.0.1:8080"
_ENDPOINTS = "/v1/webhooks/endpoints"
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

app = typer.Typer(
    help="Outbound webhook endpoints: signed, retried, recoverable.", no_args_is_help=True
)

EndpointId = Annotated[str, typer.Argument(metavar="ID", help="The endpoint's id (ep_…)")]


# -- talking to a hub --------------------------------------------------------------------------


def _path(endpoint_id: str, suffix: str = "") -> str:
    return f"{_ENDPOINTS}/{quote(endpoint_id, safe='')}{suffix}"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def since_time(text: str, now: dt.datetime | None = None) -> str:
    """``--since``: an ISO 8601 time (``2026-11-27T08:00:00Z``) or an age (``30m``, ``2h``,
    ``1d``), as the ISO time the API takes."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        seconds = float(ago.group(1)) * _UNIT[ago.group(2)]
        return ((now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)).isoformat()
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--since {text!r}: give an ISO time (2026-11-27T08:00:00Z) or an age (2h, 1d)", 2)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat()


def _print_secret(answer: dict[str, Any]) -> None:
    if "secret" in answer:
        out.print(f"secret: {answer['secret']}")
        out.print("[yellow]shown once: give it to the receiver now[/yellow]")
    if "public_key" in answer:
        out.print(f"public key (v1a): {answer['public_key']}")


# -- commands ----------------------------------------------------------------------------------


@app.command("list")
def list_endpoints(url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None) -> None:
    """The endpoints you may see."""
    table = Table("id", "url", "types", "enabled", "signing", "failing since", "description")
    after = ""
    with _client(url, token, data_dir) as client:
        while True:
            page = _call(client, "GET", _ENDPOINTS, params={"after": after, "limit": 1000})
            for e in page["endpoints"]:
                enabled = "yes" if e["enabled"] else f"no ({e.get('disabled_reason') or '-'})"
                table.add_row(
                    e["id"], escape(e["url"]), escape(" ".join(e["types"])), escape(enabled),
                    e["signing"] or "-", _when(e["failing_since"]), escape(e["description"]),
                )  # fmt: skip
            if page["next_after"] is None:
                break
            after = page["next_after"]
    out.print(table)


@app.command("create")
def create(
    endpoint_url: Annotated[str, typer.Argument(metavar="URL", help="Where to POST")],
    type: Annotated[list[str], typer.Option("--type", "-t", help="An event type pattern (repeat)")],
    description: Annotated[str, typer.Option(help="What it is, for people")] = "",
    metadata: Annotated[str | None, typer.Option(help="A JSON object kept with it")] = None,
    filter: Annotated[str | None, typer.Option(help="An expression over the event")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Attempts per second at most")] = None,
    ordering: Annotated[str, typer.Option(help="none, or key (per partition key)")] = "none",
    signing: Annotated[str, typer.Option(help="v1 (HMAC) or v1a (Ed25519)")] = "v1",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it turned off")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create an endpoint; prints its id and (once) its secret."""
    body: dict[str, Any] = {
        "url": endpoint_url,
        "types": type,
        "description": description,
        "ordering": ordering,
        "signing": signing,
        "enabled": not disabled,
    }
    if metadata is not None:
        try:
            body["metadata"] = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            fail(f"--metadata is not JSON: {exc}", 2)
    if filter is not None:
        body["filter"] = filter
    if rate_limit is not None:
        body["rate_limit"] = rate_limit
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", _ENDPOINTS, json=body)
    out.print(f"created {answer['id']} → {escape(answer['url'])}")
    _print_secret(answer)


@app.command("show")
def show(
    endpoint_id: EndpointId, url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None
) -> None:
    """One endpoint, as JSON (never its secret)."""
    with _client(url, token, data_dir) as client:
        out.print_json(data=_call(client, "GET", _path(endpoint_id)))


@app.command("rotate")
def rotate(
    endpoint_id: EndpointId,
    overlap: Annotated[float, typer.Option(help="Seconds the old secret keeps signing")] = 86_400.0,
    signing: Annotated[str | None, typer.Option(help="v1 or v1a [default: as now]")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """A new signing secret; the old one signs too until the overlap ends."""
    body: dict[str, Any] = {"overlap_seconds": overlap}
    if signing is not None:
        body["signing"] = signing
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", _path(endpoint_id, "/secret/rotate"), json=body)
    out.print(f"rotated {answer['id']}: the previous secret signs until "
              f"{_when(answer['previous_expires_at'])} UTC")  # fmt: skip
    _print_secret(answer)


@app.command("recover")
def recover(
    endpoint_id: EndpointId,
    since: Annotated[str, typer.Option(help="An ISO time, or an age: 30m, 2h, 1d")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Send again every message that failed (dead) since a time."""
    with _client(url, token, data_dir) as client:
        body = {"since": since_time(since)}
        answer = _call(client, "POST", _path(endpoint_id, "/recover"), json=body)
    out.print(f"recovering {answer['recovered']} message(s)")
    if not answer.get("enabled", True):
        out.print("[yellow]the endpoint is disabled: they go out once it is enabled[/yellow]")


@app.command("test")
def send_test(
    endpoint_id: EndpointId, url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None
) -> None:
    """Send a webhook.test.v1 event to this endpoint only; exit 1 unless it took it."""
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", _path(endpoint_id, "/test"))
    status = answer["status"] if answer["status"] is not None else "no answer"
    line = f"{status} in {answer['duration_ms']:.0f} ms"
    if answer["delivered"]:
        out.print(f"[green]delivered[/green]: {line}")
        return
    fail(f"not delivered: {line}: {answer['error']}")


@app.command("attempts")
def attempts(
    endpoint_id: EndpointId,
    state: Annotated[str | None, typer.Option(help="Only messages in this state")] = None,
    limit: Annotated[int, typer.Option(help="Messages, newest first")] = 50,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """The endpoint's recent messages, each attempt with its status, duration and error."""
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        params["state"] = state
    with _client(url, token, data_dir) as client:
        page = _call(client, "GET", _path(endpoint_id, "/attempts"), params=params)
    table = Table("message", "state", "#", "time", "status", "ms", "error", "next attempt")
    for m in page["messages"]:
        for a in m["history"] or [{}]:
            duration = a.get("duration_ms")
            table.add_row(
                escape(m["event_id"]), m["state"], str(a.get("attempt", "-")),
                _when(a.get("time")), str(a.get("status") or "-"),
                "-" if duration is None else f"{duration:.0f}",
                escape((a.get("error") or "")[:80]), _when(m["next_attempt_at"]),
            )  # fmt: skip
    out.print(table)


@app.command("enable")
def enable(
    endpoint_id: EndpointId, url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None
) -> None:
    """Turn a disabled endpoint on again."""
    with _client(url, token, data_dir) as client:
        _call(client, "POST", _path(endpoint_id, "/enable"))
    out.print(f"enabled {endpoint_id}")


@app.command("delete")
def delete(
    endpoint_id: EndpointId, url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None
) -> None:
    """Delete an endpoint, its secrets and its messages."""
    with _client(url, token, data_dir) as client:
        _call(client, "DELETE", _path(endpoint_id))
    out.print(f"deleted {endpoint_id}")
