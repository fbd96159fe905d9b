"""The OWASP API Security Top 10 (2023), item by item, against a real hub over HTTP.

Each section answers one item for Forgeline: API1 object-level authorization (BOLA), API2
authentication, API3 object-property-level authorization, API4 resource consumption, API5
function-level authorization (BFLA), API8 security misconfiguration, API10 unsafe consumption
of the APIs Forgeline reads (Odoo). Callers are real principals with real API keys and access
tokens, made through the admin API by the operator, as a deployment makes them.

Every answer a test here receives is watched (``Watch``): when the test ends, none may hold a
stored hash, a sealed key, a webhook secret, a private key part, the operator's key, or an API
key, client secret, access token or sink secret outside the one answer that handed it out;
and every one carries the security headers (API3 and API8 over the whole suite, not only over
the answers a test thought of).

Not here: API6 (business flows: the idempotency and credit rules have their own tests),
API7 (SSRF: the egress policy of outbound webhooks and sinks), API9 (inventory: one OpenAPI
document, checked by tests/test_schemathesis.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

try:
    from fastapi.routing import iter_route_contexts
except ImportError:  # FastAPI before its lazily included routers: app.routes is flat
    iter_route_contexts = None  # type: ignore[assignment]

from forgeline import Event, Hub, Settings, testing
from forgeline.api import app as app_module
from forgeline.connectors.odoo import (
    OdooClient,
    OdooError,
    OdooProtocolError,
    OdooRetry,
    OdooServerError,
    OdooTimeout,
)
from forgeline.exceptions import BackendError
from forgeline.security.authority import Authority
from forgeline.systems import OdooSystem
from forgeline.testing import Receiver, Reply

# -- the hub under test ----------------------------------------------------------------------


def _keep_app(monkeypatch: pytest.MonkeyPatch, apps: list[FastAPI]) -> None:
    """``running_hub`` as it is, keeping the app it serves: the role x route matrix walks
    its routes."""
    create_app = app_module.create_app

    def kept(*args: Any, **kwargs: Any) -> FastAPI:
        app = create_app(*args, **kwargs)
        apps.append(app)
        return app

    monkeypatch.setattr(app_module, "create_app", kept)


class Clock:
    """The authority's clock: real time plus what a test skips forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Answer:
    method: str
    path: str
    status: int
    headers: httpx.Headers
    text: str


SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy")
#: Members that hold stored secrets (a JWK's ``d`` is its private part): in no answer.
_SECRET_FIELDS = re.compile(r'"(secret_hash|sealed[a-z_]*|private_jwk|d)"\s*:')
_PRIVATE_MARKERS = ("whsk_",)  # a v1a endpoint's private key never leaves the hub
#: Webhook signing secrets: shown once, by the answer that makes (or rotates) them.
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
_MINTING = re.compile(r"/v1/principals/[^/]+/(keys|secrets)(/[^/]+/rotate)?")
_MINTING_WEBHOOK = re.compile(r"/v1/webhooks/endpoints(/[^/]+/secret/rotate)?")


@dataclass
class Watch:
    """Every answer of one test, checked when it ends (see the module docstring)."""

    answers: list[Answer] = field(default_factory=list)
    #: Secrets the test put in a request (a sink's bearer token): never to come back.
    sent: set[str] = field(default_factory=set)

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        self.answers.append(
            Answer(request.method, request.url.path, response.status_code, response.headers,
                   response.text)
        )  # fmt: skip

    def check(self, hub: Hub) -> None:
        assert self.answers, "the test made no request through a watched client"
        handed_out = self._handed_out()
        forbidden = {hub.admin_key, *self.sent, *_stored_secrets(hub)}
        for answer in self.answers:
            where = f"{answer.method} {answer.path} -> {answer.status}"
            for header in SECURITY_HEADERS:
                assert header in answer.headers, f"{where}: no {header}"
            assert "cache-control" in answer.headers, where
            assert not _SECRET_FIELDS.search(answer.text), f"{where} has a secret's field"
            for marker in (*_PRIVATE_MARKERS, *forbidden):
                assert marker not in answer.text, f"{where} shows {marker[:12]}…"
        for answer in self.answers:  # a webhook secret anywhere else was never handed out
            for secret in _WEBHOOK_SECRET.findall(answer.text):
                assert secret in handed_out, f"{answer.method} {answer.path} shows {secret[:12]}…"
        for secret, minted_by in handed_out.items():
            seen = [a for a in self.answers if secret in a.text]
            assert seen == [minted_by], f"{secret[:12]}… was shown again: {seen[1:]}"

    def _handed_out(self) -> dict[str, Answer]:
        """Each key, client secret and token, with the one answer allowed to show it."""
        found: dict[str, Answer] = {}
        for answer in self.answers:
            minted = answer.method == "POST" and answer.status in (200, 201)
            if minted and _MINTING.fullmatch(answer.path):
                body = orjson.loads(answer.text)
                found[body.get("key") or body["secret"]] = answer
            elif minted and _MINTING_WEBHOOK.fullmatch(answer.path):
                found.update(dict.fromkeys(_WEBHOOK_SECRET.findall(answer.text), answer))
            elif minted and answer.path == "/oauth/token":
                found[orjson.loads(answer.text)["access_token"]] = answer
        return found


def authority(hub: Hub) -> Authority:
    """The hub's ``Authority`` (its tokens, keys and clock), made when the hub started."""
    assert hub.authority is not None
    return hub.authority


def _stored_secrets(hub: Hub) -> list[str]:
    """The credential hashes (and their hex) and the sealed signing keys as stored, and the
    private part of each signing key."""
    with sqlite3.connect(hub.settings.data_dir / "state.db") as db:
        hashes = [row[0] for row in db.execute("SELECT secret_hash FROM credentials")]
        sealed = [row[0] for row in db.execute("SELECT sealed_private FROM signing_keys")]
    hexes = [value.partition(":")[2] for value in hashes]
    private = [key.private_jwk.as_dict(private=True)["d"] for key in authority(hub).ring.keys]
    return [*hashes, *hexes, *sealed, *private]


@dataclass
class Served:
    hub: Hub
    url: str
    app: FastAPI
    clock: Clock
    watch: Watch

    def client(self, credential: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        hooks: dict[str, list[Callable[[httpx.Response], Awaitable[None]]]] = {
            "response": [self.watch.record]
        }
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, event_hooks=hooks)

    def operator(self) -> httpx.AsyncClient:
        return self.client(self.hub.admin_key)


