"""Identity through a running hub: the OAuth2 token endpoint, JWKS and metadata, principals,
API keys and client secrets (create, use, revoke, rotate, expire), tenant isolation, function-
and property-level authorization, and the audit entries the admin actions leave.

Time moves by ``clock`` (the authority's clock), so expiries and overlaps are reached without
sleeping.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from forgeline import Hub, Settings, testing
from forgeline.exceptions import ConfigError
from forgeline.security import apikeys
from forgeline.security.authority import Authority, client_secret_prefix
from forgeline.security.secretbox import MasterKey, SecretBox
from forgeline.security.store import open_security_store

from .services import require

ACME = "acme"
GLOBEX = "globex"


class Clock:
    """Real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def served(settings: Settings, clock: Clock) -> AsyncIterator[tuple[Hub, str]]:
    async with testing.running_hub(settings) as (hub, url):
        assert hub.authority is not None
        hub.authority.clock = clock
        yield hub, url


@pytest.fixture
def url(served: tuple[Hub, str]) -> str:
    return served[1]


# -- helpers ----------------------------------------------------------------------------------


def bearer(url: str, credential: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {credential}"}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)


async def make_principal(
    admin: httpx.AsyncClient,
    name: str,
    *,
    kind: str = "service",
    scopes: list[str] | None = None,
    tenant: str | None = ACME,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "name": name, "scopes": scopes or [], **extra}
    if tenant is not None:
        body["tenant"] = tenant
    response = await admin.post("/v1/principals", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_key(admin: httpx.AsyncClient, principal_id: str, **body: Any) -> dict[str, Any]:
    response = await admin.post(f"/v1/principals/{principal_id}/keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def make_secret(admin: httpx.AsyncClient, principal_id: str) -> str:
    response = await admin.post(f"/v1/principals/{principal_id}/secrets", json={})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


async def request_token(url: str, client_id: str, secret: str, **form: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
        return await anonymous.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(client_id, secret),
        )


async def get_token(url: str, client_id: str, secret: str, **form: str) -> str:
    response = await request_token(url, client_id, secret, **form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def status_of(
    url: str, credential: str, method: str = "GET", path: str = "/v1/events"
) -> int:
    async with bearer(url, credential) as caller:
        return (await caller.request(method, path)).status_code


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def audit_entries(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


# -- the token endpoint -----------------------------------------------------------------------


async def test_client_credentials_with_basic_auth(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "mes", scopes=["events:read", "events:publish"])
    secret = await make_secret(client, app["id"])
    response = await request_token(url, app["id"], secret)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "events:publish events:read"
    assert "refresh_token" not in body
    claims = segment(body["access_token"], 1)
    assert claims["sub"] == app["id"]
    assert claims["aud"] == "dev"
    assert claims["tenant"] == ACME
    assert claims["kind"] == "service"


async def test_client_credentials_in_the_form(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "wms", scopes=["events:read"])
    secret = await make_secret(client, app["id"])
    async with httpx.AsyncClient(base_url=url) as anonymous:
        response = await anonymous.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["id"],
                "client_secret": secret,
            },
        )
    assert response.status_code == 200, response.text
    assert await status_of(url, response.json()["access_token"]) == 200


async def test_a_wrong_secret_is_invalid_client_and_audited(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    other = await make_principal(client, "qms", scopes=["events:read"])
    good = await make_secret(client, app["id"])
    others_secret = await make_secret(client, other["id"])
    wrong = good[:-4] + ("aaaa" if not good.endswith("aaaa") else "bbbb")
    for client_id, secret in (
        (app["id"], wrong),
        (app["id"], others_secret),  # a real secret, of another client
        ("pr_nobody", good),
        (app["id"], "not-a-secret"),
    ):
        response = await request_token(url, client_id, secret)
        assert response.status_code == 401, (client_id, response.text)
        assert response.json()["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert response.headers["cache-control"] == "no-store"
    failed = await audit_entries(client, tenant=ACME, action="auth.failed")
    assert [(e["target"], e["outcome"], e["actor"]) for e in failed] == [
        (app["id"], "denied", "anonymous")
    ] * 3  # the unknown client id is not recorded


async def test_guessing_client_secrets_is_paced(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    await make_secret(client, app["id"])
    statuses = []
    for attempt in range(40):
        guess = "flcs_" + f"{attempt:02d}".translate(str.maketrans("0123456789", "abcdefghij")) * 26
        response = await request_token(url, app["id"], guess)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401}


@pytest.mark.parametrize(
    ("form", "headers", "error", "status"),
    [
        ({"grant_type": "password"}, {}, "unsupported_grant_type", 400),
        ({"grant_type": "refresh_token"}, {}, "unsupported_grant_type", 400),
        ({}, {}, "invalid_request", 400),
        ({"grant_type": "client_credentials", "client_secret": "x"}, {}, "invalid_request", 400),
    ],
)
async def test_malformed_token_requests(
    client: httpx.AsyncClient,
    url: str,
    form: dict[str, str],
    headers: dict[str, str],
    error: str,
    status: int,
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    secret = await make_secret(client, app["id"])
    async with httpx.AsyncClient(base_url=url) as anonymous:
        response = await anonymous.post(
            "/oauth/token", data=form, headers=headers, auth=(app["id"], secret)
        )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


async def test_token_requests_need_a_form_and_a_client(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    secret = await make_secret(client, app["id"])
    async with httpx.AsyncClient(base_url=url) as anonymous:
        as_json = await anonymous.post(
            "/oauth/token", json={"grant_type": "client_credentials"}, auth=(app["id"], secret)
        )
        no_client = await anonymous.post("/oauth/token", data={"grant_type": "client_credentials"})
        bearer_client = await anonymous.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Bearer {client.headers['authorization'][7:]}"},
        )
        twice = await anonymous.post(
            "/oauth/token",
            content="grant_type=client_credentials&grant_type=client_credentials",
            headers={"content-type": "application/x-www-form-urlencoded"},
            auth=(app["id"], secret),
        )
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert (no_client.status_code, no_client.json()["error"]) == (401, "invalid_client")
    assert (bearer_client.status_code, bearer_client.json()["error"]) == (401, "invalid_client")
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")


async def test_scope_escalation_is_refused_and_narrowing_allowed(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    secret = await make_secret(client, app["id"])
    escalated = await request_token(url, app["id"], secret, scope="events:read events:publish")
    assert escalated.status_code == 400
    assert escalated.json()["error"] == "invalid_scope"
    assert "events:publish" in escalated.json()["error_description"]
    narrowed = await request_token(url, app["id"], secret, scope="events:read:lot.*")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "events:read:lot.*"
    # The narrowed token works, for what it names only.
    token = narrowed.json()["access_token"]
    async with bearer(url, client.headers["Authorization"].split()[1]) as operator:
        for id, type in (("lot-1", "lot.released.v1"), ("mo-1", "production.completed.v1")):
            event = {"specversion": "1.0", "id": id, "source": "t", "type": type, "tenant": ACME}
            assert (await operator.post("/v1/events", json=event)).status_code == 201
    async with bearer(url, token) as narrow:
        listed = (await narrow.get("/v1/events")).json()["events"]
        assert [item["event"]["id"] for item in listed] == ["lot-1"]


async def test_a_token_opens_the_routes_of_its_scopes_only(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "reader", scopes=["events:read", "subscriptions:read"])
    secret = await make_secret(client, app["id"])
    token = await get_token(url, app["id"], secret)
    assert await status_of(url, token, "GET", "/v1/events") == 200
    assert await status_of(url, token, "GET", "/v1/subscriptions") == 200
    assert await status_of(url, token, "POST", "/v1/events") == 403
    assert await status_of(url, token, "GET", "/v1/principals") == 403
    only_events = await get_token(url, app["id"], secret, scope="events:read")
    assert await status_of(url, only_events, "GET", "/v1/subscriptions") == 403
    tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert await status_of(url, tampered) == 401


async def test_disabling_a_principal_stops_its_keys_and_tokens_at_once(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    key = (await make_key(client, app["id"]))["key"]
    secret = await make_secret(client, app["id"])
    token = await get_token(url, app["id"], secret)
    assert await status_of(url, key) == await status_of(url, token) == 200
    response = await client.patch(f"/v1/principals/{app['id']}", json={"disabled": True})
    assert response.status_code == 200
    assert response.json()["disabled"] is True
    assert await status_of(url, key) == 401
    assert await status_of(url, token) == 401
    assert (await request_token(url, app["id"], secret)).status_code == 401
    await client.patch(f"/v1/principals/{app['id']}", json={"disabled": False})
    assert await status_of(url, key) == 200


async def test_a_scope_taken_away_is_gone_from_tokens_already_issued(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read", "subscriptions:read"])
    token = await get_token(url, app["id"], await make_secret(client, app["id"]))
    response = await client.patch(f"/v1/principals/{app['id']}", json={"scopes": ["events:read"]})
    assert response.status_code == 200
    assert await status_of(url, token, "GET", "/v1/subscriptions") == 403
    assert await status_of(url, token, "GET", "/v1/events") == 200


# -- discovery and signing keys ---------------------------------------------------------------


async def test_jwks_publishes_the_public_key_that_verifies_tokens(
    client: httpx.AsyncClient, url: str
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    token = await get_token(url, app["id"], await make_secret(client, app["id"]))
    async with httpx.AsyncClient(base_url=url) as anonymous:
        jwks = await anonymous.get("/.well-known/jwks.json")
        metadata = await anonymous.get("/.well-known/oauth-authorization-server")
        openapi = (await anonymous.get("/openapi.json")).json()
    assert jwks.status_code == 200
    [key] = jwks.json()["keys"]
    assert key["kid"] == segment(token, 0)["kid"]
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in key
    assert segment(token, 0)["typ"] == "at+jwt"
    meta = metadata.json()
    assert meta["token_endpoint"] == f"{meta['issuer']}/oauth/token"
    assert meta["jwks_uri"] == f"{meta['issuer']}/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    assert "principals:admin" in meta["scopes_supported"]
    token_body = openapi["paths"]["/oauth/token"]["post"]["requestBody"]["content"]
    assert list(token_body) == ["application/x-www-form-urlencoded"]
    assert "/v1/principals/{id}/secrets/{credential_id}/rotate" in openapi["paths"]


async def test_signing_key_rotation_keeps_old_tokens_for_the_overlap(
    client: httpx.AsyncClient, url: str, clock: Clock
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    secret = await make_secret(client, app["id"])
    before = await get_token(url, app["id"], secret)
    old_kid = segment(before, 0)["kid"]

    rotated = await client.post("/v1/signing-keys/rotate")
    assert rotated.status_code == 201
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid
    async with httpx.AsyncClient(base_url=url) as anonymous:
        kids = {k["kid"] for k in (await anonymous.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {old_kid, new_kid}
    after = await get_token(url, app["id"], secret)
    assert segment(after, 0)["kid"] == new_kid
    assert await status_of(url, before) == await status_of(url, after) == 200

    clock.advance(3600 + 1)  # the overlap is over
    async with httpx.AsyncClient(base_url=url) as anonymous:
        kids = {k["kid"] for k in (await anonymous.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {new_kid}
    assert await status_of(url, before) == 401
    assert await status_of(url, await get_token(url, app["id"], secret)) == 200
    [entry] = await audit_entries(client, tenant="*", action="signing_key.rotate")
    assert (entry["actor"], entry["target"], entry["outcome"]) == ("operator", new_kid, "success")


async def test_only_the_operator_rotates_signing_keys(client: httpx.AsyncClient, url: str) -> None:
    admin = await make_principal(client, "alice", kind="user", scopes=["principals:admin"])
    key = (await make_key(client, admin["id"]))["key"]
    assert await status_of(url, key, "POST", "/v1/signing-keys/rotate") == 403
    assert await status_of(url, key, "GET", "/v1/signing-keys") == 403


# -- API keys ---------------------------------------------------------------------------------


async def test_api_key_create_use_revoke(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    created = await make_key(client, app["id"])
    assert created["key"].startswith(created["prefix"] + "_")
    assert created["prefix"].startswith("flk_dev_")
    assert await status_of(url, created["key"]) == 200
    listed = (await client.get(f"/v1/principals/{app['id']}/keys")).json()["keys"]
    assert [(k["id"], k["state"]) for k in listed] == [(created["id"], "active")]
    assert listed[0]["last_used_at"] is not None
    assert "key" not in listed[0]
    revoked = await client.post(f"/v1/principals/{app['id']}/keys/{created['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert await status_of(url, created["key"]) == 401
    actions = [e["action"] for e in await audit_entries(client, tenant=ACME)]
    assert actions == ["principal.create", "api_key.create", "api_key.revoke"]


async def test_api_key_rotation_overlap(client: httpx.AsyncClient, url: str, clock: Clock) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    old = await make_key(client, app["id"])
    response = await client.post(
        f"/v1/principals/{app['id']}/keys/{old['id']}/rotate", json={"overlap_seconds": 60}
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["key"] != old["key"]
    assert new["replaces"]["id"] == old["id"]
    assert await status_of(url, old["key"]) == await status_of(url, new["key"]) == 200
    clock.advance(61)
    assert await status_of(url, old["key"]) == 401
    assert await status_of(url, new["key"]) == 200
    revoked = await client.post(f"/v1/principals/{app['id']}/keys/{new['id']}/revoke")
    assert revoked.status_code == 200
    again = await client.post(f"/v1/principals/{app['id']}/keys/{new['id']}/rotate", json={})
    assert again.status_code == 409  # a leaked key is revoked, not rotated


async def test_an_expired_key_is_refused(client: httpx.AsyncClient, url: str, clock: Clock) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    key = (await make_key(client, app["id"], expires_in=30))["key"]
    assert await status_of(url, key) == 200
    clock.advance(31)
    assert await status_of(url, key) == 401


async def test_a_key_of_another_environment_is_refused(client: httpx.AsyncClient, url: str) -> None:
    app = await make_principal(client, "prod-mes", scopes=["events:read"], environment="prod")
    created = await make_key(client, app["id"])
    assert created["key"].startswith("flk_prod_")
    assert await status_of(url, created["key"]) == 401
    secret = await make_secret(client, app["id"])
    response = await request_token(url, app["id"], secret)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_client_secrets_rotate_and_revoke(
    client: httpx.AsyncClient, url: str, clock: Clock
) -> None:
    app = await make_principal(client, "mes", scopes=["events:read"])
    old = await make_secret(client, app["id"])
    [listed] = (await client.get(f"/v1/principals/{app['id']}/secrets")).json()["secrets"]
    assert old.startswith(listed["prefix"])
    response = await client.post(
        f"/v1/principals/{app['id']}/secrets/{listed['id']}/rotate", json={"overlap_seconds": 10}
    )
    assert response.status_code == 201
    new = response.json()["secret"]
    assert (await request_token(url, app["id"], old)).status_code == 200
    clock.advance(11)
    assert (await request_token(url, app["id"], old)).status_code == 401
    assert (await request_token(url, app["id"], new)).status_code == 200
    # A key id is not a secret id: the routes do not mix them.
    response = await client.post(f"/v1/principals/{app['id']}/keys/{listed['id']}/revoke")
    assert response.status_code == 404


# -- tenants, function- and property-level authorization --------------------------------------


async def test_a_tenant_admin_cannot_reach_another_tenants_principals(
    client: httpx.AsyncClient, url: str
) -> None:
    admin = await make_principal(
        client, "alice", kind="user", scopes=["principals:admin", "audit:read", "events:read"]
    )
    key = (await make_key(client, admin["id"]))["key"]
    theirs = await make_principal(client, "their-mes", scopes=["events:read"], tenant=GLOBEX)
    their_key = await make_key(client, theirs["id"])
    async with bearer(url, key) as alice:
        ours = await alice.post(
            "/v1/principals", json={"kind": "service", "name": "mes", "scopes": ["events:read"]}
        )
        assert ours.status_code == 201
        assert ours.json()["tenant"] == ACME
        attempts = [
            await alice.get(f"/v1/principals/{theirs['id']}"),
            await alice.patch(f"/v1/principals/{theirs['id']}", json={"disabled": True}),
            await alice.post(f"/v1/principals/{theirs['id']}/keys", json={}),
            await alice.get(f"/v1/principals/{theirs['id']}/keys"),
            await alice.post(f"/v1/principals/{theirs['id']}/keys/{their_key['id']}/revoke"),
            # their key through our principal's path
            await alice.post(f"/v1/principals/{admin['id']}/keys/{their_key['id']}/revoke"),
        ]
        assert [r.status_code for r in attempts] == [404] * len(attempts)
        listed = (await alice.get("/v1/principals")).json()["principals"]
        assert {p["name"] for p in listed} == {"alice", "mes"}
        assert (await alice.get("/v1/principals", params={"tenant": GLOBEX})).status_code == 403
        entries = await audit_entries(alice)
        assert {e["tenant"] for e in entries} == {ACME}
        denied = [e for e in entries if e["outcome"] == "denied"]
        assert [e["action"] for e in denied] == [
            "principal.update",
            "api_key.create",
            "api_key.revoke",
            "api_key.revoke",
        ]
    assert await status_of(url, their_key["key"]) == 200  # untouched
    theirs_now = (await client.get(f"/v1/principals/{theirs['id']}")).json()
    assert theirs_now["disabled"] is False


async def test_admin_bodies_refuse_fields_they_do_not_take(
    client: httpx.AsyncClient, url: str
) -> None:
    admin = await make_principal(
        client, "alice", kind="user", scopes=["principals:admin", "events:read"]
    )
    key = (await make_key(client, admin["id"]))["key"]
    base = {"kind": "service", "name": "mes", "scopes": ["events:read"]}
    async with bearer(url, key) as alice:
        for extra in ({"tenant": GLOBEX}, {"id": "pr_mine"}, {"disabled": True}, {"status": "x"}):
            response = await alice.post("/v1/principals", json={**base, **extra})
            assert response.status_code == 422, (extra, response.text)
        for change in ({"tenant": GLOBEX}, {"kind": "user"}, {"name": "root"}):
            response = await alice.patch(f"/v1/principals/{admin['id']}", json=change)
            assert response.status_code == 422, (change, response.text)
        listed = (await alice.get("/v1/principals")).json()["principals"]
    assert [p["name"] for p in listed] == ["alice"]
    operator_without_tenant = await client.post("/v1/principals", json=base)
    assert operator_without_tenant.status_code == 422
    assert (await client.post("/v1/principals", json={**base, "tenant": "*"})).status_code == 422


async def test_a_tenant_admin_grants_only_scopes_it_holds(
    client: httpx.AsyncClient, url: str
) -> None:
    admin = await make_principal(
        client, "alice", kind="user", scopes=["principals:admin", "events:read"]
    )
    key = (await make_key(client, admin["id"]))["key"]
    async with bearer(url, key) as alice:
        refused = await alice.post(
            "/v1/principals",
            json={"kind": "service", "name": "ops", "scopes": ["subscriptions:write"]},
        )
        assert refused.status_code == 403
        narrowed = await alice.post(
            "/v1/principals",
            json={"kind": "plant", "name": "line-1", "scopes": ["events:read:lot.*"]},
        )
        assert narrowed.status_code == 201, narrowed.text
        raised = await alice.patch(
            f"/v1/principals/{admin['id']}", json={"scopes": ["principals:admin", "audit:read"]}
        )
        assert raised.status_code == 403
        [entry] = await audit_entries(client, tenant=ACME, action="principal.update")
        assert entry["outcome"] == "denied"
        assert entry["actor"] == admin["id"]
        # Minting a credential for a principal is granting its scopes: the same rule.
        strong = await make_principal(client, "svc", scopes=["subscriptions:write"])
        for path in (
            f"/v1/principals/{strong['id']}/keys",
            f"/v1/principals/{strong['id']}/secrets",
        ):
            assert (await alice.post(path, json={})).status_code == 403
        existing = await make_key(client, strong["id"])
        rotate = f"/v1/principals/{strong['id']}/keys/{existing['id']}/rotate"
        assert (await alice.post(rotate, json={})).status_code == 403


async def test_partners_never_hold_or_reach_admin_scopes(
    client: httpx.AsyncClient, url: str
) -> None:
    for kind in ("partner", "plant"):
        response = await client.post(
            "/v1/principals",
            json={"kind": kind, "name": "acme-supplier", "tenant": ACME,
                  "scopes": ["events:read", "principals:admin"]},
        )  # fmt: skip
        assert response.status_code == 422, response.text
        assert "principals:admin" in response.text
    partner = await make_principal(client, "supplier", kind="partner", scopes=["events:read"])
    refused = await client.patch(
        f"/v1/principals/{partner['id']}", json={"scopes": ["events:read", "audit:read"]}
    )
    assert refused.status_code == 422
    key = (await make_key(client, partner["id"]))["key"]
    assert await status_of(url, key, "GET", "/v1/events") == 200
    for method, path in (
        ("GET", "/v1/principals"),
        ("POST", "/v1/principals"),
        ("GET", f"/v1/principals/{partner['id']}/keys"),
        ("GET", "/v1/audit"),
    ):
        assert await status_of(url, key, method, path) == 403, path
    listed = (await client.get("/v1/principals", params={"tenant": ACME})).json()["principals"]
    assert [p["name"] for p in listed] == ["supplier"]


async def test_the_audit_log_is_read_per_tenant(client: httpx.AsyncClient, url: str) -> None:
    auditor = await make_principal(client, "auditor", kind="user", scopes=["audit:read"])
    key = (await make_key(client, auditor["id"]))["key"]
    await make_principal(client, "their-mes", tenant=GLOBEX)
    assert (await client.get("/v1/audit")).status_code == 400  # the operator names a tenant
    theirs = await audit_entries(client, tenant=GLOBEX)
    assert [e["action"] for e in theirs] == ["principal.create"]
    async with bearer(url, key) as reader:
        ours = await audit_entries(reader)
        assert [e["action"] for e in ours] == ["principal.create", "api_key.create"]
        assert {e["actor"] for e in ours} == {"operator"}
        first = await reader.get("/v1/audit", params={"limit": 1})
        assert first.json()["next_after"] == ours[0]["seq"]
        rest = await audit_entries(reader, after=str(ours[0]["seq"]))
        assert rest == ours[1:]
        assert (await reader.get("/v1/audit", params={"tenant": GLOBEX})).status_code == 403


async def test_no_answer_carries_a_hash_or_a_sealed_key(
    served: tuple[Hub, str], client: httpx.AsyncClient
) -> None:
    hub, url = served
    bodies: list[str] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(response.text)

    client.event_hooks = {"response": [keep]}
    app = await make_principal(client, "mes", scopes=["events:read"])
    key = await make_key(client, app["id"])
    await client.post(f"/v1/principals/{app['id']}/keys/{key['id']}/rotate", json={})
    secret = await make_secret(client, app["id"])
    await client.post("/v1/signing-keys/rotate")
    for path in (
        f"/v1/principals/{app['id']}",
        f"/v1/principals/{app['id']}/keys",
        f"/v1/principals/{app['id']}/secrets",
        "/v1/principals?tenant=acme",
        "/v1/signing-keys",
        "/v1/audit?tenant=acme",
        "/v1/audit?tenant=*",
        "/.well-known/jwks.json",
    ):
        assert (await client.get(path)).status_code == 200, path
    bodies.append((await request_token(url, app["id"], secret)).text)

    with sqlite3.connect(hub.settings.data_dir / "state.db") as db:
        hashes = [row[0] for row in db.execute("SELECT secret_hash FROM credentials")]
        sealed = [row[0] for row in db.execute("SELECT sealed_private FROM signing_keys")]
    assert len(hashes) == 3 and len(sealed) == 2
    stored = [h.split(":", 1)[1] for h in hashes] + sealed
    everything = "\n".join(bodies)
    assert all(value not in everything for value in stored)
    assert "sha256:" not in everything
    assert '"d":' not in everything  # no private JWK member


# -- several API processes on one store --------------------------------------------------------


SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a store that two authorities (two API processes) share."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    require("postgres")
    schema = f"fl_id_{uuid.uuid4().hex[:12]}"
    yield f"{SERVER}?schema={schema}"
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_api_processes_share_signing_keys_and_follow_a_rotation(shared_store: str) -> None:
    box = SecretBox([MasterKey("k1", secrets.token_bytes(32))])
    issuer = "https://hub.plant.example"
    async with (
        open_security_store(shared_store) as store_a,
        open_security_store(shared_store) as store_b,
    ):
        first = Authority(store_a, box, issuer=issuer, environment="prod")
        second = Authority(store_b, box, issuer=issuer, environment="prod")
        await first.start()
        await second.start()
        assert [k.kid for k in second.ring.keys] == [k.kid for k in first.ring.keys]

        principal = await store_a.create_principal(
            "acme", "prod", "service", "mes", ["events:read"]
        )
        secret, hashed = apikeys.new_client_secret()
        await store_a.add_credential(
            principal.id,
            "client_secret",
            client_secret_prefix(secret),
            hashed,
            expires_at=None,
            tenant=None,
        )
        before = (await first.issue(principal.id, secret, None))["access_token"]
        caller = await second.identify(before)
        assert caller is not None
        assert (caller.id, caller.tenant, caller.via) == (principal.id, "acme", "token")
        assert caller.scopes == {"events:read"}

        rotated = await first.rotate()
        after = (await first.issue(principal.id, secret, None))["access_token"]
        assert segment(after, 0)["kid"] == rotated.kid
        # The second process has not seen the new key: it reads it on first sight.
        assert rotated.kid not in {k.kid for k in second.ring.keys}
        assert await second.identify(after) is not None
        assert await second.identify(before) is not None  # the old key is in its overlap

        # A process started with the wrong master key refuses to start, rather than sign
        # with a key of its own that no other process could read.
        impostor = SecretBox([MasterKey("k1", secrets.token_bytes(32))])
        with pytest.raises(ConfigError, match="master key"):
            await Authority(store_b, impostor, issuer=issuer, environment="prod").start()
        unknown_kid = SecretBox([MasterKey("k2", secrets.token_bytes(32))])
        with pytest.raises(ConfigError, match="master key"):
            await Authority(store_b, unknown_kid, issuer=issuer, environment="prod").start()


def test_the_authority_refuses_settings_that_cannot_work() -> None:
    store = open_security_store("sqlite:///:memory:")
    box = SecretBox([MasterKey("k1", secrets.token_bytes(32))])
    with pytest.raises(ConfigError, match="environment"):
        Authority(store, box, issuer="https://hub.example", environment="staging")
    with pytest.raises(ConfigError, match="longer than the signing key overlap"):
        Authority(store, box, issuer="https://hub.example", environment="dev", token_ttl=600,
                  key_overlap=300)  # fmt: skip
    with pytest.raises(ConfigError, match="whole number"):
        Authority(store, box, issuer="https://hub.example", environment="dev", token_ttl=0.5)
    with pytest.raises(ConfigError, match="issuer"):
        Authority(store, box, issuer="hub.example", environment="dev")
