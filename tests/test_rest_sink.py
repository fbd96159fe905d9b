"""The REST sink end to end: a hub on a real port in front, a real loopback API behind.

``Api`` is a small aiohttp app playing both the target (any method, any path) and its OAuth2
token endpoint (``POST /token``), recording every request as it arrived on the wire. Events
go in through ``POST /v1/events``; outcomes are read back through the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiohttp import web
from pydantic import ValidationError

from forgeline import Hub
from forgeline.route.subscription import RestSink, SubscriptionSpec
from tests.test_delivery import deadletter, ev, policy, publish, wait_dead

SECRET = "cl1ent-s3cret/+="  # characters RFC 6749 §2.3.1 form-encodes in client_secret_basic


@dataclass(frozen=True)
class Call:
    method: str
    raw_path: str  # as sent: percent-encoding preserved
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


Reply = tuple[int, Any, dict[str, str]]  # status, JSON body (or None), headers


@dataclass
class Api:
    """Target API and token endpoint in one loopback server, answering as scripted."""

    token_script: Callable[[int], Reply] = field(default=lambda n: (200, token(f"T{n}"), {}))
    target_script: Callable[[Call, int], Reply] = field(default=lambda call, n: (201, None, {}))
    tokens: list[Call] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Api:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._target)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _record(self, request: web.Request) -> Call:
        headers = {k.lower(): v for k, v in request.headers.items()}
        return Call(request.method, request.raw_path, headers, await request.read())

    @staticmethod
    def _reply(reply: Reply) -> web.Response:
        status, body, headers = reply
        text = None if body is None else json.dumps(body)
        return web.Response(status=status, text=text, headers=headers)

    async def _token(self, request: web.Request) -> web.Response:
        self.tokens.append(await self._record(request))
        return self._reply(self.token_script(len(self.tokens)))

    async def _target(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        self.calls.append(call)
        return self._reply(self.target_script(call, len(self.calls)))


def token(value: str, expires_in: float = 3600) -> dict[str, Any]:
    return {"access_token": value, "token_type": "Bearer", "expires_in": expires_in}


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Api() as server:
        yield server


def oauth2(api: Api, **extra: Any) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "token_url": api.url("/token"),
        "client_id": "forgeline-wms",
        "client_secret": "env:WMS_CLIENT_SECRET",
        **extra,
    }


async def rest(
    client: httpx.AsyncClient, name: str, sink: dict[str, Any], **pol: Any
) -> dict[str, Any]:
    body = {
        "name": name,
        "types": ["order.*"],
        "sink": {"rest": sink},
        "policy": policy(**pol),
    }
    if _host_references(sink):
        # Secret references and mapping files are read on the hub's host, so the API refuses
        # them: such subscriptions come from the config file. Created the same way here.
        await _HUBS[-1].create_subscription(SubscriptionSpec.model_validate(body))
        response = await client.get(f"/v1/subscriptions/{name}")
        assert response.status_code == 200, response.text
    else:
        response = await client.post("/v1/subscriptions", json=body)
        assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _host_references(value: Any, key: str = "") -> bool:
    if isinstance(value, dict):
        return any(_host_references(item, name) for name, item in value.items())
    return isinstance(value, str) and (value.startswith(("env:", "file:")) or key == "mapping")


_HUBS: list[Hub] = []


@pytest.fixture
async def client(served: tuple[Hub, str]) -> AsyncIterator[httpx.AsyncClient]:
    hub, url = served
    _HUBS.append(hub)
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as c:
            yield c
    finally:
        _HUBS.remove(hub)


async def test_the_api_refuses_what_would_read_the_hubs_host(
    client: httpx.AsyncClient, api: Api, tmp_path: Path
) -> None:
    # Over HTTP, a reference would let a caller send any file or variable of the host to a
    # URL of its choosing: such subscriptions belong in the config file.
    for sink in (
        {"url": api.url("/a"), "auth": {"type": "bearer", "token": "file:/etc/passwd"}},
        {"url": api.url("/a"), "auth": oauth2(api)},
        {"url": api.url("/a"), "body": {"mapping": str(tmp_path / "m.json")}},
    ):
        body = {"name": "leak", "types": ["order.*"], "sink": {"rest": sink}}
        response = await client.post("/v1/subscriptions", json=body)
        assert response.status_code == 422, response.text
        assert "are for the config file" in response.json()["detail"]
    assert (await client.get("/v1/subscriptions/leak")).status_code == 404


async def delivered(client: httpx.AsyncClient, ids: range, timeout: float = 5.0) -> None:
    """Until every delivery in ``ids`` is delivered (ids are 1, 2, … in a fresh hub)."""
    deadline = time.monotonic() + timeout
    for delivery in ids:
        while True:  # a 404 until the router has made the delivery
            response = await client.get(f"/v1/deadletters/{delivery}")
            if response.status_code == 200 and response.json()["state"] == "delivered":
                break
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WMS_CLIENT_SECRET", SECRET)


# -- requests built from the event ---------------------------------------------------------------


async def test_templated_url_headers_and_body_reach_the_target(
    client: httpx.AsyncClient, api: Api
) -> None:
    sink = {
        "method": "PUT",
        "url": api.url("/api/v1/putaway-tasks/{data.task}?plant={data.plant}&mo={subject}"),
        "headers": {"X-Plant": "plant-{data.plant}", "X-Tenant": "{tenant}"},
        "body": {
            "template": {
                "task": "{data.task}",
                "qty": "{data.qty}",
                "lot": {"number": "{data.lot}", "label": "lot {data.lot} of {subject}"},
                "lines": "{data.lines}",
                "fixed": True,
            }
        },
    }
    await rest(client, "putaway", sink)
    event = ev(subject="MO/00042", task="T 17/a", plant="P1", qty=12.5, lot="L-9", lines=[1, 2])
    event["tenant"] = "acme"
    await publish(client, event)
    await delivered(client, range(1, 2))

    [call] = api.calls
    assert call.method == "PUT"
    # Values are percent-encoded: a "/" in a value stays inside its path segment.
    assert call.raw_path == "/api/v1/putaway-tasks/T%2017%2Fa?plant=P1&mo=MO%2F00042"
    assert call.headers["x-plant"] == "plant-P1"
    assert call.headers["x-tenant"] == "acme"
    assert call.headers["idempotency-key"] == event["id"]
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    assert call.json() == {
        "task": "T 17/a",
        "qty": 12.5,  # a placeholder alone keeps its JSON type
        "lot": {"number": "L-9", "label": "lot L-9 of MO/00042"},
        "lines": [1, 2],
        "fixed": True,
    }


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("event", "application/cloudevents+json", None),  # None: the whole event
        ("data", "application/json", {"task": "T1"}),
        ("none", None, b""),
    ],
)
async def test_event_data_and_empty_bodies(
    client: httpx.AsyncClient, api: Api, body: str, content_type: str | None, expected: Any
) -> None:
    await rest(client, "bodies", {"url": api.url("/tasks"), "body": body})
    event = ev(task="T1")
    await publish(client, event)
    await delivered(client, range(1, 2))
    [call] = api.calls
    assert call.headers.get("content-type") == content_type
    if expected is None:
        assert call.json() == event
    elif isinstance(expected, bytes):
        assert call.body == expected
    else:
        assert call.json() == expected


async def test_a_delete_sends_no_body_and_may_count_404_as_done(
    client: httpx.AsyncClient, api: Api
) -> None:
    api.target_script = lambda call, n: (404 if n == 1 else 409, {"error": "x"}, {})
    sink = {
        "method": "DELETE",
        "url": api.url("/tasks/{data.task}"),
        "success": ["2xx", 404],
        "idempotency_header": "X-Request-Id",
    }
    await rest(client, "cancel", sink)
    first, second = ev(task="T1"), ev(task="T2")
    await publish(client, first)
    await delivered(client, range(1, 2))
    await publish(client, second)
    [dead] = await wait_dead(client, 1)  # 409 is not in success: the target refused it

    assert [(c.method, c.raw_path, c.body) for c in api.calls] == [
        ("DELETE", "/tasks/T1", b""),
        ("DELETE", "/tasks/T2", b""),
    ]
    assert api.calls[0].headers["x-request-id"] == first["id"]
    assert "idempotency-key" not in api.calls[0].headers
    body = await deadletter(client, dead["id"])
    assert [(a["outcome"], a["status"]) for a in body["history"]] == [("dead", 409)]


async def test_status_classification_and_retry_after_are_the_webhook_sinks(
    client: httpx.AsyncClient, api: Api
) -> None:
    replies = [(503, None, {}), (429, None, {"Retry-After": "1"}), (200, None, {})]
    api.target_script = lambda call, n: replies[n - 1]
    sink = {"url": api.url("/tasks"), "idempotency_header": None}
    await rest(client, "flaky", sink, max_delay=5)  # Retry-After is capped at max_delay
    await publish(client, ev())
    await delivered(client, range(1, 2), timeout=5)
    body = await deadletter(client, 1)
    assert [(a["outcome"], a["status"]) for a in body["history"]] == [
        ("retry", 503),
        ("retry", 429),
        ("delivered", 200),
    ]
    assert api.calls[2].headers.get("idempotency-key") is None
    # Retry-After: 1 is honoured over the policy's 20 ms.
    assert body["history"][2]["started_at"] - body["history"][1]["started_at"] >= 0.95


async def test_a_missing_template_value_dead_letters_naming_the_path(
    client: httpx.AsyncClient, api: Api
) -> None:
    await rest(client, "missing", {"url": api.url("/tasks/{data.task}")})
    await rest(client, "missing-body", {"url": api.url("/t"), "body": {"template": ["{data.x}"]}})
    await publish(client, ev(other=1))
    dead = await wait_dead(client, 2)
    reasons = {}
    for letter in dead:
        body = await deadletter(client, letter["id"])
        assert len(body["history"]) == 1  # permanent: no retry could make it fit
        reasons[body["subscription"]] = body["history"][0]["error"]
    assert "'data.task'" in reasons[(await sub_id(client, "missing"))]
    assert "the url" in reasons[(await sub_id(client, "missing"))]
    assert "'data.x'" in reasons[(await sub_id(client, "missing-body"))]
    assert api.calls == []


async def sub_id(client: httpx.AsyncClient, name: str) -> str:
    sub: str = (await client.get(f"/v1/subscriptions/{name}")).json()["id"]
    return sub


# -- mapping bodies ------------------------------------------------------------------------------

MAPPING = {
    "name": "mes-to-wms",
    "tables": {"status": {"COMPLETE": "ready", "RUNNING": "wait"}},
    "fields": {
        "task": "data.woNumber",
        "state": {"path": "data.status", "lookup": "status"},
        "qty_kg": {"path": "data.qty", "unit": {"from": "g", "to": "kg"}},
        "kind": {"const": "putaway"},
    },
}


@pytest.mark.parametrize("form", ["inline", "file"])
async def test_a_mapping_builds_the_body(
    client: httpx.AsyncClient, api: Api, tmp_path: Path, form: str
) -> None:
    path = tmp_path / "mes-to-wms.json"
    path.write_text(json.dumps(MAPPING))
    mapping: Any = MAPPING if form == "inline" else str(path)
    await rest(client, "mapped", {"url": api.url("/tasks"), "body": {"mapping": mapping}})
    await publish(client, ev(woNumber="WO-7", status="COMPLETE", qty=2500))
    await delivered(client, range(1, 2))
    assert api.calls[0].json() == {
        "task": "WO-7",
        "state": "ready",
        "qty_kg": 2.5,
        "kind": "putaway",
    }

    # An event the mapping does not fit: dead at once, with the mapping's own reason.
    await publish(client, ev(woNumber="WO-8", status="PAUSED", qty=1))
    [dead] = await wait_dead(client, 1)
    [attempt] = (await deadletter(client, dead["id"]))["history"]
    assert "mes-to-wms" in attempt["error"]
    assert "'PAUSED'" in attempt["error"] and "data.status" in attempt["error"]


async def test_a_mapping_that_does_not_compile_is_refused_with_its_path(
    client: httpx.AsyncClient, api: Api
) -> None:
    bad = {"fields": {"state": {"path": "data.status", "lookup": "nope"}}}
    body = {"name": "bad", "types": ["order.*"], "sink": {"rest": {"url": api.url("/t")}}}
    body["sink"]["rest"]["body"] = {"mapping": bad}  # type: ignore[index]
    response = await client.post("/v1/subscriptions", json=body)
    assert response.status_code == 422
    assert "fields.state.lookup" in response.text


# -- credentials ---------------------------------------------------------------------------------


async def test_bearer_basic_and_api_key_auth_resolve_secrets_at_use(
    client: httpx.AsyncClient, api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WMS_TOKEN", "tok-1")
    password = tmp_path / "password"
    password.write_text("pw-1\n")
    auths = {
        "/bearer": {"type": "bearer", "token": "env:WMS_TOKEN"},
        "/basic": {"type": "basic", "username": "ann", "password": f"file:{password}"},
        "/key": {"type": "header", "name": "X-Api-Key", "value": "env:WMS_TOKEN"},
    }
    for index, (path, auth) in enumerate(auths.items()):
        await rest(client, f"auth{index}", {"url": api.url(path), "auth": auth})
    await publish(client, ev())
    await delivered(client, range(1, 4))
    # Rotated without a restart: the next delivery reads the references again.
    monkeypatch.setenv("WMS_TOKEN", "tok-2")
    password.write_text("pw-2\n")
    await publish(client, ev())
    await delivered(client, range(4, 7))

    seen: dict[str, list[dict[str, str]]] = {}
    for call in api.calls:
        seen.setdefault(call.raw_path, []).append(call.headers)
    basic = [base64.b64encode(f"ann:{pw}".encode()).decode() for pw in ("pw-1", "pw-2")]
    assert [h["authorization"] for h in seen["/bearer"]] == ["Bearer tok-1", "Bearer tok-2"]
    assert [h["authorization"] for h in seen["/basic"]] == [f"Basic {b}" for b in basic]
    assert [h["x-api-key"] for h in seen["/key"]] == ["tok-1", "tok-2"]
    assert all("authorization" not in h for h in seen["/key"])


async def test_a_target_echoing_the_credential_does_not_put_it_in_the_dead_letter(
    client: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WMS_TOKEN", "tok-echoed")
    api.target_script = lambda call, n: (400, {"got": call.headers}, {})
    bearer = {"type": "bearer", "token": "env:WMS_TOKEN"}
    basic = {"type": "basic", "username": "ann", "password": "env:WMS_TOKEN"}
    await rest(client, "echo-bearer", {"url": api.url("/a"), "auth": bearer})
    await rest(client, "echo-basic", {"url": api.url("/b"), "auth": basic})
    await publish(client, ev())
    encoded = base64.b64encode(b"ann:tok-echoed").decode()
    for dead in await wait_dead(client, 2):
        body = await deadletter(client, dead["id"])
        assert "***" in body["history"][0]["response"]
        assert "tok-echoed" not in json.dumps(body) and encoded not in json.dumps(body)


async def test_oauth2_token_is_fetched_once_and_shared(client: httpx.AsyncClient, api: Api) -> None:
    auth = oauth2(api, scope="tasks:write", audience="wms")
    await rest(client, "oauth-a", {"url": api.url("/a"), "auth": auth})
    await rest(client, "oauth-b", {"url": api.url("/b"), "auth": auth})
    await publish(client, *[ev(n=i) for i in range(5)])  # 10 concurrent deliveries
    await delivered(client, range(1, 11))

    [fetch] = api.tokens
    assert fetch.method == "POST"
    assert fetch.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fetch.form() == {
        "grant_type": "client_credentials",
        "scope": "tasks:write",
        "audience": "wms",
    }
    # client_secret_basic, each part form-encoded first (RFC 6749 §2.3.1).
    basic = base64.b64decode(fetch.headers["authorization"].removeprefix("Basic ")).decode()
    assert basic == "forgeline-wms:cl1ent-s3cret%2F%2B%3D"
    assert len(api.calls) == 10
    assert {call.headers["authorization"] for call in api.calls} == {"Bearer T1"}


async def test_oauth2_tokens_are_shared_only_by_the_same_credential(
    client: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same token URL and client id, another secret: its own token. A subscription that
    names someone else's client without their secret never gets their cached token."""
    monkeypatch.setenv("GUESSED_SECRET", "not-the-secret")
    await rest(client, "holder", {"url": api.url("/a"), "auth": oauth2(api)})
    await publish(client, ev())
    await delivered(client, range(1, 2))
    guesser = oauth2(api, client_secret="env:GUESSED_SECRET")
    await rest(client, "guesser", {"url": api.url("/b"), "auth": guesser})
    await publish(client, ev())
    await delivered(client, range(2, 4))

    assert len(api.tokens) == 2
    secrets = {
        base64.b64decode(fetch.headers["authorization"].removeprefix("Basic ")).decode()
        for fetch in api.tokens
    }
    assert secrets == {"forgeline-wms:cl1ent-s3cret%2F%2B%3D", "forgeline-wms:not-the-secret"}
    by_path = {call.raw_path: call.headers["authorization"] for call in api.calls}
    assert by_path["/b"] != by_path["/a"]


