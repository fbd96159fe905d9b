"""``forgeline principals …``, ``keys …``, ``signing-keys …``, ``token`` and ``audit …``: the
identity commands.

All but two are HTTP clients of a running hub (``--url`` / ``FORGELINE_URL``), authenticated
with ``--token`` (``FORGELINE_TOKEN``; default: the admin key of the local data directory), as
the rest of the ``forgeline`` command is. ``token --admin`` reads the data directory, and
``audit verify`` opens the store itself (from ``--config`` / ``--data-dir``, as ``serve``
would) so that it checks the chain without trusting a hub's answer about it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from ._cli import DataDir, err, fail, out
from ._cli_http import Token, Url
from ._cli_http import call as _call
from ._cli_http import hub_client as _client
from ._cli_http import refused as _refused
from ._sqlite import sqlite_path
from .config import Settings
from .exceptions import ConfigError, ForgelineError
from .hub import read_admin_key
from .security.audit import VerifyResult
from .security.store import open_security_store

__all__ = ["register", "token"]

DEFAULT_URL = "http://127.0.0.1:8080"

principals_app = typer.Typer(help="Principals: who may call the API.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys (and, with --client-secret, OAuth client secrets) of a principal.",
    no_args_is_help=True,
)
signing_app = typer.Typer(help="The keys that sign access tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the identity commands to the ``forgeline`` command."""
    app.add_typer(principals_app, name="principals")
    app.add_typer(keys_app, name="keys")
    app.add_typer(signing_app, name="signing-keys")
    app.add_typer(audit_app, name="audit")
    app.command("token")(token)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- principals --------------------------------------------------------------------------------

Kind = Annotated[str, typer.Option(help="user, service, plant or partner")]


