"""Tenant isolation and scopes on the event, subscription and dead-letter routes (OWASP API1
broken object-level and API5 broken function-level authorization).

Callers are made through ``hub.identify``, the hook the API asks for any credential that is
not the operator's key (the identity layer answers it from API keys and access tokens)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgeline import Event, Hub, Settings
from forgeline.security.access import Caller
from forgeline.testing import Receiver, Reply, running_hub
from forgeline.webhooks import egress

CALLERS = {
    "acme-admin": Caller("p-acme", "service", "acme", frozenset({
        "events:publish", "events:read", "subscriptions:read", "subscriptions:write",
        "deadletters:read", "deadletters:write", "audit:read"})),
    "globex-admin": Caller("p-globex", "service", "globex", frozenset({
        "events:publish", "events:read", "subscriptions:read", "subscriptions:write",
        "deadletters:read", "deadletters:write", "audit:read"})),
    "acme-line": Caller("p-line", "plant", "acme", frozenset({"events:publish:production.*"})),
    # A partner whose row was edited to hold an admin scope: still refused at the route.
    "acme-partner": Caller("p-partner", "partner", "acme", frozenset({
        "events:read:lot.*", "subscriptions:write"})),
}  # fmt: skip


class Hubs:
    def __init__(self, hub: Hub, url: str, receiver: Receiver) -> None:
        self.hub, self.url, self.receiver = hub, url, receiver

    def client(self, who: str) -> httpx.AsyncClient:
        token = self.hub.admin_key if who == "operator" else who
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[Hubs]:
    def script(path: str, event: dict[str, object], seen: int) -> Reply:
        return Reply(status=400 if path == "/refuse" else 204)

    async def identify(credential: str) -> Caller | None:
        return CALLERS.get(credential)

    # The receiver is on loopback: allowed for these tests, as a plant allows its own network.
    settings = Settings.load(env={}, data_dir=tmp_path, egress_allow=("127.0.0.0/8",))
    async with Receiver(script) as receiver, running_hub(settings) as (hub, url):
        hub.identify = identify  # type: ignore[attr-defined]
        yield Hubs(hub, url, receiver)


def _event(id: str, type: str = "production.completed.v1", **ext: str) -> dict[str, object]:
    return Event.new(type, "plant/line-1", {"qty": 1}, subject=id, **ext).to_dict() | {"id": id}


async def test_events_are_stamped_with_the_tenant_and_seen_only_by_it(hubs: Hubs) -> None:
    async with hubs.client("acme-admin") as acme, hubs.client("globex-admin") as globex:
        assert (await acme.post("/v1/events", json=_event("e-1"))).status_code == 201
        stored = (await acme.get("/v1/events/e-1")).json()
        assert stored["tenant"] == "acme"
        assert (await globex.get("/v1/events/e-1")).status_code == 404
        listed = (await globex.get("/v1/events")).json()["events"]
        assert listed == []
        assert [e["event"]["id"] for e in (await acme.get("/v1/events")).json()["events"]] == [
            "e-1"
        ]
        # Publishing into another tenant is refused, and nothing is stored.
        foreign = await acme.post("/v1/events", json=_event("e-2", tenant="globex"))
        assert foreign.status_code == 403
        async with hubs.client("operator") as operator:
            assert (await operator.get("/v1/events/e-2")).status_code == 404


async def test_a_type_narrowed_scope_publishes_only_its_types(hubs: Hubs) -> None:
    async with hubs.client("acme-line") as line:
        assert (await line.post("/v1/events", json=_event("p-1"))).status_code == 201
        refused = await line.post("/v1/events", json=_event("l-1", type="lot.released.v1"))
        assert refused.status_code == 403
        assert "lot.released.v1" in refused.json()["detail"]
        # Reading is another scope.
        assert (await line.get("/v1/events")).status_code == 403


async def test_subscriptions_belong_to_their_tenant(hubs: Hubs) -> None:
    spec = {"name": "mine", "types": ["production.*"], "sink": {"url": hubs.receiver.url("/a")}}
    async with hubs.client("acme-admin") as acme, hubs.client("globex-admin") as globex:
        made = await acme.post("/v1/subscriptions", json=spec)
        assert made.status_code == 201 and made.json()["tenant"] == "acme"
        sub = made.json()["id"]
        for request in (
            globex.get(f"/v1/subscriptions/{sub}"),
            globex.put(f"/v1/subscriptions/{sub}", json=spec),
            globex.delete(f"/v1/subscriptions/{sub}"),
            globex.post(f"/v1/subscriptions/{sub}/replay", json={}),
        ):
            assert (await request).status_code == 404
        assert (await globex.get("/v1/subscriptions")).json()["subscriptions"] == []
        # No mass assignment: a tenant's caller cannot name a tenant.
        other = await globex.post("/v1/subscriptions", json={**spec, "tenant": "acme"})
        assert other.status_code == 422
        # The subscription routes only its tenant's events.
        await globex.post("/v1/events", json=_event("g-1"))
        await acme.post("/v1/events", json=_event("a-1"))
        await hubs.receiver.wait_for(1, path="/a")
        await asyncio.sleep(0.3)
        assert hubs.receiver.ids("/a") == ["a-1"]


async def test_dead_letters_are_invisible_to_other_tenants(hubs: Hubs) -> None:
    spec = {
        "name": "refused",
        "types": ["production.*"],
        "sink": {"url": hubs.receiver.url("/refuse")},
        "policy": {"retry": {"max_attempts": 1}},
    }
    async with hubs.client("acme-admin") as acme, hubs.client("globex-admin") as globex:
        assert (await acme.post("/v1/subscriptions", json=spec)).status_code == 201
        await acme.post("/v1/events", json=_event("d-1"))
        letter = await _the_dead_letter(acme)
        assert (await globex.get("/v1/deadletters")).json()["deadletters"] == []
        for request in (
            globex.get(f"/v1/deadletters/{letter['id']}"),
            globex.post(f"/v1/deadletters/{letter['id']}/replay"),
            globex.post(f"/v1/deadletters/{letter['id']}/discard", json={"reason": "x"}),
        ):
            assert (await request).status_code == 404
        bulk = await globex.post("/v1/deadletters/discard", json={"reason": "clean up"})
        assert bulk.json() == {"discarded": 0}
        assert len((await acme.get("/v1/deadletters")).json()["deadletters"]) == 1


async def test_plant_and_partner_principals_never_reach_admin_routes(hubs: Hubs) -> None:
    spec = {"name": "x", "types": ["lot.*"], "sink": {"url": hubs.receiver.url("/x")}}
    async with hubs.client("acme-partner") as partner:
        answer = await partner.post("/v1/subscriptions", json=spec)
        assert answer.status_code == 403
        assert (await partner.get("/v1/deadletters")).status_code == 403


async def test_credentials_only_in_the_authorization_header(hubs: Hubs) -> None:
    async with httpx.AsyncClient(base_url=hubs.url) as anonymous:
        bare = await anonymous.get("/v1/events")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"].startswith("Bearer")
        in_url = await anonymous.get("/v1/events", params={"access_token": hubs.hub.admin_key})
        assert in_url.status_code == 401
        assert "query string" in in_url.json()["detail"]
    async with hubs.client("operator") as operator:
        # Even with a valid header, a credential in the URL is refused (it is in logs now).
        leaked = await operator.get("/v1/events", params={"api_key": "x"})
        assert leaked.status_code == 401
        assert (await operator.get("/v1/events")).status_code == 200


async def test_a_burst_over_the_rate_limit_is_refused_with_retry_after(tmp_path: Path) -> None:
    settings = Settings.load(env={}, data_dir=tmp_path, rate_limit=0.5, rate_burst=3)
    async with (
        running_hub(settings) as (hub, url),
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {hub.admin_key}"}
        ) as client,
    ):
        answers = [await client.get("/v1/subscriptions") for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        refused = answers[3]
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert "ratelimit" in {name.lower() for name in answers[0].headers}
        # Security headers on every answer, the refusal included.
        assert refused.headers["x-content-type-options"] == "nosniff"
        # Failed logins spend the address's budget too: no unlimited guessing.
        async with httpx.AsyncClient(base_url=url) as guesser:
            guesses = [
                await guesser.get("/v1/events", headers={"Authorization": f"Bearer guess{i}"})
                for i in range(5)
            ]
        assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429]


async def test_subscription_changes_and_probes_are_in_the_tenants_audit_log(hubs: Hubs) -> None:
    spec = {"name": "audited", "types": ["x.*"], "sink": {"url": hubs.receiver.url("/x")}}
    async with hubs.client("acme-admin") as acme, hubs.client("globex-admin") as globex:
        sub = (await acme.post("/v1/subscriptions", json=spec)).json()["id"]
        assert (await globex.delete(f"/v1/subscriptions/{sub}")).status_code == 404
        assert (await acme.delete(f"/v1/subscriptions/{sub}")).status_code == 204
        mine = (await acme.get("/v1/audit")).json()["entries"]
        assert [(e["action"], e["outcome"], e["actor"]) for e in mine] == [
            ("subscription.create", "success", "p-acme"),
            ("subscription.delete", "success", "p-acme"),
        ]
        assert all(e["target"] == sub for e in mine)
        theirs = (await globex.get("/v1/audit")).json()["entries"]
        # The probe is recorded in the prober's own log, as denied; it says nothing of acme's.
        assert [(e["action"], e["outcome"]) for e in theirs] == [("subscription.delete", "denied")]
    assert (await hubs.hub.security.verify_audit()).ok


async def test_nobody_publishes_under_the_business_apis_source(hubs: Hubs) -> None:
    """``api/<principal>`` is where POST /v1/transactions records; publishing there directly
    could take another principal's transaction id."""
    async with hubs.client("operator") as operator:
        forged = {**_event("t-1"), "source": "api/p-acme"}
        answer = await operator.post("/v1/events", json=forged)
        assert answer.status_code == 403
        assert (await operator.get("/v1/events/t-1")).status_code == 404