async def test_oauth2_client_secret_post(client: httpx.AsyncClient, api: Api) -> None:
    auth = oauth2(api, client_auth="client_secret_post")
    await rest(client, "oauth-post", {"url": api.url("/a"), "auth": auth})
    await publish(client, ev())
    await delivered(client, range(1, 2))
    [fetch] = api.tokens
    assert "authorization" not in fetch.headers
    assert fetch.form() == {
        "grant_type": "client_credentials",
        "client_id": "forgeline-wms",
        "client_secret": SECRET,
    }
    assert api.calls[0].headers["authorization"] == "Bearer T1"


async def test_oauth2_token_is_refreshed_shortly_before_it_expires(
    client: httpx.AsyncClient, api: Api
) -> None:
    api.token_script = lambda n: (200, token(f"T{n}", expires_in=1), {})
    await rest(client, "expiring", {"url": api.url("/a"), "auth": oauth2(api)})
    await publish(client, ev(), ev())
    await delivered(client, range(1, 3))
    await asyncio.sleep(1.0)  # the token's 1 s, less the early margin, has passed
    await publish(client, ev())
    await delivered(client, range(3, 4))
    assert len(api.tokens) == 2
    assert [c.headers["authorization"] for c in api.calls] == ["Bearer T1"] * 2 + ["Bearer T2"]


