"""The MQTT connector without a broker: topic filters, templates, messages to events, the
event-id rule under QoS 1 redelivery, quarantine reasons, and the config shapes."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from forgeline.connectors.mqtt import (
    QUARANTINE_TYPE,
    Delivery,
    Ingest,
    MqttPublishTarget,
    MqttRejected,
    MqttSystem,
    MqttTarget,
    MqttTransientError,
    TopicFilter,
    TopicRule,
    shared,
)
from forgeline.connectors.mqtt.errors import classify_puback
from forgeline.envelope import Event
from forgeline.exceptions import ConfigError, PermanentDeliveryError, TransientDeliveryError
from forgeline.log.memory import MemoryLog

PRODUCTION = TopicRule(
    "plant/+/mes/+/production",
    "production.completed.v1",
    source="mes://{1}/{2}",
    subject="{data.woNumber}",
)


def delivery(
    payload: Any, *, topic: str = "plant/s1/mes/L1/production", mid: int = 1, dup: bool = False
) -> Delivery:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return Delivery(topic=topic, payload=body, mid=mid, qos=1, dup=dup)


def ingest(*rules: TopicRule) -> Ingest:
    return Ingest(
        rules or (PRODUCTION,), session="client-1", quarantine_source="mqtt://broker:1883"
    )


# -- filters and templates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "topic", "captures"),
    [
        ("plant/+/mes/production", "plant/s1/mes/production", ("s1",)),
        ("plant/+/mes/production", "plant/s1/mes/other", None),
        ("plant/+/mes/production", "plant//mes/production", ("",)),
        ("plant/#", "plant/s1/mes/L1", ("s1/mes/L1",)),
        ("plant/#", "plant", ("",)),  # '#' also matches the parent level
        ("#", "a/b", ("a/b",)),
        ("+/status", "$SYS/status", None),  # wildcards never match a leading '$' level
        ("a/+/c/#", "a/b/c/d/e", ("b", "d/e")),
        ("exact/topic", "exact/topic", ()),
        ("a.b/+", "aXb/c", None),  # levels are literal text, not regular expressions
    ],
)
def test_topic_filter_matches_and_captures(
    pattern: str, topic: str, captures: tuple[str, ...] | None
) -> None:
    assert TopicFilter(pattern).match(topic) == captures


@pytest.mark.parametrize("pattern", ["a/#/b", "a/b+", "a#", "", "$share/g/a"])
def test_invalid_filters_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigError):
        TopicFilter(pattern)


def test_shared_subscription_filter() -> None:
    assert shared("plant/+/x", "workers") == "$share/workers/plant/+/x"
    assert shared("plant/+/x", None) == "plant/+/x"
    with pytest.raises(ConfigError):
        shared("a", "bad/group")


@pytest.mark.parametrize(
    ("source", "subject", "message"),
    [
        ("mes://{3}", None, "unknown placeholder {3}"),  # the filter has two wildcards
        ("mes://{line}", None, "unknown placeholder {line}"),
        ("mes://{1}", "{data.}", "unknown placeholder {data.}"),
        ("mes://{1", None, "unbalanced"),
    ],
)
def test_templates_are_checked_when_built(source: str, subject: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TopicRule("plant/+/mes/+/production", "production.completed.v1", source, subject)


# -- messages to events ----------------------------------------------------------------------


def test_a_message_becomes_an_event_with_templates() -> None:
    event, derived = ingest().event(delivery({"woNumber": "WO-7", "qtyGood": 5}))
    assert derived
    assert event.type == "production.completed.v1"
    assert event.source == "mes://s1/L1"
    assert event.subject == "WO-7"
    assert event.data == {"woNumber": "WO-7", "qtyGood": 5}
    assert event.extensions["mqtttopic"] == "plant/s1/mes/L1/production"
    assert event.id.startswith("mqtt-")


def test_topic_levels_are_percent_encoded_in_the_source() -> None:
    event, _ = ingest().event(delivery({"woNumber": "W"}, topic="plant/site 1/mes/L%1/production"))
    assert event.source == "mes://site%201/L%251"


def test_the_payload_id_and_time_are_used_when_the_rule_names_them() -> None:
    rule = TopicRule("m/+", "machine.state.v1", id_field="msgId", time_field="ts")
    payload = {"msgId": "s1-000042", "ts": "2026-11-27T05:00:00Z", "state": "RUNNING"}
    event, derived = ingest(rule).event(delivery(payload, topic="m/press"))
    assert not derived
    assert event.id == "s1-000042"
    assert event.time == "2026-11-27T05:00:00Z"
    # An integer id is fine too; a message without a time gets the time of receipt.
    event, _ = ingest(rule).event(delivery({"msgId": 7}, topic="m/press"))
    assert event.id == "7"
    assert event.time is not None


def quarantined(event: Event) -> dict[str, Any]:
    assert event.type == QUARANTINE_TYPE
    assert event.source == "mqtt://broker:1883"
    assert isinstance(event.data, dict)
    return event.data


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2, 3]", "a JSON array, not an object"),
        (b"42", "a JSON number, not an object"),
        (b'{"qtyGood": 5}', "the payload has no 'woNumber'"),
        (b'{"woNumber": {"nested": 1}}', "data.woNumber (a dict, not a string or number)"),
        (b"", "not JSON"),
    ],
)
def test_malformed_payloads_are_quarantined_with_the_reason(payload: bytes, reason: str) -> None:
    event, _ = ingest().event(delivery(payload))
    data = quarantined(event)
    assert reason in data["reason"]
    assert data["topic"] == "plant/s1/mes/L1/production"
    assert data["rule"] == "plant/+/mes/+/production"
    assert data["payload"] == payload.decode()
    assert event.subject == "plant/s1/mes/L1/production"


def test_binary_payloads_are_kept_in_base64() -> None:
    raw = b"\xff\xfe\x00binary"
    data = quarantined(ingest().event(delivery(raw))[0])
    assert "not JSON" in data["reason"]
    assert base64.b64decode(data["payload_base64"]) == raw
    assert "payload" not in data


def test_invalid_events_are_quarantined_with_every_error() -> None:
    rule = TopicRule("m/+", "machine.state.v1", id_field="msgId", time_field="ts")
    data = quarantined(
        ingest(rule).event(delivery({"msgId": "x", "ts": "yesterday"}, topic="m/a"))[0]
    )
    assert "time" in data["reason"]
    assert data["errors"][0]["path"] == "time"
    data = quarantined(ingest(rule).event(delivery({"msgId": ""}, topic="m/a"))[0])
    assert "msgId" in data["reason"]


def test_oversized_payloads_are_quarantined_truncated() -> None:
    small = Ingest(
        [PRODUCTION], session="c", quarantine_source="mqtt://broker:1883", max_payload=1024
    )
    data = quarantined(small.event(delivery({"woNumber": "x" * 5000}))[0])
    assert "exceeds 1024" in data["reason"]
    assert data["truncated"] is True
    assert data["size"] > 5000
    assert len(data["payload"]) == 1024


def test_a_topic_no_rule_matches_is_quarantined() -> None:
    data = quarantined(ingest().event(delivery({"a": 1}, topic="other/topic"))[0])
    assert data["reason"] == "no topic rule matches this topic"
    assert data["rule"] is None


# -- the event id under QoS 1 ----------------------------------------------------------------


async def test_a_redelivery_collapses_and_identical_readings_do_not() -> None:
    log = MemoryLog()
    mapper = ingest()
    reading = {"woNumber": "WO-1", "qtyGood": 1}
    first = await mapper.store([delivery(reading, mid=1), delivery(reading, mid=2)], log.append)
    assert (first.appended, first.duplicates) == (2, 0)  # same payload, two messages
    # The broker re-sends mid 2 after a lost PUBACK: flagged DUP, same packet id.
    again = await mapper.store([delivery(reading, mid=2, dup=True)], log.append)
    assert (again.appended, again.duplicates) == (0, 1)
    assert await log.head() == 2


async def test_a_recycled_packet_id_is_a_new_message_not_a_copy() -> None:
    log = MemoryLog()
    mapper = ingest()
    reading = {"woNumber": "WO-1", "qtyGood": 1}
    await mapper.store([delivery(reading, mid=9)], log.append)
    # 65,535 deliveries later the same reading arrives with the same packet id, first time
    # sent (DUP 0): it cannot be in the log already, so it is stored under a salted id.
    later = await mapper.store([delivery(reading, mid=9)], log.append)
    assert (later.appended, later.collisions, later.duplicates) == (1, 1, 0)
    third = await mapper.store([delivery(reading, mid=9)], log.append)
    assert third.collisions == 1
    ids = [record.event.id for record in await log.read()]
    base = mapper.digest(delivery(reading, mid=9))
    assert ids == [base, f"{base}.1", f"{base}.2"]
    # A redelivery of the last one (DUP 1) is recognised as a copy.
    copy = await mapper.store([delivery(reading, mid=9, dup=True)], log.append)
    assert (copy.appended, copy.duplicates) == (0, 1)
    assert await log.head() == 3


async def test_qos0_messages_get_fresh_ids() -> None:
    log = MemoryLog()
    mapper = ingest()
    reading = orjson.dumps({"woNumber": "WO-1"})
    topic = "plant/s1/mes/L1/production"
    twice = [Delivery(topic=topic, payload=reading, mid=0, qos=0)] * 2
    result = await mapper.store(twice, log.append)
    assert (result.appended, result.duplicates, result.collisions) == (2, 0, 0)


async def test_the_publishers_message_id_collapses_its_retries() -> None:
    log = MemoryLog()
    mapper = ingest(TopicRule("m/+", "machine.state.v1", id_field="msgId"))
    # A publisher that retried: two messages (two packet ids), one msgId.
    result = await mapper.store(
        [
            delivery({"msgId": "a"}, topic="m/x", mid=1),
            delivery({"msgId": "a"}, topic="m/x", mid=2),
        ],
        log.append,
    )
    assert (result.appended, result.duplicates, result.collisions) == (1, 1, 0)


async def test_the_digest_depends_on_session_topic_packet_id_and_payload() -> None:
    mapper = ingest()
    base = delivery({"woNumber": "1"}, mid=5)
    other_session = Ingest([PRODUCTION], session="client-2", quarantine_source="mqtt://b:1")
    variants = [
        delivery({"woNumber": "1"}, mid=6),
        delivery({"woNumber": "2"}, mid=5),
        delivery({"woNumber": "1"}, mid=5, topic="plant/s2/mes/L1/production"),
    ]
    assert all(mapper.digest(v) != mapper.digest(base) for v in variants)
    assert other_session.digest(base) != mapper.digest(base)
    assert mapper.digest(delivery({"woNumber": "1"}, mid=5, dup=True)) == mapper.digest(base)


async def test_a_batch_refused_at_ingest_quarantines_only_the_refused_events() -> None:
    from forgeline.exceptions import InvalidEvent

    log = MemoryLog()

    async def picky(events: Any) -> Any:
        if any(e.subject == "WO-bad" for e in events):
            raise InvalidEvent("policy: WO-bad is blocked")
        return await log.append(events)

    result = await ingest().store(
        [delivery({"woNumber": "WO-ok"}, mid=1), delivery({"woNumber": "WO-bad"}, mid=2)], picky
    )
    assert result.quarantined == 1
    events = [record.event for record in await log.read()]
    assert [e.type for e in events] == ["production.completed.v1", QUARANTINE_TYPE]
    assert "policy: WO-bad is blocked" in events[1].data["reason"]


# -- the sink's topic and the classification of PUBACKs --------------------------------------


def test_sink_topics_are_rendered_from_the_event() -> None:
    event = Event.new("lot.released.v1", "qms://a", {"line": "L1"}, subject="LOT-9", tenant="acme")
    target = MqttTarget("forgeline/{tenant}/{type}/{data.line}/{subject}")
    assert target.render(event) == "forgeline/acme/lot.released.v1/L1/LOT-9"
    with pytest.raises(PermanentDeliveryError, match=r"data\.missing"):
        MqttTarget("x/{data.missing}").render(event)
    wildcard = Event.new("lot.released.v1", "qms://a", subject="a/+/b")
    with pytest.raises(PermanentDeliveryError, match="wildcard"):
        MqttTarget("x/{subject}").render(wildcard)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        MqttTarget("x/{Not An Attribute}")


def test_connect_failures_are_classified() -> None:
    from aiomqtt import MqttError
    from aiomqtt.exceptions import MqttConnectError

    from forgeline.connectors.mqtt import MqttAuthError, MqttTimeout, MqttUnavailable
    from forgeline.connectors.mqtt.errors import classify_connect_error
    from forgeline.exceptions import Unauthorized

    refused = classify_connect_error(MqttConnectError(4), "broker")  # bad user name/password
    assert isinstance(refused, MqttAuthError) and isinstance(refused, Unauthorized)
    assert "bad user name or password (code 4)" in refused.detail
    assert isinstance(classify_connect_error(MqttConnectError(3), "b"), MqttUnavailable)
    assert isinstance(
        classify_connect_error(MqttError("[Errno 111] refused"), "b"), MqttUnavailable
    )
    assert isinstance(classify_connect_error(MqttError("Operation timed out"), "b"), MqttTimeout)


def test_puback_reason_codes_are_classified() -> None:
    assert classify_puback(0, "t") is None
    assert classify_puback(0x10, "t") is None  # no matching subscribers: accepted
    assert isinstance(classify_puback(0x87, "t"), MqttRejected)  # not authorised
    assert isinstance(classify_puback(0x87, "t"), PermanentDeliveryError)
    assert isinstance(classify_puback(0x97, "t"), MqttTransientError)  # quota exceeded
    assert isinstance(classify_puback(0x97, "t"), TransientDeliveryError)


# -- config ----------------------------------------------------------------------------------


def test_the_system_config_builds_a_source() -> None:
    system = MqttSystem.model_validate(
        {
            "kind": "mqtt",
            "url": "mqtt://broker.plant:1884",
            "username": "forgeline",
            "password": "env:MQTT_PASSWORD",
            "client_id": "forgeline-a",
            "group": "workers",
            "batch": {"max_messages": 200, "max_delay_ms": 5},
            "subscribe": [
                {
                    "topic": "plant/+/mes/+/production",
                    "type": "production.completed.v1",
                    "source": "mes://{1}",
                    "subject": "{data.woNumber}",
                    "id_field": "msgId",
                }
            ],
        }
    )
    log = MemoryLog()
    source = system.source(log.append, env={"MQTT_PASSWORD": "s3cret"}, worker="2")
    assert source.client_id == "forgeline-a-2"
    assert source.broker.password == "s3cret"
    assert (source.broker.host, source.broker.port, source.broker.protocol) == (
        "broker.plant",
        1884,
        "5",
    )
    assert source.filters == ["$share/workers/plant/+/mes/+/production"]
    assert (source.max_batch, source.max_delay) == (200, 0.005)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "http://broker"}, "mqtt://host"),
        ({"url": "mqtt://user:pw@broker"}, "carries no user or password"),
        ({"subscribe": [{"topic": "a/#/b", "type": "x.y.v1"}]}, "'#' the last"),
        ({"subscribe": [{"topic": "a/+", "type": "x.y.v1", "source": "s://{2}"}]}, "{2}"),
        ({"group": "a/b"}, "group"),
    ],
)
def test_bad_system_configs_are_refused_with_the_reason(
    change: dict[str, Any], message: str
) -> None:
    body = {"kind": "mqtt", "url": "mqtt://broker", **change}
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("+", r"\+")):
        MqttSystem.model_validate(body)


def test_publish_target_config() -> None:
    target = MqttPublishTarget.model_validate(
        {"system": "plant-broker", "topic": "forgeline/{type}/{subject}", "payload": "data"}
    ).target()
    assert (target.qos, target.payload) == (1, "data")
    with pytest.raises(ValidationError, match="unknown placeholder"):
        MqttPublishTarget.model_validate({"system": "b", "topic": "x/{Type}"})


def test_the_config_loads_without_the_driver() -> None:
    """``forgeline check`` must work on a hub installed without the ``mqtt`` extra."""
    import subprocess
    import sys

    script = """
import sys
sys.modules["aiomqtt"] = None
sys.modules["paho"] = None
from forgeline.connectors.mqtt import MqttSystem
from forgeline.exceptions import ConfigError
system = MqttSystem.model_validate(
    {"url": "mqtt://b", "subscribe": [{"topic": "a/+", "type": "a.b.v1", "source": "x://{1}"}]}
)
try:
    system.source(print)
except ConfigError as exc:
    print(exc.detail)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "the MQTT connector needs: pip install forgeline[mqtt]", (
        done.stderr
    )
