"""``/v1/catalog`` and ``/asyncapi.json``: the event catalog, published.

The catalog lists every canonical event type; each type's JSON Schema is served at
``/v1/catalog/{type}`` (its ``$id`` names the canonical URL); ``/asyncapi.json`` is the whole
catalog as an AsyncAPI 3.0 document, open like ``/openapi.json``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from ..canonical import asyncapi, catalog_entries, json_schema
from .events import json_response

__all__ = ["catalog", "published"]

catalog = APIRouter(prefix="/v1/catalog", tags=["catalog"])
published = APIRouter(tags=["catalog"])


@cache
def _asyncapi_document() -> bytes:
    # The catalog is fixed for the life of the process: build the document once.
    return orjson.dumps(asyncapi())


@catalog.get("", summary="The event types in the catalog")
async def list_event_types() -> Response:
    return json_response({"event_types": catalog_entries()})


@catalog.get("/{event_type}", summary="The JSON Schema (Draft 2020-12) of one type's data")
async def get_event_schema(event_type: str) -> Response:
    schema: dict[str, Any] = json_schema(event_type)  # UnknownEventType -> 404 problem
    return Response(orjson.dumps(schema), media_type="application/schema+json")


@published.get("/asyncapi.json", summary="The event catalog as an AsyncAPI 3.0 document")
async def get_asyncapi() -> Response:
    return Response(_asyncapi_document(), media_type="application/json")
