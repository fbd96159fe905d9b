"""Outbound webhook endpoints through a running hub, against a real receiver on loopback.

Signatures are checked as a receiver checks them: ``v1`` by the official ``standardwebhooks``
package, ``v1a`` by our verifier with the public key the API gives out. The receiver is on
127.0.0.1, which the egress policy refuses: these tests allow loopback with
``FORGELINE_EGRESS_ALLOW`` (as an operator allows a plant network), except those about the
refusal itself. Retry schedules are made short; time-dependent rules (rotation overlap) move
a clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as ReferenceRefused
from typer.testing import CliRunner, Result

from forgeline import Event, Hub, Settings, testing
from forgeline.api import app as app_module
from forgeline.api.webhooks import install_webhooks
from forgeline.cli_webhooks import app as webhooks_cli
from forgeline.cli_webhooks import since_time
from forgeline.deliver.retry import Pacer, next_attempt_at
from forgeline.deliver.webhooks import _Loaded
from forgeline.exceptions import Conflict, PermanentDeliveryError
from forgeline.route.subscription import SubscriptionSpec
from forgeline.security.access import Caller
from forgeline.security.secretbox import load_secretbox
from forgeline.store import Subscription
from forgeline.testing import Receiver, Reply
from forgeline.webhooks import signing
from forgeline.webhooks.egress import ALLOW_ENV, EgressPolicy
from forgeline.webhooks.endpoint_store import (
    Endpoint,
    EndpointSecret,
    EndpointStore,
    open_endpoint_store,
)
from forgeline.webhooks.endpoints import DEFAULT_SCHEDULE, Webhooks, endpoint_policy
from tests.services import require

TYPES = ["production.*"]
SCOPES = frozenset({"events:publish", "events:read", "webhooks:read", "webhooks:write"})
CALLERS = {
    "acme-admin": Caller("p-acme", "service", "acme", SCOPES),
    "globex-admin": Caller("p-globex", "service", "globex", SCOPES),
    "acme-reader": Caller("p-acme-r", "service", "acme", frozenset({"webhooks:read"})),
    "acme-integrator": Caller(
        "p-acme-i", "service", "acme", frozenset({"events:publish", "subscriptions:write"})
    ),
}


# -- the hub, with webhooks wired ------------------------------------------------------------


class Clock:
    """Real time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class WebhookHub(Hub):
    """A hub with ``webhooks`` wired as the lead wires it into ``Hub`` (opened before the
    dispatcher runs, handed to it, closed after it); ``egress`` replaces the policy."""

    egress: EgressPolicy | None = None
    clock: Clock = Clock()

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        egress = type(self).egress or EgressPolicy.from_settings(env=os.environ)
        box = load_secretbox(data_dir=settings.data_dir, env={})
        self.webhooks = Webhooks(
            open_endpoint_store(settings.store),
            box,
            egress,
            head=self.log.head,
            publish=self.publish,
            changed=self._changed,
            clock=type(self).clock,
        )
        self.dispatcher.webhooks = self.webhooks.sender

    async def _start(self) -> None:
        await self.webhooks.open()
        await super()._start()

    async def stop(self) -> None:
        await super().stop()
        await self.webhooks.aclose()


class RawReceiver(Receiver):
    """The test receiver, keeping each request's exact body with its headers: a signature is
    over the bytes, not over what JSON parsing makes of them."""

    def __init__(self, script: testing.Script) -> None:
        super().__init__(script)
        self.raw: list[tuple[str, dict[str, str], bytes]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.raw.append((request.path, dict(request.headers), await request.read()))
        return await super()._handle(request)


@dataclass
class Plant:
    hub: Hub
    url: str
    receiver: RawReceiver
    replies: dict[str, Callable[[dict[str, Any], int], Reply]] = field(default_factory=dict)

    @property
    def webhooks(self) -> Webhooks:
        found: Webhooks = self.hub.webhooks  # type: ignore[attr-defined]
        return found

    def client(self, who: str = "operator") -> httpx.AsyncClient:
        token = self.hub.admin_key if who == "operator" else who
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=20)


@asynccontextmanager
async def serving(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    allow_loopback: bool = True,
    egress: EgressPolicy | None = None,
) -> AsyncIterator[Plant]:
    if allow_loopback:
        monkeypatch.setenv(ALLOW_ENV, "127.0.0.0/8")
    else:
        monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr(WebhookHub, "egress", egress)
    monkeypatch.setattr(WebhookHub, "clock", Clock())
    monkeypatch.setattr(testing, "Hub", WebhookHub)
    create_app = app_module.create_app

    def with_webhooks(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        install_webhooks(app)  # does nothing once create_app installs them itself
        return app

    monkeypatch.setattr(app_module, "create_app", with_webhooks)
    replies: dict[str, Callable[[dict[str, Any], int], Reply]] = {}

    def script(path: str, body: dict[str, Any], seen: int) -> Reply:
        reply = replies.get(path)
        return reply(body, seen) if reply is not None else Reply(204)

    async def identify(credential: str) -> Caller | None:
        return CALLERS.get(credential)

    settings = Settings.load(env={}, data_dir=tmp_path / "hub")
    async with RawReceiver(script) as receiver, testing.running_hub(settings) as (hub, url):
        hub.identify = identify  # type: ignore[attr-defined]
        yield Plant(hub, url, receiver, replies)


@pytest.fixture
async def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Plant]:
    async with serving(tmp_path, monkeypatch) as served:
        yield served


