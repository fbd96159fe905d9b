"""MQTT messages into events: the ingest stage of the MQTT source, with no network in it.

Every delivery becomes exactly one event and nothing here raises on bad input: a payload
that is not JSON, not an object, too large, or that makes an invalid event becomes a
``mqtt.quarantined.v1`` event carrying the topic, the reason and the raw payload (text, or
base64 when it is not UTF-8), so it is acknowledged, visible and replayable, never dropped.

**Event ids.** ``(source, id)`` is the log's dedup key, and QoS 1 means a message can arrive
twice: the broker redelivers whatever it sent but did not get a PUBACK for (after a
reconnect, flagged DUP, with its original packet id). The id must make that redelivery
collapse while two identical readings published twice stay two events:

* with ``id_field`` the publisher's own message id is the event id: exact, and it also
  collapses the publisher's retries (which reach us as two messages with two packet ids);
* otherwise the id of a QoS 1 message is a digest of (session, topic, packet id, payload).
  A redelivery has the same four, so it collapses; a second identical reading has another
  packet id. But packet ids are 16 bits and reused, so an identical payload on the same
  topic can meet an old packet id again (Mosquitto numbers a session's deliveries in
  sequence: one in 65,535 apart). The DUP flag settles it: a first delivery (DUP 0) cannot
  already be in the log, so if the log answers "duplicate" for it, it is a new message whose
  digest collided, and it is appended again under ``<digest>.1``, ``.2`` … A redelivery
  (DUP 1) answered "duplicate" is the message stored before the PUBACK was lost: dropped,
  as it should be.

  What is left: a message whose first delivery never reached the log (the process died
  before the append), redelivered with DUP 1, whose digest also equals an older message's,
  would be taken for a copy. That needs a crash and a 1-in-65,535 alignment of an identical
  payload at once; a payload with its own id (``id_field``) removes it. And a broker that
  loses its in-flight state (a crash without persistence) re-sends what it had not yet sent
  as first deliveries: those may be stored twice, a duplicate as at-least-once allows.
  Each further recurrence of one (topic, payload, packet id) costs one more append to find
  its free ``.n``; payloads that carry a time or a counter practically never recur.
* a QoS 0 message (a publisher that chose it) is never redelivered: it gets a fresh ULID.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from ulid import ULID

from ...envelope import SPECVERSION, Event, now_rfc3339
from ...exceptions import BackendError, InvalidEvent, InvalidInput
from ...log import Appended
from .options import Delivery
from .topics import MissingField, TopicRule, first_match, lookup, uri_escape

__all__ = ["QUARANTINE_TYPE", "BatchResult", "Ingest", "Publish"]

QUARANTINE_TYPE = "mqtt.quarantined.v1"

Publish = Callable[[Sequence[Event]], Awaitable[Sequence[Appended]]]


@dataclass(slots=True)
class BatchResult:
    appended: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: First deliveries whose digest met an older message's: stored under a salted id.
    collisions: int = 0


class Ingest:
    """Maps deliveries to events with ``rules`` and appends them in batches with ``publish``.

    ``session`` is the client id (packet ids are per session); ``quarantine_source`` the
    source of quarantine events (``mqtt://broker:1883``).
    """

    def __init__(
        self,
        rules: Sequence[TopicRule],
        *,
        session: str,
        quarantine_source: str,
        max_payload: int = 256 * 1024,
    ) -> None:
        self.rules = list(rules)
        self.session = session
        self.quarantine_source = quarantine_source
        self.max_payload = max_payload

    # -- one delivery ------------------------------------------------------------------------

    def digest(self, delivery: Delivery) -> str:
        hasher = hashlib.blake2b(digest_size=16)
        for part in (self.session.encode(), delivery.topic.encode(), b"%d" % delivery.mid):
            hasher.update(b"%d:" % len(part) + part)
        hasher.update(delivery.payload)
        return "mqtt-" + hasher.hexdigest()

    def event(self, delivery: Delivery, salt: int = 0) -> tuple[Event, bool]:
        """The event for ``delivery`` and whether its id is a digest (so may be salted)."""
        if delivery.qos == 0:
            # Never redelivered, and every QoS 0 message has packet id 0: a fresh id, or
            # identical readings would all share one digest.
            digest = f"mqtt-{ULID()}"
        else:
            digest = self.digest(delivery) + (f".{salt}" if salt else "")
        derived = delivery.qos > 0
        matched = first_match(self.rules, delivery.topic)
        if matched is None:
            return self.quarantine(delivery, digest, "no topic rule matches this topic"), derived
        rule, captures = matched
        if len(delivery.payload) > self.max_payload:
            reason = f"payload of {len(delivery.payload)} bytes exceeds {self.max_payload}"
            return self.quarantine(delivery, digest, reason, rule), derived
        try:
            data = orjson.loads(delivery.payload)
        except orjson.JSONDecodeError as exc:
            return self.quarantine(delivery, digest, f"not JSON: {exc}", rule), derived
        if not isinstance(data, dict):
            reason = f"a JSON {_json_kind(data)}, not an object"
            return self.quarantine(delivery, digest, reason, rule), derived
        resolve = rule.resolver(delivery.topic, captures, data)
        try:
            body: dict[str, Any] = {
                "specversion": SPECVERSION,
                "id": digest,
                "source": rule.source_template.render(resolve, uri_escape),
                "type": rule.type,
                "time": now_rfc3339(),
                "datacontenttype": "application/json",
                "data": data,
                "mqtttopic": delivery.topic,
            }
            if rule.subject_template is not None:
                body["subject"] = rule.subject_template.render(resolve)
            own_id = rule.id_field is not None
            if rule.id_field is not None:
                body["id"] = _scalar_text(lookup(data, rule.id_field.split(".")), rule.id_field)
            if rule.time_field is not None:
                # Not every message states when: the time of receipt then.
                with contextlib.suppress(MissingField):
                    body["time"] = lookup(data, rule.time_field.split("."))
            return Event.from_dict(body), derived and not own_id
        except MissingField as exc:
            reason = f"the payload has no {exc.args[0]!r} (rule {rule.pattern!r} needs it)"
            return self.quarantine(delivery, digest, reason, rule), derived
        except InvalidEvent as exc:
            return self.quarantine(delivery, digest, exc.detail, rule, exc.errors), derived

    def quarantine(
        self,
        delivery: Delivery,
        event_id: str,
        reason: str,
        rule: TopicRule | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> Event:
        raw = delivery.payload[: self.max_payload]
        data: dict[str, Any] = {
            "topic": delivery.topic,
            "reason": reason,
            "rule": rule.pattern if rule is not None else None,
            "type": rule.type if rule is not None else None,
            "size": len(delivery.payload),
            "truncated": len(raw) < len(delivery.payload),
            "qos": delivery.qos,
            "retain": delivery.retain,
        }
        if errors:
            data["errors"] = errors
        try:
            data["payload"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            data["payload_base64"] = base64.b64encode(raw).decode("ascii")
        return Event.from_stored(
            {
                "specversion": SPECVERSION,
                "id": event_id,
                "source": self.quarantine_source,
                "type": QUARANTINE_TYPE,
                # The topic in full: a person looking for the bad messages of a line finds them.
                "subject": delivery.topic[:1024],
                "time": now_rfc3339(),
                "datacontenttype": "application/json",
                "data": data,
            }
        )

    # -- a batch -----------------------------------------------------------------------------

    async def store(self, deliveries: Sequence[Delivery], publish: Publish) -> BatchResult:
        """Append one event per delivery; when this returns, every one of them is durable
        (or was already there), so all of them may be acknowledged. ``BackendError`` from
        ``publish`` propagates: nothing is then acknowledged and the caller retries."""
        result = BatchResult()
        pairs = [self.event(delivery) for delivery in deliveries]
        answers = await self._append(deliveries, [event for event, _ in pairs], publish, result)
        salt = 0
        # First deliveries the log already holds: digests that collided (module docstring).
        todo = [
            index
            for index, (answer, delivery) in enumerate(zip(answers, deliveries, strict=True))
            if answer.duplicate and pairs[index][1] and not delivery.dup
        ]
        result.duplicates = sum(answer.duplicate for answer in answers) - len(todo)
        result.appended = len(answers) - result.duplicates - len(todo)
        result.quarantined += sum(
            pairs[index][0].type == QUARANTINE_TYPE and (not answer.duplicate or index in todo)
            for index, answer in enumerate(answers)
        )
        while todo:
            salt += 1
            retry = [deliveries[index] for index in todo]
            events = [self.event(delivery, salt)[0] for delivery in retry]
            again = await self._append(retry, events, publish, result)
            result.collisions += sum(not answer.duplicate for answer in again)
            result.appended += sum(not answer.duplicate for answer in again)
            todo = [index for index, answer in zip(todo, again, strict=True) if answer.duplicate]
        return result

    async def _append(
        self,
        deliveries: Sequence[Delivery],
        events: list[Event],
        publish: Publish,
        result: BatchResult,
    ) -> list[Appended]:
        try:
            return list(await publish(events))
        except BackendError:
            raise
        except InvalidInput:
            pass
        # Ingest refused the batch (a policy, a middleware): find the events it refuses and
        # quarantine them with its reason, so the rest still go through.
        answers: list[Appended] = []
        for delivery, event in zip(deliveries, events, strict=True):
            try:
                answers.extend(await publish([event]))
            except InvalidInput as exc:
                reason = f"refused at ingest: {exc.detail}"
                held = self.quarantine(delivery, event.id, reason, errors=exc.errors)
                answers.extend(await publish([held]))
                result.quarantined += 1
        return answers


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


def _scalar_text(value: Any, name: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MissingField(f"{name} (a non-empty string or an integer)")