async def test_oauth2_a_401_from_the_target_refreshes_the_token_once(
    client: httpx.AsyncClient, api: Api
) -> None:
    # The target revoked T1 early; T2 works.
    api.target_script = lambda call, n: (
        (401, None, {}) if call.headers["authorization"] == "Bearer T1" else (200, None, {})
    )
    await rest(client, "revoked", {"url": api.url("/a"), "auth": oauth2(api)})
    await publish(client, ev())
    await delivered(client, range(1, 2))
    body = await deadletter(client, 1)
    assert body["attempts"] == 1  # the refresh happened within the one attempt
    assert [c.headers["authorization"] for c in api.calls] == ["Bearer T1", "Bearer T2"]
    assert len(api.tokens) == 2

    # A target that refuses every token: one refresh, then dead (a retry will not help).
    api.target_script = lambda call, n: (401, {"error": "forbidden"}, {})
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    [attempt] = (await deadletter(client, dead["id"]))["history"]
    assert attempt["status"] == 401
    assert len(api.tokens) == 3 and len(api.calls) == 4


async def test_oauth2_token_endpoint_refusing_the_client_dead_letters_with_its_reason(
    client: httpx.AsyncClient, api: Api
) -> None:
    refused = {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}
    api.token_script = lambda n: (401, refused, {})
    await rest(client, "bad-client", {"url": api.url("/a"), "auth": oauth2(api)})
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    body = await deadletter(client, dead["id"])
    [attempt] = body["history"]
    assert attempt["outcome"] == "dead" and attempt["status"] == 401
    assert "OAuth2 token endpoint" in attempt["error"]
    assert "invalid_client: bad secret ***" in attempt["error"]
    assert SECRET not in json.dumps(body)  # an echoing endpoint cannot leak it
    assert api.calls == []


