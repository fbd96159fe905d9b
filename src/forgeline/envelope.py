"""The event envelope: CloudEvents 1.0 in structured and batch JSON, with Forgeline's extensions.

This is the ingest stage's contract. Everything that enters the log has passed ``Event.from_dict``,
so later stages can trust names, ids and times. ``(source, id)`` is the dedup key; ``subject`` is
the business key (``MO/00042``) and ``partitionkey`` (defaulting to the subject) orders delivery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from ulid import ULID

from .exceptions import InvalidEvent, PayloadTooLarge

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "Event",
    "dump_batch",
    "events_from_list",
    "now_rfc3339",
    "parse_batch",
    "parse_structured",
]

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SPECVERSION = "1.0"

# Dotted names of at least two segments: ``production.completed.v1``, ``com.example.thing``.
_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)+")
# A URI-reference spelled with URI characters only: ``mes/line-1``, ``odoo://demo``, ``/a/b``.
_SOURCE_RE = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_EXT_NAME_RE = re.compile(r"[a-z0-9]{1,20}")
_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

_CORE = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)
_DATA = frozenset({"data", "data_base64"})
# Forgeline's own extensions are strings with a meaning; others just follow the CloudEvents rules.
_STRING_EXTENSIONS = frozenset({"partitionkey", "correlationid", "causationid", "tenant"})
_MAX_ID = 256
_MAX_NAME = 255
_MAX_SOURCE = 1024
_MAX_ATTR = 4096


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent. Build new ones with ``Event.new``; parse received ones with ``from_dict``."""

    id: str
    source: str
    type: str
    subject: str | None = None
    time: str | None = None
    data: Any = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data_base64: str | None = None
    extensions: Mapping[str, str | int | bool] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        type: str,
        source: str,
        data: Any = None,
        *,
        subject: str | None = None,
        **extensions: str | int | bool,
    ) -> Event:
        """A fresh event with a ULID id and the current time, validated like a received one."""
        body: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": str(ULID()),
            "source": source,
            "type": type,
            "time": now_rfc3339(),
            **extensions,
        }
        if subject is not None:
            body["subject"] = subject
        if data is not None:
            body["data"] = data
            body["datacontenttype"] = "application/json"
        return cls.from_dict(body)

    @property
    def partitionkey(self) -> str | None:
        """The ordering key: the ``partitionkey`` extension, else the subject."""
        key = self.extensions.get("partitionkey")
        return str(key) if key is not None else self.subject

    @property
    def tenant(self) -> str | None:
        value = self.extensions.get("tenant")
        return None if value is None else str(value)

    @classmethod
    def from_dict(cls, body: Any, *, path: str = "") -> Event:
        """Validate a structured-mode JSON object. Raises ``InvalidEvent`` listing every problem."""
        if not isinstance(body, dict):
            raise InvalidEvent(
                "an event must be a JSON object",
                errors=[{"path": path or "$", "message": "expected an object"}],
            )
        errors: list[dict[str, str]] = []

        def bad(attr: str, message: str) -> None:
            errors.append({"path": f"{path}.{attr}" if path else attr, "message": message})

        if body.get("specversion") != SPECVERSION:
            bad("specversion", f"must be {SPECVERSION!r}")
        event_id = body.get("id")
        if not isinstance(event_id, str) or not event_id:
            bad("id", "required, a non-empty string")
        elif len(event_id) > _MAX_ID or _CONTROL_RE.search(event_id):
            bad("id", f"at most {_MAX_ID} characters, no control characters")
        source = body.get("source")
        if not isinstance(source, str) or not source:
            bad("source", "required, a non-empty URI-reference")
        elif len(source) > _MAX_SOURCE or not _SOURCE_RE.fullmatch(source):
            bad("source", "not a valid URI-reference (URI characters only, no spaces)")
        type_ = body.get("type")
        if not isinstance(type_, str) or not type_:
            bad("type", "required, a dotted name such as 'production.completed.v1'")
        elif len(type_) > _MAX_NAME or not _TYPE_RE.fullmatch(type_):
            bad("type", f"{type_[:80]!r} is not a dotted name such as 'production.completed.v1'")
        for attr in ("subject", "datacontenttype", "dataschema"):
            value = body.get(attr)
            if value is not None and (
                not isinstance(value, str) or len(value) > _MAX_ATTR or _CONTROL_RE.search(value)
            ):
                # CloudEvents strings carry no control characters (they may become headers,
                # and a key holding NUL cannot be stored by PostgreSQL, or kept whole by SQL).
                bad(attr, f"must be a string of at most {_MAX_ATTR} characters, no control ones")
        time = body.get("time")
        if time is not None and not _is_rfc3339(time):
            bad("time", "must be an RFC 3339 timestamp with a time zone")
        if "data" in body and "data_base64" in body:
            bad("data_base64", "'data' and 'data_base64' are mutually exclusive")
        data_b64 = body.get("data_base64")
        if data_b64 is not None and not isinstance(data_b64, str):
            bad("data_base64", "must be a base64 string")

        extensions: dict[str, str | int | bool] = {}
        for name, value in body.items():
            if name in _CORE or name in _DATA:
                continue
            if not _EXT_NAME_RE.fullmatch(name):
                bad(name, "extension names are 1-20 lower-case letters or digits")
            elif value is None:
                continue  # CloudEvents: a null attribute is an absent one
            elif name in _STRING_EXTENSIONS and not isinstance(value, str):
                bad(name, "must be a string")
            elif name == "traceparent" and not (
                isinstance(value, str) and _TRACEPARENT_RE.fullmatch(value)
            ):
                bad(name, "must be a W3C traceparent ('00-<32 hex>-<16 hex>-<2 hex>')")
            elif not isinstance(value, str | int | bool) or (
                isinstance(value, str) and (len(value) > _MAX_ATTR or _CONTROL_RE.search(value))
            ):
                bad(
                    name,
                    "extension values are strings (no control characters), integers or booleans",
                )
            else:
                extensions[name] = value
        if errors:
            raise InvalidEvent(_summary(errors), errors=errors)
        return cls(
            id=event_id,  # type: ignore[arg-type]  # checked above
            source=source,  # type: ignore[arg-type]
            type=type_,  # type: ignore[arg-type]
            subject=body.get("subject"),
            time=time,
            data=body.get("data"),
            datacontenttype=body.get("datacontenttype"),
            dataschema=body.get("dataschema"),
            data_base64=data_b64,
            extensions=extensions,
        )

    @classmethod
    def from_stored(cls, body: dict[str, Any]) -> Event:
        """Rebuild an event this process validated before (read back from a log): no checks."""
        extensions = {k: v for k, v in body.items() if k not in _CORE and k not in _DATA}
        return cls(
            id=body["id"],
            source=body["source"],
            type=body["type"],
            subject=body.get("subject"),
            time=body.get("time"),
            data=body.get("data"),
            datacontenttype=body.get("datacontenttype"),
            dataschema=body.get("dataschema"),
            data_base64=body.get("data_base64"),
            extensions=extensions,
        )

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object, absent attributes left out."""
        body: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            body["subject"] = self.subject
        if self.time is not None:
            body["time"] = self.time
        if self.datacontenttype is not None:
            body["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            body["dataschema"] = self.dataschema
        body.update(self.extensions)
        if self.data_base64 is not None:
            body["data_base64"] = self.data_base64
        elif self.data is not None:
            body["data"] = self.data
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or len(value) < 20 or value[10] not in "Tt":
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _summary(errors: list[dict[str, str]]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['path']}: {first['message']}{more}"


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from exc


def parse_structured(body: bytes) -> Event:
    """One event in structured mode (``application/cloudevents+json``)."""
    return Event.from_dict(_loads(body))


def parse_batch(body: bytes, *, max_events: int) -> list[Event]:
    """A batch (``application/cloudevents-batch+json``): a JSON array of structured events.

    All or nothing: one bad event rejects the whole batch, and the error names every bad one.
    """
    items = _loads(body)
    if not isinstance(items, list):
        raise InvalidEvent("a batch must be a JSON array of events")
    return events_from_list(items, max_events=max_events)


def events_from_list(items: list[Any], *, max_events: int) -> list[Event]:
    if not items:
        raise InvalidEvent("a batch must hold at least one event")
    if len(items) > max_events:
        raise PayloadTooLarge(f"a batch holds at most {max_events} events, got {len(items)}")
    events: list[Event] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        try:
            events.append(Event.from_dict(item, path=f"[{index}]"))
        except InvalidEvent as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidEvent(_summary(errors), errors=errors)
    return events


def dump_batch(events: Iterable[Event]) -> bytes:
    return orjson.dumps([event.to_dict() for event in events])
