"""The HTTP the demo speaks, as a plant's people and systems would: the hub's API (publish,
page through the log, dead letters, ``/metrics``) and a signed webhook POST (the PLM's)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from ..envelope import STRUCTURED_CONTENT_TYPE

__all__ = [
    "DemoError",
    "dead_letters",
    "deliveries_total",
    "expect",
    "log_head",
    "post_signed",
    "publish",
    "read_log",
    "webhook_requests",
]


class DemoError(Exception):
    """The hub or a plant system answered something the demo did not expect."""


async def expect(request: Any, status: int | tuple[int, ...]) -> Any:
    """Await an httpx request and insist on ``status`` (one of them); the JSON body (or None)."""
    response: httpx.Response = await request
    wanted = (status,) if isinstance(status, int) else status
    if response.status_code not in wanted:
        raise DemoError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, expected {' or '.join(map(str, wanted))}: "
            f"{response.text[:300]}"
        )
    return response.json() if response.content else None


async def post_signed(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], *, secret: str, header: str
) -> Any:
    """POST ``body`` as a plant system signs its webhooks: ``<header>: sha256=<hex HMAC-SHA256
    of the raw body>``. The hub's answer: 202 stored, 200 stored before (a resend)."""
    raw = orjson.dumps(body)
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", header: f"sha256={digest}"}
    return await expect(client.post(url, content=raw, headers=headers), (200, 202))


async def publish(client: httpx.AsyncClient, event: dict[str, Any]) -> Any:
    """POST one structured CloudEvent to ``/v1/events``."""
    return await expect(
        client.post(
            "/v1/events",
            content=orjson.dumps(event),
            headers={"Content-Type": STRUCTURED_CONTENT_TYPE},
        ),
        (200, 201),
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


async def dead_letters(client: httpx.AsyncClient, subscription: str | None = None) -> list[Any]:
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


def webhook_requests(text: str) -> Counter[tuple[str, str]]:
    """``forgeline_webhook_requests_total`` from a Prometheus exposition: (system, outcome)
    → requests (refusals summed over their reasons)."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "forgeline_webhook_requests_total":
                counts[(sample.labels["system"], sample.labels["outcome"])] += int(sample.value)
    return counts
