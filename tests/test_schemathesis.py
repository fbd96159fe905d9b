"""Property-based tests of the whole HTTP API from its own ``/openapi.json`` (schemathesis).

A hub runs in a thread of its own (schemathesis calls the API synchronously, with requests)
and serves its real app over loopback, with a simulated Odoo 19 as the business APIs' ERP.
Every operation of its OpenAPI document is called with generated input, valid and invalid,
and the operator's key: no answer may be a 5xx, and every answer must be what the document
says (status, media type, headers, body). Every operation that takes a bearer credential
must say so in the document, and answer 401 without one or with a bad one. The inbound
``/hooks`` routes authenticate by their own secret: they are left out of the 401 check, not
out of the others.

Generation is deterministic (schemathesis' ``deterministic``: no random seed, no example
database) and bounded per operation, so the suite stays well under a minute.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from forgeline import Hub, Settings
from forgeline.api.app import create_app
from forgeline.sim.odoo.server import OdooServer
from forgeline.systems import OdooSystem

#: Examples per operation: enough to reach each branch of a handler's input checks.
EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Authenticated by their own secret (a URL token or a signature), not by a bearer key.
OWN_SECRET = ("/hooks/",)
#: Open by design: probes, discovery, the token endpoint and the documents themselves.
OPEN = {
    "/healthz", "/readyz", "/metrics", "/asyncapi.json", "/openapi.json", "/oauth/token",
    "/.well-known/jwks.json", "/.well-known/oauth-authorization-server",
}  # fmt: skip


@dataclass(frozen=True)
class Background:
    """A hub served on loopback by a thread with its own event loop."""

    url: str
    admin_key: str


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    import uvicorn

    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        async with OdooServer(version=19) as odoo:  # the business APIs' ERP
            key = odoo.simulator.create_api_key("demo", 2, "forgeline hub")
            erp = OdooSystem(url=odoo.url, db="demo", api_key=key, login="admin")
            hub = Hub(Settings.load(env={}, data_dir=data_dir, systems={"erp": erp}))
            await hub.start()
            try:
                await serve_app(create_app(hub=hub), hub.admin_key)
            finally:
                await hub.stop()

    async def serve_app(app: Any, admin_key: str) -> None:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        server = state["server"] = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        state["url"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        state["admin_key"] = admin_key
        started.set()
        await task
        sock.close()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # handed to the test thread below
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(30)
    if "url" not in state:
        thread.join(5)
        raise RuntimeError("the hub did not start") from state.get("error")
    try:
        yield Background(state["url"], state["admin_key"])
    finally:
        loop.call_soon_threadsafe(setattr, state["server"], "should_exit", True)
        thread.join(30)
        loop.close()


def _document() -> dict[str, Any]:
    """The OpenAPI document of the app, built without starting a hub (nothing is opened or
    written: the data directory below is never created). The test below checks that the
    running hub serves exactly this document."""
    settings = Settings.load(env={}, data_dir=Path(tempfile.gettempdir()) / "forgeline-no-hub")
    document: dict[str, Any] = create_app(hub=Hub(settings)).openapi()
    return document


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        }
    ),
)


def test_the_running_hub_serves_the_document_under_test(background: Background) -> None:
    served = requests.get(f"{background.url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@schema.parametrize()
def test_every_operation_conforms_with_operator_credentials(
    case: Any, background: Background
) -> None:
    case.call_and_validate(
        base_url=background.url,
        headers={"Authorization": f"Bearer {background.admin_key}"},
        checks=CHECKS,
    )


def _guarded() -> list[tuple[str, str]]:
    """(method, path) of every operation a bearer credential must open."""
    return [
        (method, path)
        for path, operations in DOCUMENT["paths"].items()
        if path not in OPEN and not path.startswith(OWN_SECRET)
        for method in operations
    ]


def test_auth_is_enforced_on_every_operation(background: Background) -> None:
    guarded = _guarded()
    assert len(guarded) >= 30
    for method, path in guarded:
        concrete = path.replace("{", "").replace("}", "")
        for headers in ({}, {"Authorization": "Bearer not-a-credential"}):
            answer = requests.request(
                method, f"{background.url}{concrete}", headers=headers, timeout=10
            )
            assert answer.status_code == 401, (method, path, headers, answer.status_code)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_guarded_operation_declares_its_bearer_auth() -> None:
    """What clients and gateways read to know an operation needs a credential."""
    schemes = DOCUMENT.get("components", {}).get("securitySchemes", {})
    bearer = {name for name, scheme in schemes.items() if scheme.get("scheme") == "bearer"}
    assert bearer, "the document declares no bearer security scheme"
    undeclared = [
        f"{method.upper()} {path}"
        for method, path in _guarded()
        if not any(
            set(need) & bearer for need in DOCUMENT["paths"][path][method].get("security", [])
        )
    ]
    assert not undeclared, undeclared
