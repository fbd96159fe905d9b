"""The synchronous business APIs over HTTP (``forgeline.business`` does the work):

- ``GET /v1/inventory/availability?sku=&site=`` (``inventory:read``)
- ``POST /v1/purchase-requests`` with ``Idempotency-Key`` (``purchase-requests:write``)
- ``GET /v1/customers/{ref}/validation`` (``customers:read``)
- ``POST /v1/transactions`` and ``GET /v1/transactions/{id}`` (``transactions:write``,
  ``transactions:read``)

Each route authorizes its caller by scope (``api.auth.require``), so principals of any tenant
reach them, unlike the admin routes behind the operator key. ``install_business(app)`` mounts
them once, with the per-process state (the availability cache) in ``app.state.business``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from starlette.responses import Response

from ..business import (
    BusinessServices,
    BusinessSettings,
    IdempotentRequest,
    PurchaseRequestIn,
    Replay,
    TransactionIn,
    check_key,
    create_purchase_request,
    post_transaction,
    purchase_marker,
    request_digest,
    transaction_status,
    validate_customer,
)
from ..exceptions import ForgelineError
from ..hub import Hub
from ..security.access import Caller
from .auth import require
from .events import json_response
from .problems import PROBLEM_CONTENT_TYPE

__all__ = ["install_business", "router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["business"])

InventoryReader = Annotated[Caller, Depends(require("inventory:read"))]
PurchaseWriter = Annotated[Caller, Depends(require("purchase-requests:write"))]
CustomerReader = Annotated[Caller, Depends(require("customers:read"))]
TransactionWriter = Annotated[Caller, Depends(require("transactions:write"))]
TransactionReader = Annotated[Caller, Depends(require("transactions:read"))]

_CODE = r"^[^\x00-\x1f\x7f]+$"  # a business key: no control characters
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="a unique value per operation (a UUID): the same key retries safely",
    ),
]
#: RFC 9111 dropped ``Warning``, but clients and proxies still show 110 as "stale".
_STALE_WARNING = '110 - "Response is Stale"'

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
_WHY = {
    400: "Bad input, or a missing or malformed Idempotency-Key",
    401: "No or unknown credentials",
    403: "The caller lacks the route's scope",
    404: "Not found (another tenant's object answers the same)",
    409: "A request with this Idempotency-Key is in progress, or a reference is ambiguous",
    413: "The body is over the hub's limit",
    422: "The request does not fit (the problem's errors name each path)",
    429: "Over the caller's rate limit (Retry-After says when to come back)",
    503: "The ERP cannot answer now, or no ERP is configured",
}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The problem answers a route may give, for its OpenAPI document."""
    return {
        status: {
            "description": _WHY[status],
            "content": {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in (401, 403, 422, 429, *statuses)
    }


def install_business(app: FastAPI, settings: BusinessSettings | None = None) -> BusinessServices:
    """Mount the business routes on ``app`` (whose ``state.hub`` is set), once. Called again
    (the app factory already did), it only applies ``settings`` when given: call it before
    the app serves, since the per-process state is made anew."""
    existing: BusinessServices | None = getattr(app.state, "business", None)
    if existing is not None and settings is None:
        return existing
    services = BusinessServices(app.state.hub, settings)
    app.state.business = services
    if existing is None:
        app.include_router(router)
    return services


def _services(request: Request) -> BusinessServices:
    services: BusinessServices = request.app.state.business
    return services


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


@router.get(
    "/v1/inventory/availability",
    summary="Stock of a product at a site, from Odoo through a short cache",
    response_description="``stale: true`` (with ``age_seconds``, ``Age`` and ``Warning``"
    " headers) when Odoo could not answer and this is the last known level",
    responses=_problems(404, 409, 503),
)
async def availability(
    request: Request,
    caller: InventoryReader,
    sku: Annotated[str, Query(min_length=1, max_length=128, pattern=_CODE)],
    site: Annotated[
        str, Query(min_length=1, max_length=64, pattern=_CODE, description="warehouse code")
    ],
) -> Response:
    answer = await _services(request).availability.lookup(sku, site)
    headers: dict[str, str] = {}
    if answer.stale:
        headers["Age"] = str(int(answer.age))
        headers["Warning"] = _STALE_WARNING
    return json_response(answer.as_json(), 200, headers)


@router.post(
    "/v1/purchase-requests",
    status_code=201,
    summary="Create a purchase request (a draft RFQ in Odoo); Idempotency-Key required",
    responses=_problems(400, 409, 413, 503),
)
async def purchase_request(
    request: Request,
    caller: PurchaseWriter,
    body: PurchaseRequestIn,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    key = check_key(idempotency_key)
    digest = request_digest("POST", "/v1/purchase-requests", body.model_dump(mode="json"))
    claim = await IdempotentRequest.claim(_hub(request).security, caller, key, digest)
    if isinstance(claim, Replay):
        return Response(
            claim.body,
            claim.status,
            {"Idempotent-Replayed": "true"},
            media_type="application/json",
        )
    marker = purchase_marker(claim.tenant, claim.principal, key)
    try:
        answer = await create_purchase_request(_services(request).erp, body, marker)
    except BaseException:
        # Nothing worth replaying (and the RFQ's marker makes a retry safe): free the key.
        await asyncio.shield(_release(claim))
        raise
    payload = orjson.dumps(answer)
    try:
        await claim.complete(201, payload)
    except ForgelineError as exc:
        # The RFQ exists; a retry finds it by its marker, so the key may go.
        log.warning("cannot store the answer for Idempotency-Key %r: %s", key, exc.detail)
        await _release(claim)
    return Response(payload, 201, media_type="application/json")


async def _release(claim: IdempotentRequest) -> None:
    try:
        await claim.release()
    except ForgelineError as exc:  # the key then stays claimed until it expires
        log.error("cannot release Idempotency-Key %r: %s", claim.key, exc.detail)


@router.get(
    "/v1/customers/{ref:path}/validation",
    summary="Account status and credit hold of a customer, for order entry",
    responses=_problems(404, 409, 503),
)
async def customer_validation(
    request: Request,
    caller: CustomerReader,
    ref: Annotated[str, Path(min_length=1, max_length=128, pattern=_CODE)],
) -> Response:
    return json_response(await validate_customer(_services(request).erp, ref))


@router.post(
    "/v1/transactions",
    status_code=202,
    summary="Post a confirmed transaction: validated, logged, applied to Odoo by its flow",
    responses=_problems(400, 413, 503),
)
async def post_transaction_route(
    request: Request,
    caller: TransactionWriter,
    body: TransactionIn,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    key = check_key(idempotency_key) if idempotency_key is not None else None
    answer, replayed = await post_transaction(_hub(request), caller, body, key)
    headers = {"Location": answer["status_url"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(answer, 202, headers)


@router.get(
    "/v1/transactions/{transaction_id:path}",
    summary="Where a posted transaction stands: accepted, delivering, applied or failed",
    responses=_problems(404, 409, 503),
)
async def get_transaction(
    request: Request,
    caller: TransactionReader,
    transaction_id: Annotated[str, Path(min_length=1, max_length=256)],
) -> Response:
    return json_response(await transaction_status(_hub(request), caller, transaction_id))