async def test_oauth2_token_endpoint_unavailable_is_retried(
    client: httpx.AsyncClient, api: Api
) -> None:
    api.token_script = lambda n: (503, None, {}) if n < 3 else (200, token("T3"), {})
    await rest(client, "token-down", {"url": api.url("/a"), "auth": oauth2(api)})
    await publish(client, ev())
    await delivered(client, range(1, 2))
    body = await deadletter(client, 1)
    assert [(a["outcome"], a["status"]) for a in body["history"]] == [
        ("retry", 503),
        ("retry", 503),
        ("delivered", 201),
    ]
    assert "OAuth2 token endpoint" in body["history"][0]["error"]
    assert [c.headers["authorization"] for c in api.calls] == ["Bearer T3"]


async def test_an_unreadable_client_secret_is_retried_not_leaked(
    client: httpx.AsyncClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WMS_CLIENT_SECRET")
    # A budget that outlasts the test's fix: a person sets the variable, the delivery goes.
    sink = {"url": api.url("/a"), "auth": oauth2(api)}
    await rest(client, "no-secret", sink, max_attempts=1000, initial_delay=0.05)
    await publish(client, ev())
    deadline = time.monotonic() + 5
    while True:  # a 404 until the router has made the delivery, then its attempts
        response = await client.get("/v1/deadletters/1")
        if response.status_code == 200 and len((body := response.json())["history"]) >= 2:
            break
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.02)
    assert body["history"][0]["outcome"] == "retry"
    assert "WMS_CLIENT_SECRET" in body["history"][0]["error"]
    monkeypatch.setenv("WMS_CLIENT_SECRET", SECRET)
    await delivered(client, range(1, 2))
    assert api.tokens and api.calls


