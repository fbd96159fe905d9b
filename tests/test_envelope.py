"""The envelope against the CloudEvents spec and the official SDK, both ways."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from forgeline import Event, Hub, InvalidEvent
from forgeline.envelope import dump_batch, parse_batch, parse_structured

VALID: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01JDEMO",
    "source": "mes/line-1",
    "type": "production.completed.v1",
    "subject": "MO/00042",
    "time": "2026-11-27T08:15:00.5Z",
    "datacontenttype": "application/json",
    "data": {"sku": "FG-100", "qty": 12, "uom": "Units"},
    "partitionkey": "MO/00042",
    "correlationid": "SO/0007",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "tenant": "acme",
}


def test_new_event_gets_a_ulid_and_a_time() -> None:
    event = Event.new("lot.released.v1", "qms/lab", {"lot": "L-1"}, subject="LOT/L-1")
    assert len(event.id) == 26
    assert event.time is not None
    assert event.partitionkey == "LOT/L-1"  # defaults to the subject


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"id": None}, "id"),
        ({"source": "has space"}, "source"),
        ({"source": None}, "source"),
        ({"type": "nodots"}, "type"),
        ({"type": "production..completed"}, "type"),
        ({"type": 7}, "type"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-11-27T08:15:00"}, "time"),  # no time zone
        ({"BadExt": "x"}, "BadExt"),
        ({"thisextensionnameistoolong": "x"}, "thisextensionnameistoolong"),
        ({"traceparent": "nope"}, "traceparent"),
        ({"tenant": 3}, "tenant"),
        ({"subject": "LOT/L-1\x00L-2"}, "subject"),  # would cut an ordering key short
        ({"partitionkey": "a\nb"}, "partitionkey"),
        ({"data_base64": "AA=="}, "data_base64"),  # together with data
    ],
)
def test_invalid_attributes_are_named(change: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict({**VALID, **change})
    assert path in [e["path"] for e in info.value.errors]


def test_every_problem_of_a_batch_is_reported_with_its_index() -> None:
    body = orjson.dumps([VALID, {**VALID, "type": "x"}, {**VALID, "source": ""}])
    with pytest.raises(InvalidEvent) as info:
        parse_batch(body, max_events=10)
    assert [e["path"] for e in info.value.errors] == ["[1].type", "[2].source"]


def test_malformed_json_is_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="malformed JSON"):
        parse_structured(b'{"specversion": "1.0",')


def test_round_trip_keeps_every_attribute() -> None:
    event = Event.from_dict(VALID)
    assert orjson.loads(event.to_json()) == VALID
    assert parse_batch(dump_batch([event, event]), max_events=2) == [event, event]


def test_our_events_parse_with_the_official_sdk() -> None:
    event = Event.from_dict(VALID)
    parsed = ce_http.from_structured_event(
        ce_http.HTTPMessage({"content-type": "application/cloudevents+json"}, event.to_json())
    )
    assert parsed.get_id() == VALID["id"]
    assert parsed.get_source() == VALID["source"]
    assert parsed.get_type() == VALID["type"]
    assert parsed.get_subject() == VALID["subject"]
    assert parsed.get_extension("partitionkey") == "MO/00042"
    assert parsed.get_extension("tenant") == "acme"
    assert parsed.get_data() == VALID["data"]
    # and each element of our batch format too
    for item in orjson.loads(dump_batch([event, Event.new("a.b.v1", "x")])):
        assert JSONFormat().read(None, orjson.dumps(item)).get_specversion() == "1.0"


def _sdk_event() -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": "quality.inspection.completed.v1",
            "source": "/qms/lab-2",
            "subject": "LOT/L-77",
            "tenant": "acme",
        },
        data={"result": "pass", "lot": "L-77"},
    )


async def test_sdk_structured_events_are_accepted(client: httpx.AsyncClient, hub: Hub) -> None:
    sdk_event = _sdk_event()
    message = ce_http.to_structured_event(sdk_event)
    response = await client.post("/v1/events", content=message.body, headers=message.headers)
    assert response.status_code == 201, response.text
    record = await hub.log.get("/qms/lab-2", sdk_event.get_id())
    assert record is not None
    assert record.event.data == {"result": "pass", "lot": "L-77"}
    assert record.event.subject == "LOT/L-77"
    assert record.event.tenant == "acme"


async def test_sdk_binary_events_are_accepted(client: httpx.AsyncClient, hub: Hub) -> None:
    sdk_event = _sdk_event()
    message = ce_http.to_binary_event(sdk_event)
    response = await client.post("/v1/events", content=message.body, headers=message.headers)
    assert response.status_code == 201, response.text
    record = await hub.log.get("/qms/lab-2", sdk_event.get_id())
    assert record is not None
    assert record.event.data == {"result": "pass", "lot": "L-77"}
    assert record.event.type == "quality.inspection.completed.v1"
