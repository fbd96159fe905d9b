"""Talking to a running hub from the CLI's sub-apps: the URL and token options, a client with
the data dir's admin key by default, and one request that ends the command with exit 1 and
the problem's words when the hub says no (or cannot be reached)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer

from ._cli import fail
from .hub import read_admin_key

__all__ = ["Token", "Url", "call", "hub_client", "refused"]

Url = Annotated[str, typer.Option(envvar="FORGELINE_URL", help="The hub's base URL.")]
Token = Annotated[
    str | None,
    typer.Option(envvar="FORGELINE_TOKEN", help="API key [default: the data dir's admin key]"),
]


def hub_client(url: str, token: str | None, data_dir: Path | None) -> httpx.Client:
    key = token or read_admin_key(data_dir or Path(".forgeline"))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    # Long enough for a webhook test send (15 s per attempt by default) to answer.
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60.0)


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """One request; an error answer or an unreachable hub ends the command with exit 1."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        fail(f"no hub at {client.base_url}")
    except httpx.TransportError as exc:
        fail(f"{client.base_url}: {exc or type(exc).__name__}")
    if not response.is_success:
        refused(response)
    return response.json() if response.content else None


def refused(response: httpx.Response) -> NoReturn:
    """End the command with the refusal's words: an OAuth error, a problem, or the status."""
    try:
        body = response.json()
    except ValueError:
        fail(f"HTTP {response.status_code}: {response.text[:500]}")
    if isinstance(body, dict) and "error" in body:  # OAuth's own error shape
        fail(f"{body['error']}: {body.get('error_description', '')}")
    if isinstance(body, dict) and "title" in body:  # RFC 9457 problem
        lines = [f"{body['title']}: {body.get('detail', '')}"]
        lines += [f"  {e.get('path', '')}: {e.get('message', '')}" for e in body.get("errors", [])]
        fail("\n".join(lines))
    fail(f"HTTP {response.status_code}: {response.text[:500]}")