# -- what the API shows --------------------------------------------------------------------------


async def test_no_secret_is_shown_by_the_api(
    client: httpx.AsyncClient, api: Api, tmp_path: Path
) -> None:
    secrets = ["tok-inline-1", "pw-inline-2", "key-inline-3", "env:WMS_CLIENT_SECRET"]
    auths = [
        {"type": "bearer", "token": secrets[0]},
        {"type": "basic", "username": "ann", "password": secrets[1]},
        {"type": "header", "name": "X-Api-Key", "value": secrets[2]},
        oauth2(api, scope="tasks:write"),
    ]
    shown = []
    for index, auth in enumerate(auths):
        created = await rest(client, f"shown{index}", {"url": api.url("/a"), "auth": auth})
        shown.append(json.dumps(created))
        shown.append((await client.get(f"/v1/subscriptions/shown{index}")).text)
    shown.append((await client.get("/v1/subscriptions")).text)
    for text in shown:
        for secret in [*secrets, "WMS_CLIENT_SECRET", SECRET]:
            assert secret not in text
    oauth_view = (await client.get("/v1/subscriptions/shown3")).json()["sink"]["rest"]["auth"]
    assert oauth_view == {
        "type": "oauth2",
        "token_url": api.url("/token"),
        "client_id": "forgeline-wms",
        "scope": "tasks:write",
        "client_auth": "client_secret_basic",
        "configured": True,
    }


