"""The event catalog as an AsyncAPI 3.0 document: how the ecosystem publishes an event API.

One channel per event type (its address is the type, which is what subscriptions filter on),
one ``send`` operation per channel (the hub sends these events to its subscribers), one
message per type whose payload is the catalog schema and whose headers are the CloudEvents
attributes and Forgeline's extensions (DESIGN.md §2). In structured mode, how Forgeline
stores and delivers events, those attributes sit beside ``data`` in one JSON object; in
binary mode they travel as ``ce-`` headers and the payload is the body.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .catalog import CATALOG, EventSpec

__all__ = ["ASYNCAPI_VERSION", "asyncapi"]

ASYNCAPI_VERSION = "3.0.0"
_SCHEMAS = "#/components/schemas/"

# The envelope, as envelope.Event.from_dict enforces it.
_CLOUDEVENT_ATTRIBUTES: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes and Forgeline's extensions.",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "const": "1.0", "description": "CloudEvents 1.0."},
        "id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": "Unique per source; a ULID when Forgeline mints it. "
            "(source, id) is the dedup key.",
        },
        "source": {
            "type": "string",
            "format": "uri-reference",
            "description": "The system that produced the event (odoo://host/db, mes/site1).",
        },
        "type": {"type": "string", "description": "The catalog event type."},
        "subject": {
            "type": "string",
            "description": "The business key of the object concerned (MO/00042).",
        },
        "time": {
            "type": "string",
            "format": "date-time",
            "description": "When it happened (RFC 3339).",
        },
        "datacontenttype": {
            "type": "string",
            "const": "application/json",
            "description": "The payload is JSON.",
        },
        "dataschema": {
            "type": "string",
            "format": "uri",
            "description": "The catalog schema of data (its $id).",
        },
        "partitionkey": {
            "type": "string",
            "description": "Ordering key: events with the same key are delivered in order. "
            "Defaults to the subject.",
        },
        "correlationid": {
            "type": "string",
            "description": "Follows one business object across systems.",
        },
        "causationid": {"type": "string", "description": "The id of the event that caused it."},
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C Trace Context.",
        },
        "tenant": {"type": "string", "description": "The tenant the event belongs to."},
    },
}


def _key(event_type: str) -> str:
    # Component and channel keys are identifiers; dots stay in the address and the name.
    return event_type.replace(".", "_")


def _message(spec: EventSpec, payload_ref: str) -> dict[str, Any]:
    examples = (
        [dict(spec.example)]
        if spec.example is not None
        else spec.model.model_json_schema().get("examples")
    ) or []
    message: dict[str, Any] = {
        "name": spec.type,
        "title": spec.model.__name__,
        "summary": spec.summary,
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/correlationid"},
        "headers": {
            "type": "object",
            "allOf": [
                {"$ref": f"{_SCHEMAS}CloudEventAttributes"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": spec.type},
                        "dataschema": {"const": spec.schema_url},
                    },
                },
            ],
        },
        "payload": {"$ref": payload_ref},
        "externalDocs": {"url": spec.schema_url, "description": "The JSON Schema of data"},
    }
    if isinstance(examples, list) and examples:
        message["examples"] = [
            {
                "name": f"{_key(spec.type)}_example",
                "headers": {
                    "specversion": "1.0",
                    "id": "01JDX6Y3N8Q2V9W4K7M5T0RZ1A",
                    "source": "forgeline://demo",
                    "type": spec.type,
                    "dataschema": spec.schema_url,
                },
                "payload": examples[0],
            }
        ]
    return message


def asyncapi(
    *, title: str = "Forgeline event catalog", version: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the catalog, as JSON-ready dicts."""
    if version is None:
        from .. import __version__ as version  # the package's version unless told

    models = {spec.model for spec in CATALOG.values()}
    refs, defs = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=_SCHEMAS + "{model}",
    )
    schemas: dict[str, Any] = {"CloudEventAttributes": _CLOUDEVENT_ATTRIBUTES}
    schemas.update(defs.get("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in CATALOG.values():
        key = _key(spec.type)
        payload_ref = refs[(spec.model, "validation")]["$ref"]
        messages[key] = _message(spec, payload_ref)
        channels[key] = {
            "address": spec.type,
            "title": spec.type,
            "summary": spec.summary,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"send_{key}"] = {
            "action": "send",
            "title": f"Deliver {spec.type}",
            "summary": "The hub delivers these events to matching subscriptions.",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "The canonical manufacturing events Forgeline routes between Odoo "
            "and the shop floor, and the source events (odoo.*: Odoo's records as read, "
            "before any mapping). Each message is a CloudEvent; the payload is its data.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
