"""The hub's HTTP API as ``forgeline demo`` uses it: publish in every accepted encoding,
page through the log, list dead letters, read ``/metrics``."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from ..envelope import BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE
from .plant import Publish

__all__ = [
    "DemoError",
    "dead_letters",
    "deliveries_total",
    "expect",
    "log_head",
    "publish",
    "read_log",
]


class DemoError(Exception):
    """The hub or Odoo answered something the demo did not expect."""


async def expect(request: Any, status: int) -> Any:
    """Await an httpx request and insist on ``status``; the JSON body (or None)."""
    response: httpx.Response = await request
    if response.status_code != status:
        raise DemoError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, expected {status}: {response.text[:300]}"
        )
    return response.json() if response.content else None


async def publish(client: httpx.AsyncClient, item: Publish) -> Any:
    status = 200 if item.duplicate else 201
    if item.mode == "binary":
        (event,) = item.events
        headers = {
            f"ce-{name}": str(value)
            for name, value in event.items()
            if name not in ("data", "datacontenttype")
        }
        headers["Content-Type"] = "application/json"
        return await expect(
            client.post("/v1/events", json=event.get("data"), headers=headers), status
        )
    if item.mode == "batch":
        body: Any = list(item.events)
        media = BATCH_CONTENT_TYPE
    elif item.mode == "structured":
        (body,) = item.events
        media = STRUCTURED_CONTENT_TYPE
    else:
        body = item.events[0] if len(item.events) == 1 else list(item.events)
        media = "application/json"
    return await expect(
        client.post("/v1/events", content=orjson.dumps(body), headers={"Content-Type": media}),
        status,
    )


async def read_log(
    client: httpx.AsyncClient, after: int, *, source: str | None = None
) -> list[dict[str, Any]]:
    """Every record after position ``after`` (of ``source``), through GET /v1/events."""
    params: dict[str, Any] = {"limit": 1000}
    if source is not None:
        params["source"] = source
    records: list[dict[str, Any]] = []
    while True:
        page = await expect(client.get("/v1/events", params={**params, "after": after}), 200)
        records.extend(page["events"])
        if not page["events"]:
            return records
        after = page["next_after"]


async def log_head(client: httpx.AsyncClient) -> int:
    records = await read_log(client, 0)
    return int(records[-1]["position"]) if records else 0


async def dead_letters(client: httpx.AsyncClient, subscription: str | None) -> list[Any]:
    params: dict[str, Any] = {"limit": 1000}
    if subscription is not None:
        params["subscription"] = subscription
    answer = await expect(client.get("/v1/deadletters", params=params), 200)
    items: list[Any] = answer["deadletters"]
    return items


def deliveries_total(text: str) -> dict[str, dict[str, float]]:
    """``forgeline_deliveries_total`` from a Prometheus exposition: subscription → outcome."""
    counts: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "forgeline_deliveries_total":
                by_outcome = counts.setdefault(sample.labels["subscription"], {})
                by_outcome[sample.labels["outcome"]] = sample.value
    return counts