# -- what a spec may say -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rest_spec", "message"),
    [
        ({"url": "https://{data.host}/x"}, "host is fixed"),
        ({"url": "ftp://wms.local/x"}, "http"),
        ({"url": "https://ann:pw@wms.local/x"}, "no user or password"),
        ({"url": "https://wms.local/{data}"}, "unknown placeholder"),
        ({"url": "https://wms.local/größe"}, "non-ASCII"),
        ({"url": "https://wms.local/{nope.x}"}, "unknown placeholder"),
        ({"url": "https://wms.local/x", "headers": {"Authorization": "x"}}, "use auth"),
        ({"url": "https://wms.local/x", "headers": {"Idempotency-Key": "{id}"}}, "event id"),
        ({"url": "https://wms.local/x", "headers": {"X-A": "{data.a"}}, "unbalanced"),
        ({"url": "https://wms.local/x", "success": ["7xx"]}, "not a status"),
        ({"url": "https://wms.local/x", "body": "evnt"}, "'event', 'data' or 'none'"),
        ({"url": "https://wms.local/x", "body": {"template": {"a": "{bad name}"}}}, "unknown"),
        (
            {"url": "https://wms.local/x", "auth": {"type": "oauth2", "token_url": "x"}},
            "token_url",
        ),
    ],
)
def test_a_spec_that_could_never_work_is_refused(rest_spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RestSink.model_validate({"rest": rest_spec})
    assert message in str(caught.value)
