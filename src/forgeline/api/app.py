"""The hub's HTTP API: FastAPI app factory, authentication and the operational endpoints.

Everything under ``/v1`` needs ``Authorization: Bearer <credential>`` (``auth.py``);
``/healthz``, ``/readyz`` and ``/metrics`` are open so that orchestrators and Prometheus can
reach them without a secret.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from .. import __version__
from ..business import BusinessSettings
from ..config import Settings
from ..exceptions import BackendError
from ..hub import Hub
from ..security.ratelimit import Limit, RateRule, RateRules
from .auth import authenticate, require
from .business import install_business
from .catalog import catalog, published
from .events import json_response
from .events import router as events_router
from .hooks import hooks
from .hygiene import RateLimitGuard, install_hygiene
from .identity import install_identity
from .problems import BodyLimit, document_problems, install_problem_handlers
from .subscriptions import deadletters, subscriptions
from .webhooks import install_webhooks

log = logging.getLogger(__name__)

__all__ = ["add_operations", "create_app", "create_ops_app"]


def create_app(settings: Settings | None = None, *, hub: Hub | None = None) -> FastAPI:
    """The API over ``hub``, or over a hub built from ``settings`` and run by the app's
    lifespan (what ``forgeline serve`` does)."""
    owned = hub is None
    the_hub = hub if hub is not None else Hub(settings or Settings.load())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await the_hub.start()
            # What starting made (modules, the app, the hub) lives as long as the process:
            # moved out of the collector's sight, so its full collections stop walking it.
            gc.freeze()
        try:
            yield
        finally:
            if owned:
                await the_hub.stop()

    app = FastAPI(
        title="Forgeline",
        version=__version__,
        summary="Durable events between Odoo and the shop floor.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.hub = the_hub
    install_problem_handlers(app)
    document_problems(app)
    app.add_middleware(BodyLimit, limit=the_hub.settings.max_body_bytes)
    settings = the_hub.settings
    # Last: the outermost middleware, so its headers are on every answer, a 413 included.
    install_hygiene(app, cors_origins=settings.cors_origins, force_hsts=settings.force_hsts)
    app.state.guard = RateLimitGuard(
        the_hub.limiter,
        RateRules(
            Limit(settings.rate_limit, settings.rate_burst, name="default"),
            # Guessing client secrets is paced per address, before any principal is known.
            [RateRule(Limit(1.0, 10, name="token"), route="POST /oauth/token", by="client")],
        ),
    )
    install_identity(app)  # /oauth/token, JWKS, /v1/principals, /v1/audit
    # /v1/inventory, /v1/purchase-requests, /v1/customers, /v1/transactions
    install_business(
        app,
        BusinessSettings(
            availability_ttl=settings.availability_ttl,
            availability_deadline=settings.availability_deadline,
            availability_max_stale=settings.availability_max_stale,
        ),
    )
    # Every route under /v1 names the scope it needs; authenticating at the router too means
    # a route added without one still never answers an anonymous caller.
    guarded = [Depends(authenticate)]
    app.include_router(events_router, dependencies=guarded)
    app.include_router(subscriptions, dependencies=guarded)
    app.include_router(deadletters, dependencies=guarded)
    install_webhooks(app)  # /v1/webhooks/endpoints
    app.include_router(catalog, dependencies=[Depends(require("catalog:read"))])
    app.include_router(published)  # /asyncapi.json: open, like /openapi.json
    app.include_router(hooks)  # authenticated per hook, by its own secret

    add_operations(app, the_hub)
    return app


def add_operations(app: FastAPI, hub: Hub) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``: what orchestrators and Prometheus probe."""

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["operations"], summary="The hub can take and deliver events")
    async def readyz() -> Response:
        try:
            await hub.log.head()
            await hub.store.routed_up_to()
        except BackendError as exc:
            log.warning("not ready: %s", exc.detail)  # the detail is for the log: this is open
            return json_response({"status": "unavailable"}, 503)
        if not hub.running:
            return json_response({"status": "starting"}, 503)
        return json_response({"status": "ready", **hub.readiness()})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        await hub.refresh_gauges()
        return Response(hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_ops_app(hub: Hub) -> FastAPI:
    """What a worker process serves: its health and its metrics (delivery counters and
    latencies live in the workers), nothing else."""
    app = FastAPI(title="Forgeline worker", version=__version__, openapi_url=None)
    add_operations(app, hub)
    return app