async def test_sink_credentials_given_over_the_api_are_sealed_at_rest(hubs: Hubs) -> None:
    """Secrets at rest: the bearer token of a subscription made over the API is stored sealed
    with the hub's master key, and opened only to send it."""
    spec = {
        "name": "with-token",
        "types": ["production.*"],
        "sink": {"url": hubs.receiver.url("/auth"), "auth": {"type": "bearer", "token": "s3cr3t"}},
    }
    async with hubs.client("acme-admin") as acme:
        assert (await acme.post("/v1/subscriptions", json=spec)).status_code == 201
        await acme.post("/v1/events", json=_event("s-1"))
        await hubs.receiver.wait_for(1, path="/auth")
    (got,) = [r for r in hubs.receiver.accepted if r.path == "/auth"]
    assert got.headers["Authorization"] == "Bearer s3cr3t"
    (stored,) = [
        s for s in await hubs.hub.store.list_subscriptions() if s.spec.name == "with-token"
    ]
    token = stored.spec.sink.auth.token  # type: ignore[union-attr]
    assert token.startswith("sealed:") and "s3cr3t" not in stored.spec.model_dump_json()


async def test_a_tenants_sinks_reach_only_what_the_egress_policy_allows(hubs: Hubs) -> None:
    """SSRF through a subscription: a tenant cannot aim the hub at the cloud metadata service
    or a private network; the operator (who runs the host) may. Webhook endpoints have their
    own route."""
    metadata = {"name": "imds", "types": ["x.*"], "sink": {"url": "http://169.254.169.254/"}}
    rest = {
        "name": "internal",
        "types": ["x.*"],
        "sink": {"rest": {"url": "http://10.1.2.3/api/{subject}"}},
    }
    async with hubs.client("acme-admin") as acme, hubs.client("operator") as operator:
        for spec in (metadata, rest):
            refused = await acme.post("/v1/subscriptions", json=spec)
            assert refused.status_code == 422, refused.text
        assert (await acme.get("/v1/subscriptions")).json()["subscriptions"] == []
        assert (await operator.post("/v1/subscriptions", json=metadata)).status_code == 201
        # Made by the operator for a tenant, it is the tenant's: the same rules, as at delivery.
        for spec in (metadata, rest):
            given = {**spec, "name": f"{spec['name']}-acme", "tenant": "acme"}
            refused = await operator.post("/v1/subscriptions", json=given)
            assert refused.status_code == 422, refused.text
        endpoint = {"name": "ep", "types": ["x.*"], "sink": {"webhook": {"endpoint": "ep_1"}}}
        assert (await operator.post("/v1/subscriptions", json=endpoint)).status_code == 422