@asynccontextmanager
async def serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[Served]:
    apps: list[FastAPI] = []
    _keep_app(monkeypatch, apps)
    # The tests' sinks are loopback receivers, which a tenant's sinks may not reach by default.
    overrides.setdefault("egress_allow", ("127.0.0.0/8",))
    settings = Settings.load(env={}, data_dir=tmp_path / "hub", **overrides)
    async with testing.running_hub(settings) as (hub, url):
        clock = Clock()
        authority(hub).clock = clock
        served = Served(hub, url, apps[-1], clock, Watch())
        yield served
        served.watch.check(hub)


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    async with serve(tmp_path, monkeypatch) as hub:
        yield hub


# -- principals --------------------------------------------------------------------------------

#: What a tenant's administrator (a service account) holds: every scope of the vocabulary.
TENANT_ADMIN = [
    "events:publish", "events:read", "catalog:read", "subscriptions:read",
    "subscriptions:write", "deadletters:read", "deadletters:write", "principals:admin",
    "audit:read", "inventory:read", "purchase-requests:write", "customers:read",
    "transactions:write", "transactions:read",
]  # fmt: skip


@dataclass(frozen=True)
class Who:
    id: str
    key: str  # an API key
    key_id: str
    tenant: str


async def enrol(
    op: httpx.AsyncClient, tenant: str, kind: str, scopes: list[str], name: str | None = None
) -> Who:
    body = {"kind": kind, "name": name or f"{kind}-{tenant}", "scopes": scopes, "tenant": tenant}
    made = await op.post("/v1/principals", json=body)
    assert made.status_code == 201, made.text
    principal = made.json()["id"]
    key = await op.post(f"/v1/principals/{principal}/keys", json={})
    assert key.status_code == 201, key.text
    return Who(principal, key.json()["key"], key.json()["id"], tenant)


async def admins(served: Served) -> tuple[Who, Who]:
    async with served.operator() as op:
        return (
            await enrol(op, "acme", "service", TENANT_ADMIN, "acme-admin"),
            await enrol(op, "globex", "service", TENANT_ADMIN, "globex-admin"),
        )


def _event(id: str, type: str = "production.completed.v1", **extensions: str) -> dict[str, Any]:
    event = Event.new(type, "plant/line-1", {"qty": 1}, subject=f"MO/{id}", **extensions)
    return event.to_dict() | {"id": id}


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
        return result


# == API1: broken object level authorization ==================================================


async def test_api1_events_of_another_tenant_are_missing(served: Served) -> None:
    acme, globex = await admins(served)
    async with served.client(acme.key) as a, served.client(globex.key) as g:
        assert (await a.post("/v1/events", json=_event("evt-a1"))).status_code == 201
        assert (await a.get("/v1/events/evt-a1")).status_code == 200
        for path in ("/v1/events/evt-a1", "/v1/events/evt-a1?source=plant/line-1"):
            assert (await g.get(path)).status_code == 404
        for query in ("", "?subject=MO/evt-a1", "?type=production.*&limit=1000"):
            assert (await g.get(f"/v1/events{query}")).json()["events"] == []
        # Publishing into acme's tenant from globex is refused, and stores nothing.
        assert (await g.post("/v1/events", json=_event("evt-g1", tenant="acme"))).status_code == 403
        assert (await a.get("/v1/events/evt-g1")).status_code == 404


async def test_api1_subscriptions_and_dead_letters_of_another_tenant_are_missing(
    served: Served,
) -> None:
    acme, globex = await admins(served)
    async with (
        Receiver(lambda path, event, seen: Reply(status=400)) as refusing,
        served.client(acme.key) as a,
        served.client(globex.key) as g,
    ):
        spec = {
            "name": "acme-erp", "types": ["production.*"], "sink": {"url": refusing.url("/x")},
            "policy": {"retry": {"max_attempts": 1}},
        }  # fmt: skip
        sub = (await a.post("/v1/subscriptions", json=spec)).json()["id"]
        await a.post("/v1/events", json=_event("evt-dead"))
        dead = await eventually(lambda: _dead_letters(a))
        letter = dead[0]["id"]
        for request in (
            g.get(f"/v1/subscriptions/{sub}"),
            g.get("/v1/subscriptions/acme-erp"),  # by name, too
            g.put(f"/v1/subscriptions/{sub}", json=spec),
            g.delete(f"/v1/subscriptions/{sub}"),
            g.post(f"/v1/subscriptions/{sub}/replay", json={}),
            g.get(f"/v1/deadletters/{letter}"),
            g.post(f"/v1/deadletters/{letter}/replay"),
            g.post(f"/v1/deadletters/{letter}/discard", json={"reason": "not mine"}),
            g.get(f"/v1/deadletters?subscription={sub}"),
        ):
            assert (await request).status_code == 404
        assert (await g.get("/v1/subscriptions")).json()["subscriptions"] == []
        assert (await g.get("/v1/deadletters")).json()["deadletters"] == []
        # Filters by id reach only the caller's own dead letters.
        replayed = await g.post("/v1/deadletters/replay", json={"ids": [letter]})
        assert replayed.json() == {"replayed": 0}
        discarded = await g.post("/v1/deadletters/discard", json={"ids": [letter], "reason": "x"})
        assert discarded.json() == {"discarded": 0}
        # Nothing changed for acme.
        assert (await a.get(f"/v1/deadletters/{letter}")).json()["state"] == "dead"
        assert (await a.get(f"/v1/subscriptions/{sub}")).json()["sink"]["url"] == spec["sink"][
            "url"
        ]


