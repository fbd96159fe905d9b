"""Inbound webhooks (``kind: webhook`` systems) on a real hub over HTTP: what a verified
request becomes, that every refusal looks the same and stores nothing, and that the simulated
WMS (signed callbacks) and MES (``post_to``) land in the log as events."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from forgeline import Event, Hub, Settings
from forgeline.connectors.webhook import Inbound, WebhookIntake, WebhookSystem, build_event
from forgeline.exceptions import ConfigError, InvalidEvent, NotFound
from forgeline.log import Appended
from forgeline.sim.mes import MesServer
from forgeline.sim.wms import WmsServer
from forgeline.testing import running_hub
from forgeline.webhooks.signing import new_keypair, new_symmetric_secret, signature_headers

WMS_SECRET = "wms-s3cret"
WMS_NEXT_SECRET = "wms-next-s3cret"
PARTNER_SECRET = "partner-s3cret"
MES_TOKEN = "mes-token-0123456789"
MAX_BODY = 4096
STD_SECRET = new_symmetric_secret()
STD_PRIVATE, STD_PUBLIC = new_keypair()

CONFIG = """
hub:
  max_body_bytes: {max_body}
systems:
  wms:
    kind: webhook
    type: wms.putaway.v1
    id: eventId
    subject: task.taskId
    time: occurredAt
    source: wms://dc-1
    verify:
      hmac: {{secret: [env:WMS_NEXT_SECRET, env:WMS_SECRET], header: X-WMS-Signature}}
  mes:
    kind: webhook
    type: mes.message.v1
    id: msgId
    subject: woNumber
    time: ts
    verify:
      token: file:{token_file}
  partner:
    kind: webhook
    type: partner.notice.v1
    verify:
      hmac: {{secret: env:PARTNER_SECRET, header: X-Signature, prefix: "", encoding: base64}}
  gate:
    kind: webhook
    type: gate.reading.v1
    verify: {{none: true}}
    allow_from: [10.0.0.0/8]
  fenced:
    kind: webhook
    type: fenced.reading.v1
    verify: {{token: env:FENCED_TOKEN}}
    allow_from: [192.0.2.0/24]
  broken:
    kind: webhook
    type: broken.thing.v1
    verify: {{token: env:FORGELINE_TEST_UNSET_TOKEN}}
  carrier:
    kind: webhook
    type: carrier.shipment.v1
    subject: shipment
    verify:
      standard: {{secret: [env:STD_SECRET, "{std_public}"], tolerance: 300}}
  misconfigured:
    kind: webhook
    type: broken.thing.v1
    verify:
      standard: {{secret: env:STD_NOT_A_KEY}}
  erp:
    url: http://127.0.0.1:9
    db: demo
    api_key: unused
    webhook_token: odoo-hook-token