@principals_app.command("create")
def principals_create(
    name: Annotated[str, typer.Argument()],
    kind: Kind = "service",
    scope: Annotated[list[str] | None, typer.Option("--scope", help="A scope (repeat)")] = None,
    tenant: Annotated[str | None, typer.Option(help="Its tenant (the operator's choice)")] = None,
    environment: Annotated[
        str | None, typer.Option(help="dev, test or prod [default: the hub's]")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create a principal; prints its id."""
    body: dict[str, Any] = {"kind": kind, "name": name, "scopes": scope or []}
    if tenant is not None:
        body["tenant"] = tenant
    if environment is not None:
        body["environment"] = environment
    with _client(url, token, data_dir) as client:
        principal = _call(client, "POST", "/v1/principals", json=body)
    out.print(f"created {principal['kind']} {escape(principal['name'])}: {principal['id']}")


@principals_app.command("list")
def principals_list(
    tenant: Annotated[str | None, typer.Option(help="The tenant (the operator must say)")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """The principals of a tenant."""
    table = Table("id", "kind", "name", "tenant", "env", "scopes", "disabled")
    after: str | None = None
    with _client(url, token, data_dir) as client:
        while True:
            params = {
                k: v
                for k, v in {"tenant": tenant, "kind": kind, "after": after, "limit": 1000}.items()
                if v is not None
            }
            page = _call(client, "GET", "/v1/principals", params=params)
            for p in page["principals"]:
                table.add_row(
                    p["id"], p["kind"], escape(p["name"]), escape(p["tenant"]),
                    p["environment"], escape(" ".join(p["scopes"])),
                    "yes" if p["disabled"] else "",
                )  # fmt: skip
            after = page["next_after"]
            if after is None:
                break
    out.print(table)


@principals_app.command("show")
def principals_show(
    principal_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """A principal and its keys and client secrets (prefixes only)."""
    with _client(url, token, data_dir) as client:
        p = _call(client, "GET", f"/v1/principals/{_seg(principal_id)}")
        keys = _call(client, "GET", f"/v1/principals/{_seg(principal_id)}/keys")["keys"]
        secrets = _call(client, "GET", f"/v1/principals/{_seg(principal_id)}/secrets")["secrets"]
    state = " (disabled)" if p["disabled"] else ""
    out.print(
        f"[bold]{escape(p['name'])}[/bold]{state} · {p['kind']} · tenant {escape(p['tenant'])}"
        f" · {p['environment']} · {p['id']}"
    )
    out.print(f"scopes: {escape(' '.join(p['scopes'])) or '-'}")
    table = Table("kind", "id", "prefix", "state", "created", "expires", "last used")
    for kind, items in (("api key", keys), ("client secret", secrets)):
        for c in items:
            table.add_row(
                kind, c["id"], c["prefix"], c["state"], _when(c["created_at"]),
                _when(c["expires_at"]), _when(c["last_used_at"]),
            )  # fmt: skip
    out.print(table)


@principals_app.command("disable")
def principals_disable(
    principal_id: Annotated[str, typer.Argument(metavar="ID")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Disable a principal: its keys and tokens stop working at once."""
    with _client(url, token, data_dir) as client:
        p = _call(
            client, "PATCH", f"/v1/principals/{_seg(principal_id)}", json={"disabled": not enable}
        )
    out.print(f"{'enabled' if enable else 'disabled'} {escape(p['name'])} ({p['id']})")


# -- keys and client secrets -------------------------------------------------------------------

Secret = Annotated[
    bool, typer.Option("--client-secret", help="An OAuth client secret, not an API key")
]


def _credentials(principal_id: str, secret: bool) -> str:
    return f"/v1/principals/{_seg(principal_id)}/{'secrets' if secret else 'keys'}"


def _print_once(answer: dict[str, Any], secret: bool) -> None:
    """The new key on stdout alone (for scripts), what it is on stderr."""
    shown = answer["secret"] if secret else answer["key"]
    expires = _when(answer.get("expires_at")) if answer.get("expires_at") else "never"
    what = f"client secret for client_id {answer['principal_id']}" if secret else "API key"
    err.print(
        f"new {what} {answer['id']} ({answer['prefix']}…), expires {expires}."
        " It is shown this once: store it now."
    )
    typer.echo(shown)


@keys_app.command("create")
def keys_create(
    principal_id: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    expires_in: Annotated[
        int | None, typer.Option(min=1, help="Seconds until it expires [default: never]")
    ] = None,
    secret: Secret = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """A new API key (or client secret) for PRINCIPAL, printed once."""
    body = {} if expires_in is None else {"expires_in": expires_in}
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", _credentials(principal_id, secret), json=body)
    _print_once(answer, secret)


@keys_app.command("list")
def keys_list(
    principal_id: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    secret: Secret = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """PRINCIPAL's API keys (or client secrets): prefixes and dates, never the keys."""
    with _client(url, token, data_dir) as client:
        answer = _call(client, "GET", _credentials(principal_id, secret))
    table = Table("id", "prefix", "state", "created", "expires", "revoked", "last used")
    for c in answer["secrets" if secret else "keys"]:
        table.add_row(
            c["id"], c["prefix"], c["state"], _when(c["created_at"]), _when(c["expires_at"]),
            _when(c["revoked_at"]), _when(c["last_used_at"]),
        )  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    principal_id: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    secret: Secret = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Revoke one of PRINCIPAL's keys (or client secrets) at once."""
    with _client(url, token, data_dir) as client:
        revoked = _call(
            client, "POST", f"{_credentials(principal_id, secret)}/{_seg(key_id)}/revoke"
        )
    out.print(f"revoked {revoked['id']} ({revoked['prefix']})")


@keys_app.command("rotate")
def keys_rotate(
    principal_id: Annotated[str, typer.Argument(metavar="PRINCIPAL")],
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID")],
    overlap: Annotated[
        int | None, typer.Option(min=0, help="Seconds the old one keeps working [default: 1 day]")
    ] = None,
    secret: Secret = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Replace a key (or client secret): the new one printed once, the old one working for
    --overlap seconds more."""
    body = {} if overlap is None else {"overlap_seconds": overlap}
    path = f"{_credentials(principal_id, secret)}/{_seg(key_id)}/rotate"
    with _client(url, token, data_dir) as client:
        answer = _call(client, "POST", path, json=body)
    err.print(f"{key_id} stops working at {_when(answer['replaces']['expires_at'])} UTC")
    _print_once(answer, secret)


# -- signing keys ------------------------------------------------------------------------------


@signing_app.command("list")
def signing_list(url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None) -> None:
    """The signing keys that still verify tokens (the newest signs)."""
    with _client(url, token, data_dir) as client:
        keys = _call(client, "GET", "/v1/signing-keys")["keys"]
    table = Table("kid", "alg", "created", "retired")
    for key in keys:
        table.add_row(key["kid"], key["alg"], _when(key["created_at"]), _when(key["retired_at"]))
    out.print(table)


@signing_app.command("rotate")
def signing_rotate(url: Url = DEFAULT_URL, token: Token = None, data_dir: DataDir = None) -> None:
    """A new signing key; tokens signed by the old one keep verifying for the overlap."""
    with _client(url, token, data_dir) as client:
        key = _call(client, "POST", "/v1/signing-keys/rotate")
    out.print(f"new signing key {key['kid']} ({key['alg']})")


# -- tokens ------------------------------------------------------------------------------------


def token(
    admin: Annotated[bool, typer.Option("--admin", help="The admin key of the data dir.")] = False,
    client_id: Annotated[
        str | None, typer.Option(envvar="FORGELINE_CLIENT_ID", help="OAuth client id")
    ] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            envvar="FORGELINE_CLIENT_SECRET",
            help="OAuth client secret (prefer the variable: options show in `ps`)",
        ),
    ] = None,
    scope: Annotated[str | None, typer.Option(help="Space-separated scopes to ask for")] = None,
    url: Url = DEFAULT_URL,
    data_dir: DataDir = None,
) -> None:
    """Print a credential: the data dir's admin key (--admin), or an access token from a
    running hub for --client-id/--client-secret."""
    if admin:
        if client_id or client_secret:
            fail("--admin takes no client credentials", 2)
        directory = data_dir or Path(".forgeline")
        key = read_admin_key(directory)
        if not key:
            fail(f"no admin key in {directory}; start the hub once: forgeline serve", 2)
        typer.echo(key)
        return
    if not (client_id and client_secret):
        fail("give --admin, or --client-id and --client-secret (or FORGELINE_CLIENT_SECRET)", 2)
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    with httpx.Client(base_url=url.rstrip("/"), timeout=30.0) as client:
        try:
            response = client.post("/oauth/token", data=form, auth=(client_id, client_secret))
        except httpx.ConnectError:
            fail(f"no hub at {client.base_url}")
        except httpx.TransportError as exc:
            fail(f"{client.base_url}: {exc or type(exc).__name__}")
    if not response.is_success:
        _refused(response)
    answer = response.json()
    err.print(f"expires in {answer['expires_in']} s; scope: {answer.get('scope') or '-'}")
    typer.echo(answer["access_token"])


# -- audit -------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option(envvar="FORGELINE_CONFIG")] = None,
) -> None:
    """Check the whole audit chain in the store; exit 1 naming the first entry that breaks
    it (edited, deleted, or added behind the hub's back)."""
    try:
        settings = Settings.load(config_file=config, data_dir=data_dir)
        url = settings.store
        if url.startswith("sqlite:") and not Path(sqlite_path(url)).is_file():
            fail(f"no store at {sqlite_path(url)}: is --data-dir right?", 2)
        result, head = asyncio.run(_verify(url))
    except ConfigError as exc:
        fail(str(exc), 2)
    except ForgelineError as exc:  # BackendError and kin: the store could not be read
        fail(f"cannot read the audit log: {exc}")
    if not result.ok:
        fail(
            f"audit log broken at entry {result.first_bad_seq}: {result.reason}"
            f" ({result.checked} entries before it are intact)"
        )
    out.print(f"audit log intact: {result.checked} entries")
    if head is not None:
        # The chain cannot vouch for its newest entry: a copy of the head kept elsewhere can.
        out.print(f"head: entry {head[0]}, hash {head[1]}")


async def _verify(url: str) -> tuple[VerifyResult, tuple[int, str] | None]:
    async with open_security_store(url) as store:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("verifying", total=None)
            result = await store.verify_audit(
                progress=lambda checked: progress.update(task, completed=checked)
            )
        return result, await store.audit_head()


@audit_app.command("list")
def audit_list(
    tenant: Annotated[
        str | None, typer.Option(help="The tenant (the operator must say; * is the hub)")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. api_key.revoke")
    ] = None,
    since: Annotated[str | None, typer.Option(help="From this ISO time (with zone)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries")] = 1000,
    url: Url = DEFAULT_URL,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Audit entries, oldest first."""
    table = Table("seq", "time", "tenant", "actor", "action", "target", "outcome")
    after: int | None = None
    shown = 0
    with _client(url, token, data_dir) as client:
        while shown < limit:
            params = {"tenant": tenant, "action": action, "since": since, "after": after}
            params["limit"] = min(1000, limit - shown)
            page = _call(
                client,
                "GET",
                "/v1/audit",
                params={k: v for k, v in params.items() if v is not None},
            )
            for e in page["entries"]:
                table.add_row(
                    str(e["seq"]), _when(e["time"]), escape(e["tenant"]), escape(e["actor"]),
                    escape(e["action"]), escape(e["target"] or "-"), e["outcome"],
                )  # fmt: skip
            shown += len(page["entries"])
            after = page["next_after"]
            if after is None:
                break
    out.print(table)