async def _dead_letters(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = (await client.get("/v1/deadletters")).json()["deadletters"]
    return letters


async def test_api1_principals_keys_and_secrets_of_another_tenant_are_missing(
    served: Served,
) -> None:
    acme, globex = await admins(served)
    async with served.operator() as op:
        secret = (await op.post(f"/v1/principals/{acme.id}/secrets", json={})).json()["id"]
    async with served.client(globex.key) as g:
        mine = f"/v1/principals/{globex.id}"
        theirs = f"/v1/principals/{acme.id}"
        for request in (
            g.get(theirs),
            g.patch(theirs, json={"disabled": True}),
            g.get(f"{theirs}/keys"),
            g.post(f"{theirs}/keys", json={}),
            g.post(f"{theirs}/keys/{acme.key_id}/revoke"),
            g.post(f"{theirs}/keys/{acme.key_id}/rotate", json={}),
            g.get(f"{theirs}/secrets"),
            g.post(f"{theirs}/secrets", json={}),
            g.post(f"{theirs}/secrets/{secret}/revoke"),
            # Another tenant's key id under one's own principal: still not one's own.
            g.post(f"{mine}/keys/{acme.key_id}/revoke"),
            g.post(f"{mine}/keys/{acme.key_id}/rotate", json={}),
            g.post(f"{mine}/secrets/{secret}/revoke"),
        ):
            answer = await request
            assert answer.status_code == 404, (answer.request.url, answer.text)
        listed = (await g.get("/v1/principals")).json()["principals"]
        assert {p["tenant"] for p in listed} == {"globex"}
        assert (await g.get("/v1/principals?tenant=acme")).status_code in (403, 404)
    async with served.client(acme.key) as a:  # acme's key still works, its principal intact
        me = (await a.get(f"/v1/principals/{acme.id}")).json()
        assert me["disabled"] is False
        keys = (await a.get(f"/v1/principals/{acme.id}/keys")).json()["keys"]
        assert [k["state"] for k in keys] == ["active"]


#: A production confirmation as a plant application posts it.
TRANSACTION = {
    "type": "production.completed.v1",
    "subject": "WH/MO/00042",
    "data": {"production_order": "WH/MO/00042", "product": "FG-1000", "quantity_good": 118.0,
             "uom": "EA", "completed_at": "2026-11-27T13:48:00Z"},
}  # fmt: skip


async def test_api1_transactions_of_another_tenant_are_missing(served: Served) -> None:
    acme, globex = await admins(served)
    body = TRANSACTION
    async with (
        Receiver() as erp,
        served.client(acme.key) as a,
        served.client(globex.key) as g,
    ):
        spec = {"name": "apply", "types": ["production.*"], "sink": {"url": erp.url("/mo")}}
        assert (await a.post("/v1/subscriptions", json=spec)).status_code == 201
        posted = await a.post("/v1/transactions", json=body, headers={"Idempotency-Key": "t-1"})
        assert posted.status_code == 202, posted.text
        status_url = posted.headers["Location"]
        assert (await a.get(status_url)).status_code == 200
        assert (await g.get(status_url)).status_code == 404
        # The same Idempotency-Key from globex replays nothing of acme's.
        again = await g.post("/v1/transactions", json=body, headers={"Idempotency-Key": "t-1"})
        assert again.status_code in (202, 422)
        assert "Idempotent-Replayed" not in again.headers


async def test_api1_audit_entries_of_another_tenant_are_never_listed(served: Served) -> None:
    acme, globex = await admins(served)
    async with served.client(acme.key) as a, served.client(globex.key) as g:
        # Each admin leaves entries in its own tenant's log.
        await a.patch(f"/v1/principals/{acme.id}", json={"scopes": TENANT_ADMIN})
        await g.patch(f"/v1/principals/{globex.id}", json={"scopes": TENANT_ADMIN})
        theirs = (await a.get("/v1/audit")).json()["entries"]
        ours = (await g.get("/v1/audit")).json()["entries"]
        assert theirs and ours
        assert {e["tenant"] for e in theirs} == {"acme"}
        assert {e["tenant"] for e in ours} == {"globex"}
        assert (await g.get("/v1/audit?tenant=acme")).status_code in (403, 404)


# == API2: broken authentication ==============================================================


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS made by hand: nothing of the hub's token code is trusted to build it."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


async def access_token(served: Served, who: Who) -> str:
    async with served.operator() as op:
        secret = (await op.post(f"/v1/principals/{who.id}/secrets", json={})).json()["secret"]
    async with served.client() as anonymous:
        form = {"grant_type": "client_credentials", "client_id": who.id, "client_secret": secret}
        answer = await anonymous.post("/oauth/token", data=form)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def status_with(served: Served, credential: str, path: str = "/v1/events") -> int:
    async with served.client(credential) as client:
        return (await client.get(path)).status_code


async def test_api2_alg_none_and_hs256_keyed_with_the_public_key_are_refused(
    served: Served,
) -> None:
    acme, _ = await admins(served)
    token = await access_token(served, acme)
    assert await status_with(served, token) == 200
    header = json.loads(unb64url(token.split(".")[0]))
    claims = json.loads(unb64url(token.split(".")[1]))
    _, payload, signature = token.split(".")
    for alg in ("none", "None", "NONE", "nOnE"):
        unsigned = jwt({**header, "alg": alg}, claims, lambda data: b"")
        assert await status_with(served, unsigned) == 401
        # ...and with the genuine token's signature left on, for a verifier that skips it.
        relabelled = b64url(json.dumps({**header, "alg": alg}).encode())
        assert await status_with(served, f"{relabelled}.{payload}.{signature}") == 401
    async with served.client() as anonymous:
        jwks = (await anonymous.get("/.well-known/jwks.json")).json()["keys"]
    assert jwks and all("d" not in key for key in jwks)
    for jwk in jwks:
        raw = unb64url(jwk["x"])
        public = serialization.load_der_public_key(
            bytes.fromhex("302a300506032b6570032100") + raw  # Ed25519 SubjectPublicKeyInfo
        )
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for secret in (raw, jwk["x"].encode(), json.dumps(jwk).encode(), pem):
            for alg in ("HS256", "HS384", "HS512"):
                forged = jwt({**header, "alg": alg, "kid": jwk["kid"]}, claims, hs256(secret))
                assert await status_with(served, forged) == 401


async def test_api2_tokens_breaking_one_rule_each_are_refused(served: Served) -> None:
    acme, _ = await admins(served)
    token = await access_token(served, acme)
    header = json.loads(unb64url(token.split(".")[0]))
    claims = json.loads(unb64url(token.split(".")[1]))
    hub_key: Ed25519PrivateKey = authority(served.hub).ring.signing_key().private_jwk.private_key
    now = int(time.time())

    def signed(**changes: Any) -> str:
        return jwt(header, {**claims, "jti": f"j{time.monotonic_ns()}", **changes}, hub_key.sign)

    # The control: a token crafted here with the hub's own key and good claims is taken, so
    # every refusal below is for the one rule its token breaks.
    assert await status_with(served, signed()) == 200
    for broken in (
        signed(exp=now - 3600, iat=now - 7200, nbf=now - 7200),  # expired
        signed(nbf=now + 3600, iat=now),  # not yet valid
        signed(iat=now + 3600, nbf=now),  # issued in the future
        signed(aud="prod"),  # another environment's token
        signed(iss="https://issuer.evil.example"),
        signed(exp="later"),
        signed(tenant="globex"),  # claims another tenant than its principal's
        signed(kind="partner"),
        jwt({**header, "typ": "JWT"}, claims, hub_key.sign),  # not an access token
        jwt({**header, "jku": "http://127.0.0.1:1/jwks.json"}, claims, hub_key.sign),
    ):
        assert await status_with(served, broken) == 401
    stranger = Ed25519PrivateKey.generate()
    assert await status_with(served, jwt(header, claims, stranger.sign)) == 401  # its kid
    unknown_kid = {**header, "kid": b64url(hashlib.sha256(b"stranger").digest())}
    assert await status_with(served, jwt(unknown_kid, claims, stranger.sign)) == 401
    # Tampered payloads under the hub's genuine signature.
    head, _, signature = token.split(".")
    for change in ({"scope": claims["scope"] + " *"}, {"sub": "pr_other"}, {"exp": now + 10**6}):
        payload = b64url(json.dumps({**claims, **change}).encode())
        assert await status_with(served, f"{head}.{payload}.{signature}") == 401
    # And the genuine token itself, once its five minutes are over.
    served.clock.offset = 300 + 31
    assert await status_with(served, token) == 401


async def test_api2_revoked_expired_and_foreign_api_keys_are_refused(served: Served) -> None:
    acme, _ = await admins(served)
    async with served.operator() as op:
        line = await enrol(op, "acme", "plant", ["catalog:read"])
        short = (await op.post(f"/v1/principals/{line.id}/keys", json={"expires_in": 60})).json()
        assert await status_with(served, line.key, "/v1/catalog") == 200
        revoked = await op.post(f"/v1/principals/{line.id}/keys/{line.key_id}/revoke")
        assert revoked.status_code == 200
        assert await status_with(served, line.key, "/v1/catalog") == 401
        assert await status_with(served, short["key"], "/v1/catalog") == 200
        served.clock.offset = 61
        assert await status_with(served, short["key"], "/v1/catalog") == 401
        served.clock.offset = 0
        # A disabled principal's keys stop at once.
        assert await status_with(served, acme.key) == 200
        await op.patch(f"/v1/principals/{acme.id}", json={"disabled": True})
        assert await status_with(served, acme.key) == 401
        fresh = await enrol(op, "acme", "plant", ["catalog:read"], "line-2")
    assert await status_with(served, fresh.key, "/v1/catalog") == 200
    # Well-formed keys the hub never minted, or minted for another environment.
    prefix, _, rest = fresh.key.partition("_")
    environment, _, tail = rest.partition("_")
    for forged in (
        f"{prefix}_prod_{tail}",
        f"{prefix}_{environment}_{tail[:-4]}aaaa",
        "flk_dev_aaaaaaaaaaaa_" + "a" * 52,
        served.hub.admin_key + "x",
        "x" * 10_000,
    ):
        assert await status_with(served, forged, "/v1/catalog") == 401


async def test_api2_credentials_in_the_query_string_are_refused(served: Served) -> None:
    acme, _ = await admins(served)
    token = await access_token(served, acme)
    async with served.client(acme.key) as a, served.client() as anonymous:
        assert (await a.get("/v1/events")).status_code == 200
        for name in ("access_token", "api_key", "apikey", "token", "key", "Access_Token"):
            for credential in (acme.key, token):
                refused = await a.get("/v1/events", params={name: credential})
                assert refused.status_code == 401, name
                assert refused.headers["content-type"] == "application/problem+json"
                assert (
                    await anonymous.get("/v1/events", params={name: credential})
                ).status_code == 401


async def test_api2_guessing_credentials_is_paced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(tmp_path, monkeypatch, rate_limit=0.2, rate_burst=5) as served:
        acme, _ = await admins(served)
        async with served.client() as guesser:
            statuses = []
            for attempt in range(12):
                bad = {"Authorization": f"Bearer flk_dev_{attempt:012d}_{'a' * 52}"}
                statuses.append(await guesser.get("/v1/events", headers=bad))
        codes = [answer.status_code for answer in statuses]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        assert int(statuses[-1].headers["Retry-After"]) >= 1
        # The token endpoint paces wrong client secrets per address too.
        async with served.client() as guesser:
            codes = []
            for attempt in range(15):
                form = {"grant_type": "client_credentials", "client_id": acme.id,
                        "client_secret": f"flcs_{attempt:052d}"}  # fmt: skip
                codes.append((await guesser.post("/oauth/token", data=form)).status_code)
        assert 429 in codes, codes
        # A principal's own budget is not the guesser's: the real key still works.
        assert await status_with(served, acme.key) == 200


# == API3: broken object property level authorization ======================================


async def test_api3_admin_payloads_refuse_properties_the_caller_may_not_set(
    served: Served,
) -> None:
    acme, _ = await admins(served)
    async with served.client(acme.key) as a:
        made = await a.post("/v1/principals", json={"kind": "partner", "name": "dhl", "scopes": []})
        partner = made.json()
        before = (await a.get("/v1/principals")).json()["principals"]
        base = {"kind": "plant", "name": "line-9", "scopes": []}
        for extra in (
            {"tenant": "globex"}, {"id": "pr_chosen"}, {"disabled": True}, {"status": "active"},
            {"created_at": 0}, {"disabled_at": None}, {"secret_hash": "sha256:00"},
        ):  # fmt: skip
            assert (await a.post("/v1/principals", json=base | extra)).status_code == 422, extra
        for change in (
            {"tenant": "globex"}, {"kind": "service"}, {"id": "pr_other"}, {"status": "active"},
            {"environment": "prod"}, {"name": "renamed"}, {"scopes": ["principals:admin"]},
            {"scopes": ["subscriptions:write"]}, {"scopes": "events:read"}, {"disabled": "yes"},
        ):  # fmt: skip
            answer = await a.patch(f"/v1/principals/{partner['id']}", json=change)
            assert answer.status_code == 422, (change, answer.text)
        for body in ({"prefix": "flk_dev_x"}, {"secret_hash": "sha256:00"}, {"expires_at": 0},
                     {"key": "flk_dev_" + "a" * 65}, {"expires_in": -1}):  # fmt: skip
            path = f"/v1/principals/{partner['id']}/keys"
            assert (await a.post(path, json=body)).status_code == 422, body
        # Nothing changed: the same principals, the partner as it was, with no key.
        assert (await a.get("/v1/principals")).json()["principals"] == before
        assert (await a.get(f"/v1/principals/{partner['id']}")).json() == partner
        assert (await a.get(f"/v1/principals/{partner['id']}/keys")).json()["keys"] == []


async def test_api3_a_tenant_admin_grants_only_what_it_holds(served: Served) -> None:
    async with served.operator() as op:
        narrow = await enrol(op, "acme", "user", ["principals:admin", "events:read"])
    async with served.client(narrow.key) as admin:
        for scopes in (["subscriptions:write"], ["audit:read"], ["events:publish"]):
            body = {"kind": "service", "name": f"svc-{scopes[0]}", "scopes": scopes}
            assert (await admin.post("/v1/principals", json=body)).status_code == 403
            raised = await admin.patch(f"/v1/principals/{narrow.id}", json={"scopes": scopes})
            assert raised.status_code == 403
        listed = (await admin.get("/v1/principals")).json()["principals"]
        assert [p["id"] for p in listed] == [narrow.id]
        assert listed[0]["scopes"] == ["events:read", "principals:admin"]


async def test_api3_other_payloads_refuse_the_hubs_own_properties(served: Served) -> None:
    acme, _ = await admins(served)
    async with Receiver() as sink, served.client(acme.key) as a:
        spec = {"name": "s", "types": ["lot.*"], "sink": {"url": sink.url("/s")}}
        for extra in ({"tenant": "globex"}, {"id": "sub-1"}, {"created_at": 0},
                      {"start_position": 0}):  # fmt: skip
            assert (await a.post("/v1/subscriptions", json=spec | extra)).status_code == 422
        assert (await a.get("/v1/subscriptions")).json()["subscriptions"] == []
        spec = {"name": "apply", "types": ["production.*"], "sink": {"url": sink.url("/mo")}}
        assert (await a.post("/v1/subscriptions", json=spec)).status_code == 201
        for extra in ({"tenant": "globex"}, {"source": "api/operator"}, {"id": "t-1"},
                      {"origin": "odoo"}, {"position": 1}):  # fmt: skip
            refused = await a.post("/v1/transactions", json=TRANSACTION | extra)
            assert refused.status_code == 422, extra
        # The hub's own origin extension cannot be published either.
        assert (await a.post("/v1/events", json=_event("e-o", origin="odoo"))).status_code == 400
        assert (await a.get("/v1/events")).json()["events"] == []
        # The control: the same transaction without them is taken.
        assert (await a.post("/v1/transactions", json=TRANSACTION)).status_code == 202
        logged = (await a.get("/v1/events")).json()["events"]
        assert [e["event"]["tenant"] for e in logged] == ["acme"]


async def test_api3_no_answer_shows_a_secret_again(served: Served) -> None:
    """Walks the answers that sit next to secrets; ``Watch`` then checks every one of them
    (and every other answer of the suite) for hashes, sealed keys and repeated secrets."""
    acme, _ = await admins(served)
    token = await access_token(served, acme)
    bearer = "sink-bearer-" + "7" * 24
    served.watch.sent.add(bearer)
    async with Receiver() as sink, served.client(token) as a, served.operator() as op:
        rotated = await a.post(f"/v1/principals/{acme.id}/keys/{acme.key_id}/rotate", json={})
        assert rotated.status_code == 201
        secrets = await a.post(f"/v1/principals/{acme.id}/secrets", json={})
        sink_spec = {"url": sink.url("/s"), "auth": {"type": "bearer", "token": bearer}}
        spec = {"name": "s", "types": ["lot.*"], "sink": sink_spec}
        sub = (await a.post("/v1/subscriptions", json=spec)).json()["id"]
        for path in (
            f"/v1/principals/{acme.id}", f"/v1/principals/{acme.id}/keys",
            f"/v1/principals/{acme.id}/secrets", "/v1/principals", "/v1/audit?limit=1000",
            f"/v1/subscriptions/{sub}", "/v1/subscriptions",
        ):  # fmt: skip
            assert (await a.get(path)).status_code == 200, path
        for path in ("/v1/signing-keys", "/v1/audit?tenant=acme", "/v1/audit?tenant=*",
                     "/.well-known/jwks.json",
                     "/.well-known/oauth-authorization-server"):  # fmt: skip
            assert (await op.get(path)).status_code == 200, path
        listed = (await a.get(f"/v1/principals/{acme.id}/secrets")).json()["secrets"]
        assert secrets.json()["id"] in [s["id"] for s in listed] and len(listed) == 2


# == API4: unrestricted resource consumption ===================================================


async def test_api4_oversized_bodies_are_refused_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(tmp_path, monkeypatch, max_body_bytes=4096, max_batch=5) as served:
        acme, _ = await admins(served)
        big = _event("e-big") | {"data": {"blob": "x" * 5000}}

        async def chunked() -> AsyncIterator[bytes]:
            yield orjson.dumps(big)[:2000]
            yield orjson.dumps(big)[2000:]

        async with served.client(acme.key) as a:
            assert (await a.post("/v1/events", json=big)).status_code == 413
            streamed = await a.post(
                "/v1/events", content=chunked(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413  # no Content-Length: counted while read
            batch = [_event(f"e-{n}") for n in range(6)]
            assert (await a.post("/v1/events", json=batch)).status_code == 413
            huge_principal = {"kind": "plant", "name": "x" * 5000, "scopes": []}
            assert (await a.post("/v1/principals", json=huge_principal)).status_code == 413
            transaction = {"type": "production.completed.v1", "data": {"x": "y" * 5000}}
            assert (await a.post("/v1/transactions", json=transaction)).status_code == 413
            assert (await a.get("/v1/events")).json()["events"] == []
            assert len((await a.get("/v1/principals")).json()["principals"]) == 1
        assert await served.hub.log.head() == 0
        async with served.client() as anonymous:
            form = {"grant_type": "client_credentials", "client_id": "x" * 5000}
            assert (await anonymous.post("/oauth/token", data=form)).status_code == 413


async def test_api4_page_sizes_are_clamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with serve(tmp_path, monkeypatch, max_page=3) as served:
        acme, _ = await admins(served)
        async with served.client(acme.key) as a:
            await a.post("/v1/events", json=[_event(f"e-{n}") for n in range(5)])
            page = (await a.get("/v1/events?limit=1000000")).json()
            assert len(page["events"]) == 3 and page["next_after"] is not None
            rest = (await a.get(f"/v1/events?after={page['next_after']}&limit=1000000")).json()
            assert len(rest["events"]) == 2  # clamped, not refused: every page still reachable
            for path in ("/v1/events?limit=0", "/v1/events?limit=-1", "/v1/events?limit=x"):
                assert (await a.get(path)).status_code in (400, 422)
            for path in ("/v1/deadletters?limit=1000000", "/v1/principals?limit=1000000",
                         "/v1/audit?limit=1000000"):  # fmt: skip
                assert (await a.get(path)).status_code == 200, path


async def test_api4_bursts_are_limited_per_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(tmp_path, monkeypatch, rate_limit=0.5, rate_burst=4) as served:
        async with served.operator() as op:  # the operator has a budget like anyone
            acme = await enrol(op, "acme", "service", ["events:read"])
            globex = await enrol(op, "globex", "service", ["events:read"])
        async with served.client(acme.key) as a, served.client(globex.key) as g:
            answers = await asyncio.gather(*(a.get("/v1/events") for _ in range(8)))
            codes = sorted(answer.status_code for answer in answers)
            assert codes == [200] * 4 + [429] * 4, codes
            refused = next(answer for answer in answers if answer.status_code == 429)
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.headers["content-type"] == "application/problem+json"
            assert "RateLimit" in refused.headers and "RateLimit-Policy" in refused.headers
            assert (await g.get("/v1/events")).status_code == 200  # its own budget


# == API5: broken function level authorization ===============================================

OPEN = "open"  # anyone, without credentials
HOOK = "hook"  # authenticated by its own secret (a URL token or a signature): 404 without
OPERATOR_ONLY = "operator"  # the hub operator's bootstrap key only

#: Every route of the app and what it needs. A route missing here fails the matrix test: a
#: new route must say who may call it.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/asyncapi.json"): OPEN,
    ("GET", "/.well-known/jwks.json"): OPEN,
    ("GET", "/.well-known/oauth-authorization-server"): OPEN,
    ("POST", "/oauth/token"): OPEN,
    ("POST", "/hooks/odoo/{system}/{token}"): HOOK,
    ("POST", "/hooks/{system}"): HOOK,
    ("POST", "/hooks/{system}/{token}"): HOOK,
    ("POST", "/v1/events"): "events:publish",
    ("GET", "/v1/events"): "events:read",
    ("GET", "/v1/events/{event_id}"): "events:read",
    ("GET", "/v1/catalog"): "catalog:read",
    ("GET", "/v1/catalog/{event_type}"): "catalog:read",
    ("GET", "/v1/subscriptions"): "subscriptions:read",
    ("GET", "/v1/subscriptions/{id}"): "subscriptions:read",
    ("POST", "/v1/subscriptions"): "subscriptions:write",
    ("PUT", "/v1/subscriptions/{id}"): "subscriptions:write",
    ("DELETE", "/v1/subscriptions/{id}"): "subscriptions:write",
    ("POST", "/v1/subscriptions/{id}/replay"): "subscriptions:write",
    ("GET", "/v1/deadletters"): "deadletters:read",
    ("GET", "/v1/deadletters/{id}"): "deadletters:read",
    ("POST", "/v1/deadletters/{id}/replay"): "deadletters:write",
    ("POST", "/v1/deadletters/{id}/discard"): "deadletters:write",
    ("POST", "/v1/deadletters/replay"): "deadletters:write",
    ("POST", "/v1/deadletters/discard"): "deadletters:write",
    ("GET", "/v1/principals"): "principals:admin",
    ("POST", "/v1/principals"): "principals:admin",
    ("GET", "/v1/principals/{id}"): "principals:admin",
    ("PATCH", "/v1/principals/{id}"): "principals:admin",
    ("GET", "/v1/principals/{id}/keys"): "principals:admin",
    ("POST", "/v1/principals/{id}/keys"): "principals:admin",
    ("POST", "/v1/principals/{id}/keys/{credential_id}/revoke"): "principals:admin",
    ("POST", "/v1/principals/{id}/keys/{credential_id}/rotate"): "principals:admin",
    ("GET", "/v1/principals/{id}/secrets"): "principals:admin",
    ("POST", "/v1/principals/{id}/secrets"): "principals:admin",
    ("POST", "/v1/principals/{id}/secrets/{credential_id}/revoke"): "principals:admin",
    ("POST", "/v1/principals/{id}/secrets/{credential_id}/rotate"): "principals:admin",
    ("GET", "/v1/signing-keys"): OPERATOR_ONLY,
    ("POST", "/v1/signing-keys/rotate"): OPERATOR_ONLY,
    ("GET", "/v1/audit"): "audit:read",
    ("GET", "/v1/inventory/availability"): "inventory:read",
    ("POST", "/v1/purchase-requests"): "purchase-requests:write",
    ("GET", "/v1/customers/{ref}/validation"): "customers:read",
    ("POST", "/v1/transactions"): "transactions:write",
    ("GET", "/v1/transactions/{transaction_id}"): "transactions:read",
}
#: Outbound webhook endpoints (being added): reads need webhooks:read, changes webhooks:write.
_WEBHOOK_ROUTES = "/v1/webhooks/"
#: Written out here rather than imported: the matrix must catch a change to the rule too.
ADMIN = frozenset(
    {"subscriptions:write", "deadletters:write", "webhooks:write", "principals:admin", "audit:read"}
)
#: Typical grants of each kind of principal.
KINDS: dict[str, list[str]] = {
    "user": ["events:read", "subscriptions:read", "subscriptions:write", "deadletters:read",
             "deadletters:write", "audit:read", "catalog:read", "principals:admin"],
    "service": ["events:publish", "events:read", "subscriptions:read", "subscriptions:write",
                "catalog:read", "transactions:write", "transactions:read", "inventory:read"],
    "plant": ["events:publish:production.*", "events:read:lot.*", "inventory:read",
              "transactions:write", "transactions:read", "catalog:read"],
    "partner": ["events:read:shipment.*", "inventory:read", "customers:read",
                "purchase-requests:write"],
}  # fmt: skip


def requirement(method: str, path: str) -> str:
    path = re.sub(r"\{(\w+):path\}", r"{\1}", path)
    if (method, path) in ROUTES:
        return ROUTES[(method, path)]
    if path.startswith(_WEBHOOK_ROUTES):
        return "webhooks:read" if method == "GET" else "webhooks:write"
    raise AssertionError(f"{method} {path} is not in the BFLA matrix: say what it needs")


def may(kind: str, scopes: list[str], needed: str) -> bool:
    """What the hub must decide, worked out here from the documented rules."""
    if needed in (OPEN, HOOK):
        return True
    if needed == OPERATOR_ONLY or (needed in ADMIN and kind not in ("user", "service")):
        return False
    return "*" in scopes or any(s == needed or s.startswith(needed + ":") for s in scopes)


def api_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route the app serves, its included routers' too
    (FastAPI >= 0.16x keeps them behind ``iter_route_contexts``)."""
    routes: Iterable[Any] = app.routes
    if iter_route_contexts is not None:
        routes = iter_route_contexts(app.routes)
    for route in routes:
        methods = getattr(route, "methods", None) or set()
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            yield method, str(route.path)


async def call(client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    concrete = re.sub(r"\{[^}]+\}", "999999", path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, concrete, json=body)


def expected(kind: str | None, scopes: list[str], needed: str) -> set[int] | None:
    """The statuses that say the hub decided right: a set, or None for "anything but 401
    and 403" (the caller got past authorization, to a 404 or a 422 about the dummy input)."""
    if needed == HOOK:
        return {404}
    if kind is None:
        return None if needed == OPEN else {401}
    return None if may(kind, scopes, needed) else {403}


async def test_api5_role_by_route_matrix(served: Served) -> None:
    async with served.operator() as op:
        callers = {kind: await enrol(op, "acme", kind, scopes) for kind, scopes in KINDS.items()}
    routes = sorted(set(api_routes(served.app)))
    assert len(routes) >= len(ROUTES)  # ROUTES' routes are all served
    assert {(m, re.sub(r"\{(\w+):path\}", r"{\1}", p)) for m, p in routes} >= set(ROUTES)
    wrong: list[str] = []
    everyone: list[tuple[str | None, str | None, list[str]]] = [
        (None, None, []),
        *((kind, who.key, KINDS[kind]) for kind, who in callers.items()),
    ]
    for kind, credential, scopes in everyone:
        async with served.client(credential) as client:
            for method, path in routes:
                needed = requirement(method, path)
                answer = await call(client, method, path)
                want = expected(kind, scopes, needed)
                got = answer.status_code
                if (want is None and got in (401, 403)) or (want is not None and got not in want):
                    wrong.append(f"{kind or 'anonymous'} {method} {path}: {got}, want {want}")
    assert not wrong, "\n".join(wrong)


async def test_api5_plant_and_partner_never_reach_admin_routes_even_with_forged_scopes(
    served: Served,
) -> None:
    async with served.operator() as op:
        line = await enrol(op, "acme", "plant", KINDS["plant"])
        dhl = await enrol(op, "acme", "partner", KINDS["partner"])
        for who in (line, dhl):  # refused through the API...
            grant = await op.patch(f"/v1/principals/{who.id}", json={"scopes": sorted(ADMIN)})
            assert grant.status_code == 422
    everything = [*TENANT_ADMIN, "webhooks:read", "webhooks:write", "*"]
    for who in (line, dhl):  # ...so the rows are edited behind the API's back
        await served.hub.security.update_principal(who.id, tenant=None, scopes=everything)
    admin_routes = [
        (method, path)
        for method, path in sorted(set(api_routes(served.app)))
        if requirement(method, path) in ADMIN | {OPERATOR_ONLY}
    ]
    assert len(admin_routes) >= 15
    for who in (line, dhl):
        token = await access_token(served, who)
        for credential in (who.key, token):
            async with served.client(credential) as client:
                assert (await client.get("/v1/catalog")).status_code == 200  # it is a caller
                for method, path in admin_routes:
                    answer = await call(client, method, path)
                    assert answer.status_code == 403, (method, path, answer.text)


# == API8: security misconfiguration ============================================================


async def test_api8_cors_is_closed_by_default(served: Served) -> None:
    acme, _ = await admins(served)
    async with served.client(acme.key) as a:
        evil = {"Origin": "https://evil.example"}
        preflight = await a.options(
            "/v1/events",
            headers=evil | {"Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        read = await a.get("/v1/events", headers=evil)
        assert read.status_code == 200
        for answer in (preflight, read):
            assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


#: What a driver's message or a traceback would put in an answer.
_INTERNALS = ("Traceback", 'File "', "sqlite", "asyncpg", "relation", "no such table",
              "password authentication", "10.0.3.7", "OperationalError")  # fmt: skip


class UndefinedTableError(Exception):
    """Looks like asyncpg's, down to its module."""


UndefinedTableError.__module__ = "asyncpg.exceptions"


async def test_api8_failures_answer_without_internals(served: Served) -> None:
    acme, _ = await admins(served)
    store, log = served.hub.store, served.hub.log

    async def driver_error(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("no such table: subscriptions (db at /var/lib/forgeline)")

    async def pg_error(*args: Any, **kwargs: Any) -> Any:
        raise UndefinedTableError('relation "events" does not exist at 10.0.3.7:5432')

    async def translated(*args: Any, **kwargs: Any) -> Any:
        # How the stores translate a driver's failure: the driver's text rides in the detail.
        raise BackendError("PostgreSQL failed while reading: password authentication failed"
                           " for user forgeline at 10.0.3.7")  # fmt: skip

    async with served.client(acme.key) as a, served.client() as anonymous:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store, "get_subscription", driver_error)
            patch.setattr(log, "find", pg_error)
            patch.setattr(store, "list_subscriptions", translated)
            patch.setattr(log, "head", translated)
            answers = {
                500: [await a.get("/v1/subscriptions/x"), await a.get("/v1/events/e-1")],
                # The readiness probe is open to anyone: its answer no less than the API's.
                503: [await a.get("/v1/subscriptions"), await anonymous.get("/readyz")],
            }
        assert (await a.get("/v1/subscriptions")).status_code == 200  # the hub goes on
    for status, failed in answers.items():
        for answer in failed:
            assert answer.status_code == status, answer.text
            if answer.url.path != "/readyz":
                assert answer.headers["content-type"] == "application/problem+json"
                assert set(answer.json()) <= {"type", "title", "status", "detail", "errors"}
            for internal in _INTERNALS:
                assert internal not in answer.text, (status, internal, answer.text)


async def test_api8_unknown_routes_and_methods_answer_problems(served: Served) -> None:
    async with served.client() as anonymous:
        for method, path, status in (
            ("GET", "/v1/nothing-here", 404),
            ("GET", "/.env", 404),
            ("TRACE", "/v1/events", 405),
            ("DELETE", "/healthz", 405),
        ):
            answer = await anonymous.request(method, path)
            assert answer.status_code == status
            assert answer.headers["content-type"] == "application/problem+json"


# == API10: unsafe consumption of APIs (Odoo) =================================================

#: Quick retries: what is under test is the classification, never a long wait.
FAST = OdooRetry(attempts=2, initial_delay=0.01, max_delay=0.02)
UPSTREAM_MARKER = "ODOO-INTERNAL-7f3a"  # in every bad answer: must never reach an API caller
CAP = 1024 * 1024


@dataclass
class FakeOdoo:
    """An aiohttp server that logs in like Odoo 17 over JSON-RPC, then answers every object
    call as ``mode`` says; ``sent`` counts the body bytes the client accepted."""

    mode: str
    everywhere: bool = False  # misbehave from the first request on, login included
    trap_url: str = ""
    sent: int = 0
    calls: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.everywhere:
            return await getattr(self, self.mode.replace("-", "_"))(request)
        if request.path == "/web/version":
            return web.Response(status=404, text="<html>Not Found</html>")
        payload = orjson.loads(await request.read() or b"{}")
        method = payload.get("params", {}).get("method")
        if request.path == "/web/webclient/version_info":
            return _rpc({"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0]})
        if method == "authenticate":
            return _rpc(2)
        self.calls += 1
        if self.mode == "warehouse-then-garbage":
            model = payload["params"]["args"][3]
            if model == "stock.warehouse":
                return _rpc([{"id": 1, "view_location_id": [5, "WH"]}])
            return _rpc([{"id": 7, "default_code": "SKU", "uom_id": "kg",
                          "qty_available": {"$gt": 0}, "free_qty": "lots"}])  # fmt: skip
        return await getattr(self, self.mode.replace("-", "_"))(request)

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        body = (
            b'{"jsonrpc": "2.0", "id": 1, "result": [{"id": 1, "name": "' + UPSTREAM_MARKER.encode()
        )
        return web.Response(body=body, content_type="application/json")

    async def html_login(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=f"<html><form>login {UPSTREAM_MARKER}</form></html>",
                            content_type="text/html")  # fmt: skip

    async def json_as_text(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": []}),
                            content_type="text/plain")  # fmt: skip

    async def not_an_object(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps([UPSTREAM_MARKER]), content_type="application/json")

    async def redirect_elsewhere(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{self.trap_url}/jsonrpc?{UPSTREAM_MARKER}")

    async def redirect_loopback(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/jsonrpc-moved")

    async def declared_huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10 * 1024**3
        return await self._flood(request, response)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        return await self._flood(request, response)

    async def _flood(
        self, request: web.Request, response: web.StreamResponse
    ) -> web.StreamResponse:
        await response.prepare(request)
        chunk = b"[" * 65536
        try:
            for _ in range(20 * CAP // len(chunk)):  # 20x the client's cap, unless it hangs up
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def hang(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(3600):
            await response.write(b" ")
            await asyncio.sleep(0.1)
        return response


def _rpc(result: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": 1, "result": result})


@asynccontextmanager
async def fake_odoo(
    mode: str, *, everywhere: bool = False
) -> AsyncIterator[tuple[FakeOdoo, str, list[str]]]:
    """(the fake, its URL, the requests a second server - where redirects point - saw)."""
    trapped: list[str] = []

    async def trap(request: web.Request) -> web.Response:
        trapped.append(request.path)
        return _rpc([])

    runners = []
    urls = []
    fake = FakeOdoo(mode, everywhere)
    for handler in (trap, fake.handle):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    fake.trap_url = urls[0]
    try:
        yield fake, urls[1], trapped
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


UNSAFE: dict[str, type[OdooError]] = {
    "truncated": OdooProtocolError,
    "html-login": OdooProtocolError,
    "json-as-text": OdooProtocolError,
    "not-an-object": OdooProtocolError,
    "redirect-elsewhere": OdooServerError,
    "redirect-loopback": OdooServerError,
    "declared-huge": OdooProtocolError,
    "endless": OdooProtocolError,
    "hang": OdooTimeout,
    "drip": OdooTimeout,
}


@pytest.mark.parametrize("mode", sorted(UNSAFE))
async def test_api10_the_odoo_connector_refuses_unsafe_answers(mode: str) -> None:
    async with fake_odoo(mode) as (fake, url, trapped):
        client = OdooClient(url, "demo", login="admin", password="admin", retry=FAST,
                            timeout=1.0, max_response_bytes=CAP)  # fmt: skip
        async with client:
            started = time.monotonic()
            with pytest.raises(OdooError) as caught:
                await client.search_read("product.product", [], ["name"])
            elapsed = time.monotonic() - started
    assert isinstance(caught.value, UNSAFE[mode]), repr(caught.value)
    assert elapsed < 2 * FAST.attempts + 1  # never a hang: the client's timeout holds
    assert trapped == []  # a redirect is never followed
    # Each try stopped reading near the cap (what remains is the sockets' buffers).
    assert fake.sent <= max(1, fake.calls) * (CAP + 8 * 1024 * 1024), fake.sent
    assert len(caught.value.response_excerpt or "") <= 1024


@pytest.mark.parametrize("mode", ["redirect-elsewhere", "html-login", "endless"])
async def test_api10_the_connector_refuses_to_log_in_through_unsafe_answers(mode: str) -> None:
    """The same answers from the first request on (a proxy in front of everything)."""
    async with fake_odoo(mode, everywhere=True) as (fake, url, trapped):
        client = OdooClient(url, "demo", login="admin", password="admin", retry=FAST,
                            timeout=1.0, max_response_bytes=CAP)  # fmt: skip
        with pytest.raises(OdooError):
            await client.open()
    assert trapped == []
    assert fake.sent <= CAP + 8 * 1024 * 1024


@pytest.mark.parametrize(
    "mode", ["truncated", "html-login", "redirect-elsewhere", "endless", "hang",
             "warehouse-then-garbage"],
)  # fmt: skip
async def test_api10_the_availability_api_answers_a_clean_problem(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ODOO_PASSWORD", "admin")
    async with fake_odoo(mode) as (_, url, trapped):
        erp = OdooSystem(url=url, db="demo", login="admin", password="env:FAKE_ODOO_PASSWORD",
                         timeout=1.0)  # fmt: skip
        async with serve(tmp_path, monkeypatch, systems={"erp": erp}) as served:
            acme, _ = await admins(served)
            async with served.client(acme.key) as a:
                started = time.monotonic()
                answer = await a.get("/v1/inventory/availability?sku=SKU&site=WH")
                elapsed = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert elapsed < 5
    assert UPSTREAM_MARKER not in answer.text and "Traceback" not in answer.text
    assert trapped == []