# -- helpers ----------------------------------------------------------------------------------


async def create(
    client: httpx.AsyncClient, url: str, *, expect: int = 201, **fields: Any
) -> dict[str, Any]:
    answer = await client.post(
        "/v1/webhooks/endpoints", json={"url": url, "types": TYPES, **fields}
    )
    assert answer.status_code == expect, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def publish(client: httpx.AsyncClient, id: str, **data: Any) -> None:
    event = Event.new("production.completed.v1", "mes/line-1", {"qty": 1, **data}, subject=id)
    answer = await client.post("/v1/events", json=event.to_dict() | {"id": id})
    assert answer.status_code == 201, answer.text


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def messages(client: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    answer = await client.get(f"/v1/webhooks/endpoints/{endpoint}/attempts")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["messages"]
    return found


async def dead(client: httpx.AsyncClient, endpoint: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``count`` of the endpoint's messages are dead; they, newest first."""
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        found[:] = [m for m in await messages(client, endpoint) if m["state"] == "dead"]
        return len(found) >= count

    await eventually(check)
    return found


def received(plant: Plant, path: str) -> list[tuple[dict[str, str], bytes]]:
    return [(headers, body) for where, headers, body in plant.receiver.raw if where == path]


# -- signing ----------------------------------------------------------------------------------


async def test_a_minimal_endpoint_receives_events_signed_as_the_reference_library_checks(
    plant: Plant,
) -> None:
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/hook"))
        secret = made["secret"]
        assert secret.startswith("whsec_") and made["id"].startswith("ep_")
        assert made["enabled"] is True and made["signing"] == "v1"
        assert made["schedule"] == list(DEFAULT_SCHEDULE) and made["timeout"] == 15
        await publish(client, "MO-1")
        await plant.receiver.wait_for(1, path="/hook")
        # The secret was shown once: never again, in no answer.
        shown = await client.get(f"/v1/webhooks/endpoints/{made['id']}")
        listed = await client.get("/v1/webhooks/endpoints")
    ((headers, body),) = received(plant, "/hook")
    verified = Webhook(secret).verify(body, headers)
    assert verified["id"] == "MO-1" and verified["type"] == "production.completed.v1"
    assert verified["data"] == {"qty": 1}  # the CloudEvent itself is the body
    # Stable across retries (and releases), and unique as (source, id) is: two sources may
    # share an id.
    expected_id = signing.message_id(f"{verified['source']}\x1f{verified['id']}")
    assert headers["webhook-id"] == expected_id and expected_id.startswith("msg_")
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Forgeline-Webhooks/")
    with pytest.raises(ReferenceRefused):
        Webhook(signing.new_symmetric_secret()).verify(body, headers)
    with pytest.raises(ReferenceRefused):
        Webhook(secret).verify(body.replace(b'"qty":1', b'"qty":2'), headers)
    for answer in (shown, listed):
        assert answer.status_code == 200
        assert secret not in answer.text and "whsec_" not in answer.text
        assert "sealed" not in answer.text


async def test_a_v1a_endpoint_is_verified_with_the_public_key_from_the_api(plant: Plant) -> None:
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/v1a"), signing="v1a")
        assert "secret" not in made and made["public_key"].startswith("whpk_")
        keys = (await client.get(f"/v1/webhooks/endpoints/{made['id']}/public-key")).json()
        assert keys["public_key"] == made["public_key"]
        await publish(client, "MO-2")
        await plant.receiver.wait_for(1, path="/v1a")
        answers = [await client.get(f"/v1/webhooks/endpoints/{made['id']}")]
    ((headers, body),) = received(plant, "/v1a")
    assert headers["webhook-signature"].startswith("v1a,")
    assert signing.verify(headers, body, [keys["public_key"]]) == headers["webhook-id"]
    with pytest.raises(signing.WebhookVerificationError):
        signing.verify(headers, body + b" ", [keys["public_key"]])
    # The private key is nowhere: not whsk_, not the secret column's sealed form.
    assert "whsk_" not in answers[0].text and "whsk_" not in str(made)


async def test_a_v1_endpoint_has_no_public_key(plant: Plant) -> None:
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/x"))
        answer = await client.get(f"/v1/webhooks/endpoints/{made['id']}/public-key")
    assert answer.status_code == 409
    assert "v1a" in answer.json()["detail"]


def test_an_endpoint_held_in_memory_signs_with_the_secrets_in_force_and_none_when_all_expired() -> (
    None
):
    """The sender reads an endpoint's secrets once and keeps a signer for them: it must drop
    a secret at its expiry by itself, and refuse to sign (dead, not retried) when none is
    left."""
    old, new = signing.new_symmetric_secret(), signing.new_symmetric_secret()
    body = b'{"id":"MO-1"}'

    def headers(keys: list[tuple[str, float | None]], at: float) -> dict[str, str]:
        held = _Loaded(cast(Any, None), keys, loaded_at=0.0, failing_since=None)
        held.signer(0.0)  # made before the clock moved, as an endpoint kept from earlier
        return held.signer(at).headers("msg_1", body, now=at)

    both = headers([(old, 100.0), (new, None)], at=99.0)
    assert len(both["webhook-signature"].split()) == 2
    assert signing.verify(both, body, [old], now=99.0) == "msg_1"
    after = headers([(old, 100.0), (new, None)], at=100.0)
    assert len(after["webhook-signature"].split()) == 1
    assert signing.verify(after, body, [new], now=100.0) == "msg_1"
    with pytest.raises(signing.WebhookVerificationError):
        signing.verify(after, body, [old], now=100.0)
    with pytest.raises(PermanentDeliveryError, match="no signing secret"):
        headers([(old, 100.0)], at=100.0)


@pytest.mark.parametrize("held", [False, True], ids=["read-again", "held-in-memory"])
async def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new(
    plant: Plant, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    """Whether the endpoint is read again after the overlap (its cache lasts seconds) or is
    still held in memory (the sender must then notice the old secret's expiry itself)."""
    if held:
        monkeypatch.setattr(plant.webhooks.sender, "_cache_ttl", 3600.0)
    clock = WebhookHub.clock
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/rotating"))
        old = made["secret"]
        rotated = await client.post(
            f"/v1/webhooks/endpoints/{made['id']}/secret/rotate", json={"overlap_seconds": 60}
        )
        assert rotated.status_code == 200, rotated.text
        assert rotated.headers["cache-control"] == "no-store"
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old
        await publish(client, "during")
        await plant.receiver.wait_for(1, path="/rotating")
        clock.offset = 61.0  # the overlap is over
        await publish(client, "after")
        await plant.receiver.wait_for(2, path="/rotating")
        shown = (await client.get(f"/v1/webhooks/endpoints/{made['id']}")).json()
    (during_headers, during_body), (after_headers, after_body) = received(plant, "/rotating")
    assert len(during_headers["webhook-signature"].split()) == 2
    Webhook(old).verify(during_body, during_headers)
    Webhook(new).verify(during_body, during_headers)
    assert len(after_headers["webhook-signature"].split()) == 1
    Webhook(new).verify(after_body, after_headers)
    with pytest.raises(ReferenceRefused):
        Webhook(old).verify(after_body, after_headers)
    assert len(shown["secrets"]) == 1  # the expired secret is not listed as signing


# -- what an answer means ---------------------------------------------------------------------


async def test_failures_are_retried_on_the_schedule_and_logged_per_attempt(plant: Plant) -> None:
    long_body = "x" * 5000
    plant.replies["/flaky"] = lambda body, seen: Reply(500, body=long_body)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/flaky"), schedule=[0.3, 0.6])
        await publish(client, "MO-retry")
        (message,) = await dead(client, made["id"])
    times = [r.at for r in plant.receiver.received if r.path == "/flaky"]
    assert len(times) == 3  # the first attempt and one per delay of the schedule
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.3 s then 0.6 s, jittered down by up to 10%: never sooner (and not the 5 s default).
    assert 0.27 <= gaps[0] < 2.5
    assert 0.54 <= gaps[1] < 2.5
    assert gaps[1] > gaps[0]
    assert message["event_id"] == "MO-retry" and message["attempts"] == 3
    assert message["next_attempt_at"] is None
    history = message["history"]
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["status"] for a in history] == [500, 500, 500]
    assert all(a["duration_ms"] > 0 and a["time"] > 0 and a["error"] for a in history)
    assert all(a["response"] and len(a["response"]) <= 1024 for a in history)


async def test_a_waiting_retry_shows_its_next_attempt(plant: Plant) -> None:
    plant.replies["/later"] = lambda body, seen: Reply(503 if seen == 0 else 204)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/later"), schedule=[30.0])
        before = time.time()
        await publish(client, "MO-wait")

        async def retrying() -> bool:
            found = await messages(client, made["id"])
            return bool(found) and found[0]["state"] == "retrying"

        await eventually(retrying)
        (message,) = await messages(client, made["id"])
    assert before + 25 < message["next_attempt_at"] < before + 35
    assert message["history"][0]["status"] == 503


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(plant: Plant, status: int) -> None:
    plant.replies["/busy"] = lambda body, seen: Reply(
        status if seen == 0 else 204, headers={"Retry-After": "1"}
    )
    async with plant.client() as client:
        await create(client, plant.receiver.url("/busy"), schedule=[0.05, 5.0])
        await publish(client, "MO-busy")
        await plant.receiver.wait_for(1, path="/busy", timeout=10)
    first, second = (r.at for r in plant.receiver.received if r.path == "/busy")
    assert 0.95 <= second - first < 3.0  # the receiver's second, not the schedule's 0.05 s


async def test_a_redirect_is_a_failure_and_is_never_followed(plant: Plant) -> None:
    plant.replies["/moved"] = lambda body, seen: Reply(
        307, headers={"Location": plant.receiver.url("/internal-admin")}
    )
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/moved"), schedule=[0.05])
        await publish(client, "MO-redirect")
        (message,) = await dead(client, made["id"])
    assert [a["status"] for a in message["history"]] == [307, 307]  # retried, then dead
    assert "not followed" in message["history"][0]["error"]
    assert not received(plant, "/internal-admin")


async def test_410_disables_the_endpoint_and_announces_it(plant: Plant) -> None:
    plant.replies["/gone"] = lambda body, seen: Reply(410)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/gone"), description="partner ERP")
        await publish(client, "MO-gone")
        (message,) = await dead(client, made["id"])
        endpoint = (await client.get(f"/v1/webhooks/endpoints/{made['id']}")).json()
        events = (await client.get("/v1/events", params={"type": "webhook.*"})).json()["events"]
        # Disabled: what is published now is not sent.
        await publish(client, "MO-after")
        await asyncio.sleep(0.5)
        assert len(received(plant, "/gone")) == 1  # MO-gone's one attempt
        # Turned on again, it takes new events (and nothing of the disabled time).
        plant.replies["/gone"] = lambda body, seen: Reply(204)
        enabled = await client.post(f"/v1/webhooks/endpoints/{made['id']}/enable")
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        assert enabled.json()["disabled_reason"] is None
        await publish(client, "MO-back")
        await plant.receiver.wait_for(1, path="/gone")
    assert len(message["history"]) == 1 and message["history"][0]["status"] == 410
    assert endpoint["enabled"] is False and "410" in endpoint["disabled_reason"]
    assert endpoint["disabled_at"] is not None
    (announced,) = [e["event"] for e in events]
    assert announced["type"] == "webhook.endpoint.disabled.v1"
    assert announced["subject"] == made["id"]
    assert announced["data"]["trigger"] == "gone"
    assert announced["data"]["description"] == "partner ERP"
    assert plant.receiver.ids("/gone") == ["MO-back"]


async def test_webhook_delivery_abort_stops_that_message_only(plant: Plant) -> None:
    plant.replies["/picky"] = lambda body, seen: (
        Reply(400, headers={"Webhook-Delivery": "abort"})
        if body["subject"] == "MO-bad"
        else Reply(204)
    )
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/picky"), schedule=[0.05, 0.05])
        await publish(client, "MO-bad")
        (message,) = await dead(client, made["id"])
        await publish(client, "MO-good")
        await plant.receiver.wait_for(1, path="/picky")
        endpoint = (await client.get(f"/v1/webhooks/endpoints/{made['id']}")).json()
    assert message["attempts"] == 1 and "abort" in message["reason"]
    assert endpoint["enabled"] is True and endpoint["failing_since"] is None


async def test_an_endpoint_failing_for_the_whole_period_is_disabled(plant: Plant) -> None:
    plant.webhooks.sender.disable_after = 0.5
    plant.replies["/down"] = lambda body, seen: Reply(502)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/down"), schedule=[0.3, 0.3, 0.3])
        await publish(client, "MO-down")

        async def disabled() -> bool:
            found = await client.get(f"/v1/webhooks/endpoints/{made['id']}")
            return found.json()["enabled"] is False

        await eventually(disabled)
        endpoint = (await client.get(f"/v1/webhooks/endpoints/{made['id']}")).json()
        events = (await client.get("/v1/events", params={"type": "webhook.*"})).json()["events"]
    assert endpoint["failing_since"] is not None
    assert "failed" in endpoint["disabled_reason"]
    (announced,) = [e["event"] for e in events]
    assert announced["data"]["trigger"] == "failing"
    assert announced["data"]["failing_since"] is not None
    # Attempts that came between were each one failure of one streak: one announcement.
    assert len(received(plant, "/down")) >= 3


async def test_a_success_ends_the_failing_streak(plant: Plant) -> None:
    plant.replies["/blip"] = lambda body, seen: Reply(500 if seen == 0 else 204)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/blip"), schedule=[0.5])
        await publish(client, "MO-blip")

        async def failing() -> bool:
            found = await client.get(f"/v1/webhooks/endpoints/{made['id']}")
            return found.json()["failing_since"] is not None

        await eventually(failing)
        await plant.receiver.wait_for(1, path="/blip")

        async def healthy() -> bool:
            found = await client.get(f"/v1/webhooks/endpoints/{made['id']}")
            return found.json()["failing_since"] is None

        await eventually(healthy)


async def test_recover_resends_what_failed_during_an_outage(plant: Plant) -> None:
    outage = {"on": True}
    plant.replies["/erp"] = lambda body, seen: Reply(503 if outage["on"] else 204)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/erp"), schedule=[0.05])
        before = time.time() - 1
        for n in range(3):
            await publish(client, f"MO-out-{n}")
        await dead(client, made["id"], 3)
        outage["on"] = False
        answer = await client.post(
            f"/v1/webhooks/endpoints/{made['id']}/recover",
            json={"since": _iso(before)},
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["recovered"] == 3
        await plant.receiver.wait_for(3, path="/erp")
        # Nothing died after the time asked for: nothing more to recover.
        again = await client.post(
            f"/v1/webhooks/endpoints/{made['id']}/recover", json={"since": _iso(time.time())}
        )
        assert again.json()["recovered"] == 0
    assert sorted(plant.receiver.ids("/erp")) == ["MO-out-0", "MO-out-1", "MO-out-2"]


async def test_a_test_event_goes_to_that_endpoint_only_and_never_echoes_the_body(
    plant: Plant,
) -> None:
    leak = "internal stack trace with db password hunter2"
    plant.replies["/echo"] = lambda body, seen: Reply(500, body=leak)
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/echo"))
        other = await create(client, plant.receiver.url("/other"), types=["webhook.*"])
        failed = await client.post(f"/v1/webhooks/endpoints/{made['id']}/test")
        plant.replies["/echo"] = lambda body, seen: Reply(200, body=leak)
        passed = await client.post(f"/v1/webhooks/endpoints/{made['id']}/test")
        events = (await client.get("/v1/events", params={"type": "webhook.*"})).json()["events"]
        log = await messages(client, made["id"])
    assert failed.status_code == 200 and passed.status_code == 200
    assert failed.json()["delivered"] is False and failed.json()["status"] == 500
    assert passed.json()["delivered"] is True and passed.json()["status"] == 200
    assert passed.json()["duration_ms"] > 0
    for answer in (failed, passed):
        assert "hunter2" not in answer.text and leak not in answer.text
    sent = received(plant, "/echo")
    assert len(sent) == 2
    Webhook(made["secret"]).verify(sent[0][1], sent[0][0])
    assert b"webhook.test.v1" in sent[0][1]
    # Not in the log, not to any other endpoint, not in the endpoint's message log.
    assert events == [] and not received(plant, "/other") and other["id"]
    assert log == []


async def test_a_transform_makes_the_body(plant: Plant) -> None:
    transform = {"fields": {"order": "subject", "quantity": "data.qty"}}
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/mapped"), transform=transform)
        await publish(client, "MO-7", qty=12)

        async def arrived() -> bool:
            return bool(received(plant, "/mapped"))

        await eventually(arrived)  # (wait_for counts CloudEvent ids: this body has none)
    ((headers, body),) = received(plant, "/mapped")
    assert Webhook(made["secret"]).verify(body, headers) == {"order": "MO-7", "quantity": 12}
    assert headers["webhook-id"].startswith("msg_")


async def test_rate_limit_spaces_the_attempts(plant: Plant) -> None:
    async with plant.client() as client:
        await create(client, plant.receiver.url("/slow"), rate_limit=5)
        for n in range(6):
            await publish(client, f"MO-rate-{n}")
        await plant.receiver.wait_for(6, path="/slow", timeout=15)
    times = sorted(r.at for r in plant.receiver.received if r.path == "/slow")
    assert times[-1] - times[0] >= 0.9  # 5 per second: 6 take at least a second
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.1


# -- changing an endpoint ---------------------------------------------------------------------


async def test_patch_changes_what_it_names_and_keeps_the_rest(plant: Plant) -> None:
    async with plant.client() as client:
        made = await create(client, plant.receiver.url("/a"), metadata={"team": "erp"})
        path = f"/v1/webhooks/endpoints/{made['id']}"
        changed = await client.patch(
            path, json={"url": plant.receiver.url("/b"), "description": "moved"}
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["url"].endswith("/b") and body["description"] == "moved"
        assert body["metadata"] == {"team": "erp"} and body["types"] == TYPES
        assert body["schedule"] == list(DEFAULT_SCHEDULE)
        await publish(client, "MO-moved")
        await plant.receiver.wait_for(1, path="/b")
        off = await client.patch(path, json={"enabled": False})
        assert off.json()["enabled"] is False and off.json()["disabled_at"] is not None
        refused = await client.patch(path, json={"types": ["not a pattern!"]})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["path"].startswith("types")
        loop = await client.patch(path, json={"url": "http://169.254.169.254/latest"})
        assert loop.status_code == 422
        deleted = await client.delete(path)
        assert deleted.status_code == 204
        assert (await client.get(path)).status_code == 404
        subs = (await client.get("/v1/subscriptions")).json()["subscriptions"]
    assert subs == []  # the endpoint's subscription went with it
    assert not received(plant, "/a")


async def test_bad_endpoints_are_refused_with_the_field(plant: Plant) -> None:
    url = plant.receiver.url("/x")
    async with plant.client() as client:
        bad_filter = await create(client, url, expect=422, filter="data.qty >>> 1")
        bad_map = await create(client, url, expect=422, transform={"fields": {"a": {"x": 1}}})
        extra = await create(client, url, expect=422, secret="whsec_mine")
        no_types = await client.post("/v1/webhooks/endpoints", json={"url": url})
        listed = (await client.get("/v1/webhooks/endpoints")).json()["endpoints"]
    assert bad_filter["errors"][0]["path"] == "filter"
    assert bad_map["errors"][0]["path"].startswith("transform")
    assert extra["errors"][0]["path"].endswith("secret")
    assert no_types.status_code == 422
    assert listed == []  # nothing half-made


# -- SSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",  # a name that resolves to loopback
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "ftp://partner.example/hook",
        "http://user:pw@partner.example/hook",
    ],
)
async def test_internal_destinations_are_refused_at_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    async with (
        serving(tmp_path, monkeypatch, allow_loopback=False) as plant,
        plant.client() as client,
    ):
        refused = await create(client, url, expect=422)
        listed = (await client.get("/v1/webhooks/endpoints")).json()["endpoints"]
    assert refused["type"].endswith("egress-refused")
    (finding,) = refused["errors"]
    assert finding["path"] == "url" and finding["message"] == refused["detail"]
    assert finding["rule"] in {"address", "resolved", "ip_spelling", "scheme", "credentials"}
    assert listed == []


async def test_a_host_that_resolves_to_loopback_at_delivery_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"partner.example": ["93.184.215.14"]}  # public when the endpoint is made

    async def lookup(host: str, port: int, family: int) -> list[str]:
        return answers[host]

    egress = EgressPolicy(lookup=lookup)
    async with serving(tmp_path, monkeypatch, allow_loopback=False, egress=egress) as plant:
        url = f"http://partner.example:{plant.receiver.port}/rebound"
        async with plant.client() as client:
            made = await create(client, url)
            answers["partner.example"] = ["127.0.0.1"]  # DNS rebinding
            await publish(client, "MO-rebind")
            (message,) = await dead(client, made["id"])
    assert message["attempts"] == 1
    assert "egress policy" in message["reason"]
    assert not plant.receiver.raw


# -- tenants ----------------------------------------------------------------------------------


async def test_a_tenant_sees_and_changes_only_its_own_endpoints(plant: Plant) -> None:
    async with (
        plant.client("acme-admin") as acme,
        plant.client("globex-admin") as globex,
        plant.client("acme-reader") as reader,
    ):
        made = await create(acme, plant.receiver.url("/acme"))
        assert made["tenant"] == "acme"
        path = f"/v1/webhooks/endpoints/{made['id']}"
        for method, suffix, body in [
            ("GET", "", None),
            ("PATCH", "", {"description": "mine now"}),
            ("DELETE", "", None),
            ("GET", "/attempts", None),
            ("GET", "/public-key", None),
            ("POST", "/secret/rotate", {}),
            ("POST", "/recover", {"since": "2020-01-01T00:00:00Z"}),
            ("POST", "/enable", None),
            ("POST", "/test", None),
        ]:
            answer = await globex.request(method, path + suffix, json=body)
            assert answer.status_code == 404, (method, suffix, answer.text)
        assert (await globex.get("/v1/webhooks/endpoints")).json()["endpoints"] == []
        mine = (await acme.get("/v1/webhooks/endpoints")).json()["endpoints"]
        assert [e["id"] for e in mine] == [made["id"]]
        # A tenant cannot put its endpoint in another tenant.
        refused = await create(acme, plant.receiver.url("/x"), expect=422, tenant="globex")
        assert refused["errors"][0]["path"] == "tenant"
        # Read scope reads, and writes nothing.
        assert (await reader.get(path)).status_code == 200
        assert (await reader.post(path + "/test")).status_code == 403
        # Each tenant's endpoint gets that tenant's events only.
        await publish(globex, "globex-1")
        await publish(acme, "acme-1")
        await plant.receiver.wait_for(1, path="/acme")
    assert plant.receiver.ids("/acme") == ["acme-1"]
    assert not received(plant, "/x")


async def test_another_subscription_cannot_sign_with_an_endpoints_secret(plant: Plant) -> None:
    """A subscription made through /v1/subscriptions naming someone's endpoint: its events
    must not arrive signed with that endpoint's secret."""
    async with plant.client() as client, plant.client("acme-integrator") as acme:
        made = await create(client, plant.receiver.url("/victim"), types=["nothing.*"])
        sneaky = {
            "name": "sneaky",
            "types": TYPES,
            "sink": {"webhook": {"endpoint": made["id"]}},
            "policy": {"retry": {"max_attempts": 1}},
        }
        answer = await acme.post("/v1/subscriptions", json=sneaky)
        if answer.status_code == 201:  # (the subscriptions API may come to refuse the sink)
            await publish(acme, "forged")
            dead_letters: list[dict[str, Any]] = []

            async def refused() -> bool:
                found = await client.get("/v1/deadletters")
                dead_letters[:] = found.json()["deadletters"]
                return bool(dead_letters)

            await eventually(refused)
            assert [d["event_id"] for d in dead_letters] == ["forged"]
            assert "another subscription" in dead_letters[0]["last_error"]
        else:
            assert answer.status_code == 422, answer.text
    assert not plant.receiver.raw


# -- the schedule and the pacing, without a hub ----------------------------------------------


def test_the_default_schedule_is_eight_attempts_then_dead() -> None:
    policy = endpoint_policy().retry.model_copy(update={"jitter": 0.0})
    now = 1_000_000.0
    delays = []
    for failures in range(1, 9):
        due = next_attempt_at(policy, failures=failures, round_started_at=now, now=now)
        delays.append(None if due is None else due - now)
    assert delays == [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0, None]
    # The whole schedule fits in the delivery's age limit, even late.
    late = next_attempt_at(policy, failures=7, round_started_at=now - 80_000, now=now)
    assert late == now + 36000.0


def test_retry_after_wins_over_the_schedule_up_to_its_longest_delay() -> None:
    policy = endpoint_policy(schedule=[1.0, 60.0]).retry.model_copy(update={"jitter": 0.0})
    asked = next_attempt_at(policy, failures=1, round_started_at=0.0, now=0.0, retry_after=30.0)
    assert asked == 30.0
    capped = next_attempt_at(policy, failures=1, round_started_at=0.0, now=0.0, retry_after=1e9)
    assert capped == 60.0


def test_the_pacer_spaces_attempts_at_the_rate() -> None:
    pacer = Pacer()
    assert pacer.room("sub", None, 0.0) > 1000  # no limit
    assert pacer.room("sub", 5.0, 0.0) == 1  # a tenth of a second's worth, at least one
    pacer.take("sub", 5.0, 1, 0.0)
    assert pacer.room("sub", 5.0, 0.1) == 0
    assert pacer.next_free("sub", 5.0, 0.1) == pytest.approx(0.2)
    assert pacer.room("sub", 5.0, 0.2) == 1
    pacer.take("fast", 100.0, 10, 0.0)
    assert pacer.room("fast", 100.0, 0.05) == 5
    assert pacer.next_free("idle", 5.0, 0.0) is None


# -- the command line -------------------------------------------------------------------------


async def cli(plant: Plant, *args: str) -> Result:
    """A ``forgeline webhooks`` command in a thread: the hub it calls runs on this loop."""
    env = {"FORGELINE_URL": plant.url, "FORGELINE_TOKEN": plant.hub.admin_key, "COLUMNS": "250"}
    return await asyncio.to_thread(CliRunner().invoke, webhooks_cli, list(args), env=env)


async def test_the_cli_manages_an_endpoint_end_to_end(plant: Plant) -> None:
    created = await cli(plant, "create", plant.receiver.url("/cli"), "-t", "production.*")
    assert created.exit_code == 0, created.output
    endpoint = created.output.split()[1]
    secret = next(word for word in created.output.split() if word.startswith("whsec_"))
    listed = await cli(plant, "list")
    assert endpoint in listed.output and secret not in listed.output
    tested = await cli(plant, "test", endpoint)
    assert tested.exit_code == 0 and "delivered" in tested.output
    ((headers, body),) = received(plant, "/cli")
    Webhook(secret).verify(body, headers)
    plant.replies["/cli"] = lambda body, seen: Reply(500, body="no")
    failing = await cli(plant, "test", endpoint)
    assert failing.exit_code == 1 and "500" in failing.output and "no" not in failing.output.split()
    rotated = await cli(plant, "rotate", endpoint, "--overlap", "60")
    assert rotated.exit_code == 0 and "whsec_" in rotated.output and secret not in rotated.output
    shown = await cli(plant, "show", endpoint)
    assert shown.exit_code == 0 and '"id": "' + endpoint in shown.output
    recovered = await cli(plant, "recover", endpoint, "--since", "1h")
    assert recovered.exit_code == 0 and "recovering 0" in recovered.output
    history = await cli(plant, "attempts", endpoint)
    assert history.exit_code == 0
    missing = await cli(plant, "show", "ep_nope")
    assert missing.exit_code == 1 and "Not found" in missing.output
    bad = await cli(plant, "recover", endpoint, "--since", "yesterday")
    assert bad.exit_code == 2


def test_since_takes_an_age_or_an_iso_time() -> None:
    import datetime as dt

    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
    assert since_time("2h", now) == "2026-11-27T10:00:00+00:00"
    assert since_time("2026-11-27T08:00:00", now) == "2026-11-27T08:00:00+00:00"
    assert since_time("2026-11-27T08:00:00Z", now) == "2026-11-27T08:00:00+00:00"


# -- the store, on both engines ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def endpoint_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EndpointStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        async with open_endpoint_store(url) as store:
            yield store
        return
    require("postgres")
    import asyncpg  # type: ignore[import-untyped]

    schema = f"webhooks_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
    url = f"postgresql://root@127.0.0.1:5432/test?schema={schema}"
    try:
        async with open_endpoint_store(url) as store:
            yield store
    finally:
        conn = await asyncpg.connect("postgresql://root@127.0.0.1:5432/test")
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def _made(endpoint_id: str, now: float) -> tuple[Endpoint, EndpointSecret, Subscription]:
    spec = SubscriptionSpec.model_validate(
        {
            "name": f"webhook-{endpoint_id}",
            "types": TYPES,
            "sink": {"webhook": {"endpoint": endpoint_id}},
            "tenant": "acme",
            "policy": endpoint_policy().model_dump(),
        }
    )
    sub = Subscription(f"sub_{endpoint_id[3:]}", spec, now, now, 0)
    secret = EndpointSecret(f"whk_{endpoint_id[3:]}", endpoint_id, "v1", "sealed-1", None, now)
    endpoint = Endpoint(endpoint_id, "acme", sub, "https://a.example/h", "", {"k": 1}, now, now)
    return endpoint, secret, sub


async def test_the_endpoint_store_keeps_endpoint_and_subscription_in_step(
    endpoint_store: EndpointStore,
) -> None:
    now = time.time()
    endpoint, secret, sub = _made("ep_01JABCDEFGHJKMNPQRSTVWXYZ0", now)
    await endpoint_store.create(endpoint, secret, sub)
    with pytest.raises(Conflict):  # the subscription's name is the endpoint's
        await endpoint_store.create(endpoint, secret, sub)
    found = await endpoint_store.get(endpoint.id)
    assert found is not None and found.enabled and found.metadata == {"k": 1}
    assert found.subscription.spec == sub.spec and [s.id for s in found.secrets] == [secret.id]
    assert await endpoint_store.page("globex", "", 10) == []
    assert [e.id for e in await endpoint_store.page(None, "", 10)] == [endpoint.id]
    # Disabling is announced once: the second caller learns it was done already.
    off = await endpoint_store.set_enabled(endpoint.id, False, "HTTP 410", now + 1)
    assert off is not None and not off.enabled and off.disabled_reason == "HTTP 410"
    assert await endpoint_store.set_enabled(endpoint.id, False, "again", now + 2) is None
    # A save that does not name enabled keeps the stored flag, whatever spec it was read with.
    saved = await endpoint_store.save(
        endpoint.id,
        url="https://b.example/h",
        description="d",
        metadata={},
        spec=sub.spec,
        enabled=None,
        reason=None,
        now=now + 3,
    )
    assert saved is not None and not saved.enabled and saved.url == "https://b.example/h"
    assert saved.disabled_at == now + 1
    # The failing streak starts once and ends with a success.
    assert await endpoint_store.mark_failing(endpoint.id, now + 4) == now + 4
    assert await endpoint_store.mark_failing(endpoint.id, now + 5) == now + 4
    await endpoint_store.mark_healthy(endpoint.id)
    back = await endpoint_store.set_enabled(endpoint.id, True, None, now + 6)
    assert back is not None and back.enabled and back.disabled_at is None
    assert back.failing_since is None
    # Rotation: the old secret's life is cut to the overlap, never lengthened.
    newer = EndpointSecret(f"whk_2{endpoint.id[4:]}", endpoint.id, "v1a", "s2", "whpk_x", now + 7)
    assert await endpoint_store.rotate(endpoint.id, newer, now + 100)
    rotated = await endpoint_store.get(endpoint.id)
    assert rotated is not None
    assert [(s.id, s.expires_at) for s in rotated.secrets] == [
        (secret.id, now + 100),
        (newer.id, None),
    ]
    assert [s.id for s in rotated.signing(now + 101)] == [newer.id]
    assert await endpoint_store.get("ep_missing") is None
    assert await endpoint_store.messages(sub.id, before=2**62, limit=10, state=None) == []


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