"""


@dataclass
class Hooks:
    hub: Hub
    url: str
    http: httpx.AsyncClient

    async def events(self) -> list[Event]:
        return [record.event for record in await self.hub.log.read(0, 10_000)]

    async def signed(
        self,
        body: bytes | dict[str, Any],
        *,
        secret: str = WMS_SECRET,
        path: str = "/hooks/wms",
        header: str = "X-WMS-Signature",
        **headers: str,
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        sent = {"content-type": "application/json", header: f"sha256={signature}", **headers}
        return await self.http.post(path, content=raw, headers=sent)

    async def metric(self, system: str, outcome: str, reason: str = "") -> float:
        text = (await self.http.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "forgeline_webhook_requests_total" and sample.labels == {
                    "system": system,
                    "outcome": outcome,
                    "reason": reason,
                }:
                    return sample.value
        return 0.0


@pytest.fixture
async def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hooks]:
    monkeypatch.setenv("WMS_SECRET", WMS_SECRET)
    monkeypatch.setenv("WMS_NEXT_SECRET", WMS_NEXT_SECRET)
    monkeypatch.setenv("PARTNER_SECRET", PARTNER_SECRET)
    monkeypatch.setenv("FENCED_TOKEN", "fenced-token")
    monkeypatch.delenv("FORGELINE_TEST_UNSET_TOKEN", raising=False)
    monkeypatch.setenv("STD_SECRET", STD_SECRET)
    monkeypatch.setenv("STD_NOT_A_KEY", "s3cret-without-its-prefix")
    token_file = tmp_path / "mes-token"
    token_file.write_text(MES_TOKEN + "\n")
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        CONFIG.format(max_body=MAX_BODY, token_file=token_file, std_public=STD_PUBLIC)
    )
    settings = Settings.load(config_file=config, env={}, data_dir=tmp_path / "hub")
    async with (
        running_hub(settings) as (hub, url),
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield Hooks(hub, url, http)


def putaway(event_id: str = "WMS-EVT-00000001", **task: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "eventType": "PUTAWAY_CONFIRMED",
        "occurredAt": "2026-03-02T08:15:00.123Z",
        "task": {"taskId": "PA-000001", "sku": "FG-1", "qty": 20, "status": "DONE", **task},
    }


# --- verified requests ------------------------------------------------------------------------


async def test_a_signed_callback_becomes_one_event_and_a_replay_stores_nothing(
    hooks: Hooks,
) -> None:
    body = putaway()
    first = await hooks.signed(body)
    assert first.status_code == 202, first.text
    assert first.json() == {
        "status": "accepted",
        "id": "WMS-EVT-00000001",
        "position": first.json()["position"],
        "duplicate": False,
    }
    replay = await hooks.signed(body)
    assert replay.status_code == 200
    assert replay.json() == {**first.json(), "duplicate": True}
    (event,) = await hooks.events()
    assert (event.id, event.source, event.type) == (
        "WMS-EVT-00000001",
        "wms://dc-1",
        "wms.putaway.v1",
    )
    assert event.subject == "PA-000001" and event.partitionkey == "PA-000001"
    assert event.time == "2026-03-02T08:15:00.123Z"
    assert event.data == body and event.datacontenttype == "application/json"
    assert await hooks.metric("wms", "accepted") == 1
    assert await hooks.metric("wms", "duplicate") == 1


async def test_both_secrets_of_a_rotation_verify(hooks: Hooks) -> None:
    old = await hooks.signed(putaway("E-1"), secret=WMS_SECRET)
    new = await hooks.signed(putaway("E-2"), secret=WMS_NEXT_SECRET)
    assert (old.status_code, new.status_code) == (202, 202)


async def test_a_body_without_a_time_gets_the_time_of_receipt(hooks: Hooks) -> None:
    body = putaway()
    del body["occurredAt"]
    assert (await hooks.signed(body)).status_code == 202
    (event,) = await hooks.events()
    assert event.time is not None and event.time.startswith("20")


async def test_without_an_id_path_the_webhook_id_header_or_the_body_digest_is_the_id(
    hooks: Hooks,
) -> None:
    def sent(raw: bytes, **headers: str) -> dict[str, str]:
        mac = hmac.new(PARTNER_SECRET.encode(), raw, hashlib.sha256).digest()
        signature = base64.b64encode(mac).decode()
        return {"content-type": "application/json", "x-signature": signature, **headers}

    raw = b'{"notice": "dock 4 closed"}'
    answer = await hooks.http.post("/hooks/partner", content=raw, headers=sent(raw))
    assert answer.status_code == 202, answer.text
    assert answer.json()["id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    again = await hooks.http.post("/hooks/partner", content=raw, headers=sent(raw))
    assert again.json()["duplicate"] is True  # the same bytes resent: one event
    named = await hooks.http.post(
        "/hooks/partner", content=raw, headers=sent(raw, **{"webhook-id": "msg_2Y"})
    )
    assert (named.status_code, named.json()["id"]) == (202, "msg_2Y")
    assert [e.source for e in await hooks.events()] == ["webhook://partner"] * 2


async def test_a_token_hook_takes_the_token_in_the_url_only(hooks: Hooks) -> None:
    body = {"msgId": "site1-00000001", "woNumber": "WO-1", "ts": "2026-03-02T08:00:00.000Z"}
    right = await hooks.http.post(f"/hooks/mes/{MES_TOKEN}", json=body)
    assert right.status_code == 202, right.text
    for path in (f"/hooks/mes/{MES_TOKEN}x", f"/hooks/mes/{MES_TOKEN[:-1]}", "/hooks/mes"):
        assert (await hooks.http.post(path, json=body)).status_code == 404
    assert len(await hooks.events()) == 1


async def test_allow_from_admits_only_listed_clients(hooks: Hooks) -> None:
    # The test client is 127.0.0.1; uvicorn (like most servers behind a proxy) takes the client
    # from X-Forwarded-For when the peer is a trusted proxy, loopback by default.
    reading = {"gate": 4, "open": True}
    direct = await hooks.http.post("/hooks/gate", json=reading)
    outside = await hooks.http.post(
        "/hooks/gate", json=reading, headers={"x-forwarded-for": "192.0.2.7"}
    )
    inside = await hooks.http.post(
        "/hooks/gate", json=reading, headers={"x-forwarded-for": "10.20.30.40"}
    )
    assert (direct.status_code, outside.status_code, inside.status_code) == (404, 404, 202)
    # A listed address is not a credential: the token is still needed.
    fenced = await hooks.http.post(
        "/hooks/fenced/wrong", json=reading, headers={"x-forwarded-for": "192.0.2.7"}
    )
    assert fenced.status_code == 404
    fenced = await hooks.http.post(
        "/hooks/fenced/fenced-token", json=reading, headers={"x-forwarded-for": "192.0.2.7"}
    )
    assert fenced.status_code == 202
    assert await hooks.metric("gate", "rejected", "address") == 2


# --- refusals ------------------------------------------------------------------------------


async def test_every_refused_request_gets_the_same_404_and_stores_nothing(hooks: Hooks) -> None:
    body = orjson.dumps(putaway())
    tampered = body.replace(b'"qty":20', b'"qty":2000')
    signature = "sha256=" + hmac.new(WMS_SECRET.encode(), body, hashlib.sha256).hexdigest()
    json_headers = {"content-type": "application/json"}
    refused = [
        # tampered body, the original's signature
        await hooks.http.post(
            "/hooks/wms", content=tampered, headers={**json_headers, "x-wms-signature": signature}
        ),
        await hooks.signed(body, secret="not-the-secret"),  # wrong secret
        await hooks.http.post("/hooks/wms", content=body, headers=json_headers),  # no header
        await hooks.signed(body, header="X-Other-Signature"),  # the wrong header
        await hooks.http.post(  # the digest without the prefix
            "/hooks/wms", content=body, headers={**json_headers, "x-wms-signature": signature[7:]}
        ),
        await hooks.signed(body, path="/hooks/wms/sometoken"),  # a token path at a signed hook
        await hooks.signed(body, path="/hooks/nope"),  # unknown system
        await hooks.signed(body, path="/hooks/erp"),  # a system of another kind (Odoo)
        await hooks.http.post("/hooks/mes/wrong-token", json={"msgId": "1"}),
    ]
    assert {r.status_code for r in refused} == {404}
    assert {r.content for r in refused} == {refused[0].content}  # not a byte tells them apart
    assert refused[0].json()["detail"] == "no such hook"
    assert await hooks.events() == []
    assert await hooks.metric("wms", "rejected", "signature") == 5
    assert await hooks.metric("wms", "rejected", "token") == 1
    # Names that are not webhook systems are never a label: the URL is the caller's text.
    assert await hooks.metric("", "rejected", "unknown_system") == 2
    assert await hooks.metric("nope", "rejected", "unknown_system") == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"{not json", "application/json", 400, "not JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object, not an array"),
        (orjson.dumps({"eventId": "E-1", "task": {}}), "application/json", 400, "task.taskId"),
        (orjson.dumps({"task": {"taskId": "PA-1"}}), "application/json", 400, "eventId: missing"),
        (orjson.dumps({"eventId": True, "task": {"taskId": "PA-1"}}), None, 400, "eventId"),
        (orjson.dumps({**putaway(), "occurredAt": "yesterday"}), None, 400, "occurredAt"),
        (orjson.dumps({**putaway(), "occurredAt": 1767225600}), None, 400, "occurredAt"),
        (orjson.dumps({**putaway(), "eventId": "x" * 300}), None, 400, "eventId"),
        (orjson.dumps(putaway()), "text/plain", 415, "application/json"),
        (orjson.dumps(putaway()), "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_a_verified_body_that_cannot_be_an_event_is_refused_saying_why(
    hooks: Hooks, body: bytes, content_type: str | None, status: int, words: str
) -> None:
    answer = await hooks.signed(body, **{"content-type": content_type or "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert words in answer.text
    assert await hooks.events() == []


async def test_a_json_suffix_media_type_is_json(hooks: Hooks) -> None:
    answer = await hooks.signed(
        putaway(), **{"content-type": "application/vnd.wms.event+json; charset=utf-8"}
    )
    assert answer.status_code == 202, answer.text


async def test_an_oversized_body_is_refused_before_it_is_read(hooks: Hooks) -> None:
    big = putaway(note="x" * MAX_BODY)
    assert (await hooks.signed(big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: found while reading
        raw = orjson.dumps(big)
        for start in range(0, len(raw), 1024):
            yield raw[start : start + 1024]

    streamed = await hooks.http.post(
        "/hooks/wms", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert await hooks.events() == []
    assert await hooks.metric("wms", "rejected", "too_large") == 1


async def test_an_unreadable_secret_is_a_503_the_sender_retries(hooks: Hooks) -> None:
    answer = await hooks.http.post("/hooks/broken/anything", json={"a": 1})
    assert answer.status_code == 503
    assert "FORGELINE_TEST_UNSET_TOKEN" not in answer.text  # the reference stays in the log
    assert await hooks.metric("broken", "failed", "secret_unavailable") == 1


async def test_the_odoo_route_keeps_its_path_and_its_answer(hooks: Hooks) -> None:
    payload = {"_model": "mrp.production", "_id": 7, "_action": "Notify(#1)", "id": 7}
    answer = await hooks.http.post("/hooks/odoo/erp/odoo-hook-token", json=payload)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "ok"
    assert (await hooks.http.post("/hooks/odoo/erp/wrong", json=payload)).status_code == 404


# --- Standard Webhooks ------------------------------------------------------------------------

SHIPMENT = {"shipment": "SH-1001", "status": "delivered", "dock": 4}


def official(msg_id: str, raw: bytes, *, sent: datetime | None = None) -> dict[str, str]:
    """Headers as the official ``standardwebhooks`` package signs them."""
    at = sent or datetime.now(tz=UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(STD_SECRET).sign(msg_id, at, raw.decode()),
    }


async def test_a_message_signed_by_the_official_package_becomes_one_event(
    hooks: Hooks,
) -> None:
    raw = orjson.dumps(SHIPMENT)
    first = await hooks.http.post("/hooks/carrier", content=raw, headers=official("msg_2Kx1", raw))
    assert first.status_code == 202, first.text
    assert first.json()["id"] == "msg_2Kx1" and first.json()["duplicate"] is False
    (event,) = await hooks.events()
    assert (event.id, event.source, event.type, event.subject) == (
        "msg_2Kx1",
        "webhook://carrier",
        "carrier.shipment.v1",
        "SH-1001",
    )
    assert event.data == SHIPMENT
    assert await hooks.metric("carrier", "accepted") == 1


async def test_a_replayed_webhook_id_is_one_event(hooks: Hooks) -> None:
    raw = orjson.dumps(SHIPMENT)
    first = await hooks.http.post("/hooks/carrier", content=raw, headers=official("msg_r", raw))
    # The sender's retry: the same id, a new timestamp and signature, even another body.
    later = datetime.now(tz=UTC) + timedelta(seconds=30)
    changed = orjson.dumps({**SHIPMENT, "status": "delivered-again"})
    again = await hooks.http.post(
        "/hooks/carrier", content=changed, headers=official("msg_r", changed, sent=later)
    )
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    (event,) = await hooks.events()
    assert event.data == SHIPMENT


async def test_a_v1a_signed_message_is_verified_with_the_public_key(hooks: Hooks) -> None:
    raw = orjson.dumps(SHIPMENT)
    headers = {
        "content-type": "application/json",
        **signature_headers("msg_v1a", raw, [STD_PRIVATE]),
    }
    answer = await hooks.http.post("/hooks/carrier", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    assert [e.id for e in await hooks.events()] == ["msg_v1a"]


async def test_stale_tampered_or_unsigned_standard_messages_get_the_same_404(
    hooks: Hooks,
) -> None:
    raw = orjson.dumps(SHIPMENT)
    now = datetime.now(tz=UTC)
    stale = official("msg_old", raw, sent=now - timedelta(seconds=301))
    # Well past the tolerance: a loaded machine may take seconds to send it (a stale one only
    # grows staler, but a future one would slip back inside the window).
    ahead = official("msg_new", raw, sent=now + timedelta(seconds=360))
    fresh = official("msg_ok", raw)
    other_private, _ = new_keypair()
    refused = [
        await hooks.http.post("/hooks/carrier", content=raw, headers=stale),
        await hooks.http.post("/hooks/carrier", content=raw, headers=ahead),
        await hooks.http.post("/hooks/carrier", content=raw + b" ", headers=fresh),
        await hooks.http.post(
            "/hooks/carrier", content=raw, headers={**fresh, "webhook-id": "msg_other"}
        ),
        await hooks.http.post(
            "/hooks/carrier",
            content=raw,
            headers={
                "content-type": "application/json",
                **signature_headers("msg_x", raw, [new_symmetric_secret(), other_private]),
            },
        ),
        await hooks.http.post(
            "/hooks/carrier", content=raw, headers={"content-type": "application/json"}
        ),
        await hooks.http.post("/hooks/carrier/some-token", content=raw, headers=fresh),
    ]
    assert {r.status_code for r in refused} == {404}
    assert {r.content for r in refused} == {refused[0].content}
    assert await hooks.events() == []
    assert await hooks.metric("carrier", "rejected", "timestamp") == 2
    assert await hooks.metric("carrier", "rejected", "signature") == 4
    assert await hooks.metric("carrier", "rejected", "token") == 1


async def test_a_value_that_is_not_a_key_is_the_hubs_fault(hooks: Hooks) -> None:
    raw = orjson.dumps(SHIPMENT)
    answer = await hooks.http.post(
        "/hooks/misconfigured", content=raw, headers=official("msg_1", raw)
    )
    assert answer.status_code == 503
    assert "s3cret" not in answer.text
    assert await hooks.metric("misconfigured", "failed", "secret_unavailable") == 1


# --- the simulated plant over HTTP ---------------------------------------------------------


async def test_the_simulated_wms_signed_callbacks_land_as_events(hooks: Hooks) -> None:
    callback = f"{hooks.url}/hooks/wms"
    async with (
        WmsServer(seed=1, callback_url=callback, callback_secret=WMS_SECRET) as wms,
        httpx.AsyncClient() as http,
    ):
        tasks = f"{wms.url}/api/v1/putaway-tasks"
        order = {"clientRef": "MO/1", "sku": "FG-1", "qty": 5, "fromLoc": "PROD-OUT-L1"}
        tid = (await http.post(tasks, json=order)).json()["taskId"]
        await http.post(f"{tasks}/{tid}/assign", json={"operator": "op-1"})
        await http.post(f"{tasks}/{tid}/start")
        assert (await http.post(f"{tasks}/{tid}/complete", json={})).status_code == 200
        await wms.callbacks.drain()
        assert [a.status for a in wms.callbacks.attempts] == [202]
        (sent,) = wms.callbacks.delivered()
    (event,) = await hooks.events()
    assert (event.id, event.subject, event.time) == (sent["eventId"], tid, sent["occurredAt"])
    assert event.data == sent and event.data["task"]["status"] == "DONE"


async def test_the_simulated_mes_posting_over_http_lands_every_message_once(
    hooks: Hooks,
) -> None:
    async with (
        MesServer(post_to=f"{hooks.url}/hooks/mes/{MES_TOKEN}", tick=0.0, seed=5) as mes,
        httpx.AsyncClient() as http,
    ):
        bom = [{"partNo": "RM-STEEL-2MM", "qtyPer": 2}]
        release = {"erpOrder": "WH/MO/00042", "partNo": "FG-BRACKET-01", "qty": 6, "bom": bom}
        wo = (await http.post(f"{mes.url}/api/workorders", json=release)).json()
        one = f"{mes.url}/api/workorders/{wo['woNumber']}"
        assert (await http.post(f"{one}/start", json={"batchSize": 2})).status_code == 202
        async with asyncio.timeout(10):
            while (await http.get(one)).json()["status"] != "COMPLETE":
                await asyncio.sleep(0.02)
        await mes.flush()
        sent = [message.body for message in mes.sent]
        assert mes.outbox.refused == []
    events = await hooks.events()
    assert [e.id for e in events] == [m["msgId"] for m in sent]
    assert {(e.type, e.source, e.subject) for e in events} == {
        ("mes.message.v1", "webhook://mes", wo["woNumber"])
    }
    assert [e.data for e in events] == sent
    assert [e.time for e in events] == [m["ts"] for m in sent]
    assert {m["msgType"] for m in sent} == {"STATE", "CONSUMPTION", "PRODUCTION"}


# --- the intake without HTTP ------------------------------------------------------------------


def _system(**fields: Any) -> WebhookSystem:
    return WebhookSystem.model_validate(
        {"type": "plant.thing.v1", "verify": {"token": "t0ken"}, **fields}
    )


def test_errors_name_the_senders_field_not_the_envelopes() -> None:
    spec = _system(id="meta.id", subject="wo", time="at")
    inbound = Inbound(
        orjson.dumps({"meta": {}, "wo": {"n": 1}, "at": "soon"}),
        {"content-type": "application/json"},
    )
    with pytest.raises(InvalidEvent) as caught:
        build_event("line", spec, inbound)
    assert [e["path"] for e in caught.value.errors] == ["meta.id", "wo", "at"]
    assert (
        caught.value.detail.startswith("meta.id: missing") and "(and 2 more)" in caught.value.detail
    )


def test_lists_are_indexed_and_the_default_source_is_a_uri() -> None:
    spec = _system(id="lines.1.id")
    inbound = Inbound(b'{"lines": [{"id": 1}, {"id": 22}]}', {"content-type": "application/json"})
    event = build_event("line 1/ä", spec, inbound, received="2026-01-01T00:00:00Z")
    assert (event.id, event.source, event.time) == (
        "22",
        "webhook://line%201%2F%C3%A4",
        "2026-01-01T00:00:00Z",
    )


async def test_the_intake_refuses_before_it_reads_and_never_publishes_a_refusal() -> None:
    published: list[Event] = []

    async def publish(events: Any) -> list[Appended]:
        published.extend(events)
        return [Appended(len(published), False)]

    intake = WebhookIntake({"line": _system()}, publish)
    junk = Inbound(b"\xff not json", {"content-type": "text/plain"}, "127.0.0.1", "wrong")
    with pytest.raises(NotFound):  # a stranger's bytes are never looked at
        await intake.take("line", junk)
    good = Inbound(b'{"a": 1}', {"content-type": "application/json"}, "127.0.0.1", "t0ken")
    accepted = await intake.take("line", good)
    assert accepted.position == 1 and published == [accepted.event]


# --- config ---------------------------------------------------------------------------------

_BASE = "systems:\n  mes:\n    kind: webhook\n    type: mes.message.v1\n"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("    verify: {}\n", r"systems\.mes\.verify", "exactly one scheme"),
        (
            "    verify: {token: env:T, hmac: {secret: env:S, header: X-Sig}}\n",
            r"systems\.mes\.verify",
            "found hmac and token",
        ),
        ("    verify: {none: true}\n", r"systems\.mes\.allow_from", "required with verify.none"),
        ("    verify: {none: false}\n", r"systems\.mes\.verify\.none", "True"),
        ("    id: msgId\n", r"systems\.mes\.verify", "Field required"),
        (
            "    verify: {token: env:T}\n    allow_from: [10.1.2.3/8]\n",
            r"systems\.mes\.allow_from",
            "host bits set",
        ),
        ("    verify: {token: env:T}\n    allow_from: []\n", r"systems\.mes\.allow_from", ""),
        ("    verify: {token: env:T}\n    id: a..b\n", r"systems\.mes\.id", "dotted path"),
        ("    verify: {token: env:T}\n    source: mes plant\n", r"systems\.mes\.source", "URI"),
        (
            "    verify: {hmac: {secret: env:S, header: X Sig}}\n",
            r"systems\.mes\.verify\.hmac\.header",
            "header name",
        ),
        ("    verify: {hmac: {header: X-Sig}}\n", r"systems\.mes\.verify\.hmac\.secret", ""),
        ("    verify: {token: ''}\n", r"systems\.mes\.verify\.token", "never empty"),
        ("    verify: {token: env:T}\n    url: x\n", r"systems\.mes\.url", "Extra inputs"),
        (
            "    id: msgId\n    verify: {standard: {secret: env:S}}\n",
            r"systems\.mes\.verify",
            "the event id is the signed webhook-id header: drop id",
        ),
        (
            "    verify: {standard: {secret: env:S}, hmac: {secret: env:S, header: X-Sig}}\n",
            r"systems\.mes\.verify",
            "found standard and hmac",
        ),
        (
            "    verify: {standard: {secret: env:S, tolerance: 0}}\n",
            r"systems\.mes\.verify\.standard\.tolerance",
            "greater than 0",
        ),
        (
            "    verify: {standard: {secret: env:S, tolerance: 86400}}\n",
            r"systems\.mes\.verify\.standard\.tolerance",
            "3600",
        ),
        (
            "    verify: {standard: {secret: plain-s3cret}}\n",
            r"systems\.mes\.verify\.standard\.secret",
            "starts with whsec_",
        ),
        (
            f"    verify: {{standard: {{secret: '{STD_PRIVATE}'}}}}\n",
            r"systems\.mes\.verify\.standard\.secret",
            "whpk_ public key, not the whsk_ private key",
        ),
    ],
)
def test_bad_webhook_systems_are_refused_on_load_with_the_path(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(_BASE + text)
    with pytest.raises(ConfigError, match=where) as caught:
        Settings.load(config_file=config, env={})
    assert words in str(caught.value)
    assert "s3cret" not in str(caught.value) and STD_PRIVATE[5:] not in str(caught.value)


def test_an_unversioned_type_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(_BASE.replace(".v1", "") + "    verify: {token: env:T}\n")
    with pytest.raises(ConfigError, match=r"systems\.mes\.type: .*versioned"):
        Settings.load(config_file=config, env={})


def test_a_webhook_system_loads_with_its_secrets_still_references(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        _BASE + "    id: msgId\n    verify:\n      hmac: {secret: env:MES_SECRET, header: X-S}\n"
        "    allow_from: [10.0.0.0/8, '2001:db8::/32']\n"
    )
    spec = Settings.load(config_file=config, env={}).systems["mes"]
    assert isinstance(spec, WebhookSystem)
    assert spec.verify.scheme == "hmac" and spec.verify.hmac is not None
    assert spec.verify.hmac.secret == ("env:MES_SECRET",)
    assert spec.event_source("mes") == "webhook://mes"
    assert spec.allows("10.9.8.7") and spec.allows("::ffff:10.9.8.7")
    assert spec.allows("2001:db8::1") and not spec.allows("11.0.0.1")
    assert not spec.allows(None) and not spec.allows("testclient")