@pytest.mark.parametrize("kind", ["url", "rest"])
async def test_a_tenants_sink_whose_name_turns_internal_is_refused_at_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """DNS rebinding through a subscription: the name was public when the tenant gave it and
    leads to loopback when the event goes. The delivery is dead at once naming the policy,
    nothing reaches loopback - while the operator's own sink to the same place delivers."""
    answers = {"partner.example": ["93.184.215.14"]}  # public when the subscription is made

    async def lookup(host: str, port: int, family: int) -> list[str]:
        return answers[host]

    monkeypatch.setattr(egress, "_system_lookup", lookup)
    monkeypatch.delenv(egress.ALLOW_ENV, raising=False)

    async def identify(credential: str) -> Caller | None:
        return CALLERS.get(credential)

    settings = Settings.load(env={}, data_dir=tmp_path)
    async with Receiver() as receiver, running_hub(settings) as (hub, url):
        hub.identify = identify  # type: ignore[attr-defined]
        target = f"http://partner.example:{receiver.port}/in"
        sink = {"url": target} if kind == "url" else {"rest": {"url": target + "/{subject}"}}
        hubs = Hubs(hub, url, receiver)
        async with hubs.client("acme-admin") as acme, hubs.client("operator") as operator:
            spec = {"name": "partner", "types": ["production.*"], "sink": sink}
            assert (await acme.post("/v1/subscriptions", json=spec)).status_code == 201
            answers["partner.example"] = ["127.0.0.1"]  # DNS rebinding
            local = {"name": "local", "types": ["production.*"], "sink": {"url": receiver.url()}}
            assert (await operator.post("/v1/subscriptions", json=local)).status_code == 201
            assert (await acme.post("/v1/events", json=_event("rebound-1"))).status_code == 201
            letter = await _the_dead_letter(acme)
            await receiver.wait_for(1)  # the operator's subscription delivered
    assert "egress policy" in letter["reason"], letter
    assert letter["attempts"] == 1
    assert [got.path for got in receiver.received] == ["/"]


