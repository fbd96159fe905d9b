"""The HTTP API: bad input is refused with a problem and leaves nothing behind."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest

from forgeline import Hub, Settings
from forgeline.testing import running_hub

BATCH = "application/cloudevents-batch+json"


def event(i: int = 0, **change: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ev-{i}",
        "source": "mes/line-1",
        "type": "production.completed.v1",
        "subject": f"MO/{i:05d}",
        "data": {"qty": i},
        **change,
    }


async def assert_problem(response: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:forgeline:problem:")
    assert words in (body["detail"] + str(body.get("errors", ""))), body
    return body


async def stored(hub: Hub) -> int:
    return len(await hub.log.read(0))


async def test_publish_one_and_a_batch_answers_positions(client: httpx.AsyncClient) -> None:
    one = await client.post(
        "/v1/events",
        content=orjson.dumps(event(1)),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert one.status_code == 201
    assert one.json()["events"] == [
        {"id": "ev-1", "source": "mes/line-1", "position": 1, "duplicate": False}
    ]
    batch = await client.post(
        "/v1/events", content=orjson.dumps([event(1), event(2)]), headers={"content-type": BATCH}
    )
    assert batch.status_code == 201
    assert [(e["position"], e["duplicate"]) for e in batch.json()["events"]] == [
        (1, True),
        (2, False),
    ]
    again = await client.post("/v1/events", json=event(2))
    assert again.status_code == 200
    assert again.json()["events"][0]["duplicate"] is True


async def test_get_event_returns_structured_cloudevent(client: httpx.AsyncClient) -> None:
    await client.post("/v1/events", json=event(5))
    response = await client.get("/v1/events/ev-5")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/cloudevents+json"
    assert response.json() == event(5)
    await assert_problem(await client.get("/v1/events/nope"), 404, "no event")


async def test_list_events_pages_and_filters(client: httpx.AsyncClient) -> None:
    events = [event(i) for i in range(30)] + [event(100, type="quality.hold.placed.v1")]
    await client.post("/v1/events", json=events)
    page = (await client.get("/v1/events", params={"limit": 10})).json()
    assert [e["position"] for e in page["events"]] == list(range(1, 11))
    rest = (await client.get("/v1/events", params={"after": page["next_after"]})).json()
    assert len(rest["events"]) == 21
    quality = (await client.get("/v1/events", params={"type": "quality.*"})).json()
    assert [e["event"]["id"] for e in quality["events"]] == ["ev-100"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"specversion": "1.0", "id": ', "application/json", 400, "malformed JSON"),
        (orjson.dumps(event()), "text/plain", 415, "not accepted"),
        (orjson.dumps(event()), "", 415, "not accepted"),
        (
            orjson.dumps({k: v for k, v in event().items() if k != "source"}),
            "application/json",
            400,
            "source",
        ),
        (orjson.dumps(event(type="Not A Name")), "application/json", 400, "dotted name"),
        (orjson.dumps(event(source="has spaces")), "application/json", 400, "URI-reference"),
        (orjson.dumps([event(1), event(2, id="")]), BATCH, 400, "[1].id"),
        (orjson.dumps([]), BATCH, 400, "at least one"),
        (orjson.dumps({"not": "a list"}), BATCH, 400, "JSON array"),
        (b"[1, 2]", "application/json", 400, "expected an object"),
    ],
)
async def test_bad_events_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, hub: Hub, body: bytes, content_type: str, status: int, words: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/events", content=body, headers=headers)
    await assert_problem(response, status, words)
    assert await stored(hub) == 0


async def test_oversized_body_and_batch_are_refused(tmp_path: Any) -> None:
    settings = Settings.load(env={}, data_dir=tmp_path / "hub")
    settings = replace(settings, max_body_bytes=4096, max_batch=10)
    async with running_hub(settings) as (hub, url):
        auth = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=url, headers=auth) as client:
            big = event(data={"blob": "x" * 5000})
            await assert_problem(await client.post("/v1/events", json=big), 413, "over 4096")

            async def chunks() -> Any:  # no Content-Length: counted while streaming
                yield orjson.dumps(big)

            streamed = await client.post(
                "/v1/events", content=chunks(), headers={"content-type": "application/json"}
            )
            await assert_problem(streamed, 413, "over 4096")
            too_many = [event(i) for i in range(11)]
            await assert_problem(await client.post("/v1/events", json=too_many), 413, "at most 10")
            assert await stored(hub) == 0


async def test_concurrent_publishes_of_one_event_store_it_once(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    responses = await asyncio.gather(*(client.post("/v1/events", json=event(9)) for _ in range(25)))
    assert {r.json()["events"][0]["position"] for r in responses} == {1}
    assert sorted(r.status_code for r in responses) == [200] * 24 + [201]
    assert await stored(hub) == 1


async def test_v1_needs_the_admin_key(served: tuple[Hub, str]) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url) as anonymous:
        await assert_problem(await anonymous.get("/v1/subscriptions"), 401, "Authorization")
        wrong = {"Authorization": "Bearer flk_wrong"}
        await assert_problem(
            await anonymous.post("/v1/events", json=event(), headers=wrong), 401, "unknown"
        )
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).json() == {"status": "ready"}
        assert b"forgeline_events_ingested" in (await anonymous.get("/metrics")).content


async def test_admin_key_file_is_private(hub: Hub) -> None:
    key_file = hub.settings.data_dir / "admin.key"
    assert key_file.read_text().strip() == hub.admin_key
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_openapi_is_3_1_and_documents_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    for path in ("/v1/events", "/v1/events/{event_id}", "/v1/subscriptions", "/v1/deadletters"):
        assert path in spec["paths"]


async def test_minimal_subscription_is_enough(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/subscriptions",
        json={"name": "erp", "types": ["production.*"], "sink": {"url": "http://127.0.0.1:9/x"}},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["policy"]["ordering"] == "none"
    assert body["id"].startswith("sub_")
    assert (await client.get(f"/v1/subscriptions/{body['id']}")).json()["name"] == "erp"
    assert (await client.get("/v1/subscriptions/erp")).json()["id"] == body["id"]
    duplicate = await client.post(
        "/v1/subscriptions",
        json={"name": "erp", "types": ["x.*"], "sink": {"url": "http://127.0.0.1:9/x"}},
    )
    await assert_problem(duplicate, 409, "exists")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"types": ["production completed"]}, "type pattern"),
        ({"types": []}, "at least 1"),
        ({"sink": {"url": "ftp://plant/drop"}}, "http"),
        ({"sink": {"url": "not a url"}}, "http"),
        ({"filter": "data.qty > 5 and sorce == 'x'"}, "unknown field 'sorce'"),
        ({"filter": "__import__('os')"}, "not allowed"),
        ({"policy": {"ordering": "sometimes"}}, "ordering"),
        ({"policy": {"retries": 3}}, "retries"),
        ({"sink": {"publish": {"type": "production.derived.v1"}}}, "loop"),
    ],
)
async def test_bad_subscriptions_are_refused_when_created(
    client: httpx.AsyncClient, hub: Hub, change: dict[str, Any], words: str
) -> None:
    spec = {"name": "bad", "types": ["production.*"], "sink": {"url": "http://127.0.0.1:9/"}}
    response = await client.post("/v1/subscriptions", json={**spec, **change})
    await assert_problem(response, 422, words)
    assert await hub.store.list_subscriptions() == []


async def test_sink_credentials_never_come_back(client: httpx.AsyncClient) -> None:
    spec = {
        "name": "secure",
        "types": ["a.*"],
        "sink": {"url": "https://erp.example/hook", "auth": {"type": "bearer", "token": "s3cret"}},
    }
    created = await client.post("/v1/subscriptions", json=spec)
    listed = await client.get("/v1/subscriptions")
    for response in (created, listed):
        assert "s3cret" not in response.text
    assert created.json()["sink"]["auth"] == {"type": "bearer", "configured": True}


async def test_the_event_catalog_is_published(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/catalog")).json()["event_types"]
    types = {entry["type"] for entry in listing}
    assert {"production.completed.v1", "quality.hold.placed.v1"} <= types
    schema = await client.get("/v1/catalog/production.completed.v1")
    assert schema.headers["content-type"] == "application/schema+json"
    assert schema.json()["$id"].endswith("/production.completed.v1.json")
    missing = await client.get("/v1/catalog/no.such.type.v1")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    # /asyncapi.json is open, like /openapi.json; the catalog itself needs the key.
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        document = (await anonymous.get("/asyncapi.json")).json()
        assert (await anonymous.get("/v1/catalog")).status_code == 401
    assert document["asyncapi"] == "3.0.0"
    assert len(document["channels"]) == len(types)  # one channel per event type