async def test_a_tenants_subscriptions_cannot_act_as_the_hub(hubs: Hubs) -> None:
    """Odoo, MQTT, file and publish sinks act with the hub's own credentials or identity: a
    tenant gets none of them (an Odoo RPC as the hub, events from any source)."""
    sinks = [
        {"odoo": {"system": "erp", "model": "res.users", "action": "call", "method": "write"}},
        {"publish": {"type": "y.v1", "source": "api/p-other"}},
        {"file": {"system": "partner", "name": "x-{seq}.jsonl"}},
        {"mqtt": {"system": "broker", "topic": "t"}},
    ]
    async with hubs.client("acme-admin") as acme:
        for sink in sinks:
            answer = await acme.post(
                "/v1/subscriptions", json={"name": "s", "types": ["x.*"], "sink": sink}
            )
            assert answer.status_code == 422, (sink, answer.text)
        assert (await acme.get("/v1/subscriptions")).json()["subscriptions"] == []


async def test_a_tenant_cannot_publish_as_a_system_nor_take_anothers_ids(
    tmp_path: Path,
) -> None:
    """Flows and ownership rules trust a configured system's source; and one publisher's
    (source, id) is not another's to claim: a clash is a 409, never a silent 'duplicate'."""
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        "systems:\n  mes: {kind: webhook, type: mes.message.v1, source: 'mes://plant-1',"
        " verify: {token: hook-token-123456}}\n"
    )
    settings = Settings.load(config_file=config, env={}, data_dir=tmp_path / "data")
    async with running_hub(settings) as (hub, url):

        async def identify(credential: str) -> Caller | None:
            return CALLERS.get(credential)

        hub.identify = identify  # type: ignore[method-assign]
        hubs = Hubs(hub, url, None)  # type: ignore[arg-type]
        async with hubs.client("acme-admin") as acme, hubs.client("globex-admin") as globex:
            posing = {**_event("m-1"), "source": "mes://plant-1"}
            assert (await acme.post("/v1/events", json=posing)).status_code == 403
            hubs_own = {**_event("m-2"), "source": "forgeline/route"}
            assert (await acme.post("/v1/events", json=hubs_own)).status_code == 403
            assert (await globex.post("/v1/events", json=_event("shared-1"))).status_code == 201
            clash = await acme.post("/v1/events", json=_event("shared-1"))
            assert clash.status_code == 409
            (result,) = clash.json()["events"]
            assert result["conflict"] is True and "position" not in result
            # The same publisher sending again is a plain duplicate, as always.
            again = await globex.post("/v1/events", json=_event("shared-1"))
            assert again.status_code == 200 and again.json()["events"][0]["duplicate"]


async def _the_dead_letter(client: httpx.AsyncClient) -> dict[str, Any]:
    """The one dead letter the client's tenant has, once there is one (10 s at most)."""
    for _ in range(200):
        dead = (await client.get("/v1/deadletters")).json()["deadletters"]
        if dead:
            break
        await asyncio.sleep(0.05)
    (letter,) = dead
    return dict(letter)
