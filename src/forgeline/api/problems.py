"""RFC 9457 problem responses, and the ASGI guard that caps request bodies.

Every error leaves the API as ``application/problem+json`` with a stable ``type``; nothing
from a driver or a stack trace is ever in it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import (
    BackendError,
    BackendUnavailable,
    ForgelineError,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)

__all__ = ["BodyLimit", "document_problems", "install_problem_handlers", "problem"]

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: What a storage engine's failure tells the caller; the engine's own text (hosts, users, SQL)
#: goes to the log only.
BACKEND_DETAIL = "the hub's storage cannot answer now; retry later"


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:forgeline:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return Response(orjson.dumps(body), status, headers, media_type=PROBLEM_CONTENT_TYPE)


def _logged_path(request: Request) -> str:
    """The route's template where there is one: a path may hold a secret (an Odoo webhook's
    token), and logs are read by more people than secrets are."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    return str(template) if template else request.url.path


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ForgelineError)
    async def forgeline_error(request: Request, exc: ForgelineError) -> Response:
        if isinstance(exc, BackendError):
            # An engine outage fails every request alike: one line each, no traceback flood.
            log.error("%s %s failed: %s", request.method, _logged_path(request), exc)
        elif exc.status >= 500:
            log.error("%s %s failed: %s", request.method, _logged_path(request), exc, exc_info=exc)
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Bearer realm="forgeline"'
        elif isinstance(exc, TooManyRequests):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        # The stores raise these two classes themselves, with the driver's message inside;
        # their subclasses (ErpUnavailable...) are written for the caller.
        detail = BACKEND_DETAIL if type(exc) in (BackendError, BackendUnavailable) else exc.detail
        return problem(
            exc.status, exc.problem, exc.title, detail, errors=exc.errors, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"path": ".".join(str(part) for part in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        summary = f"{errors[0]['path']}: {errors[0]['message']}" if errors else "invalid request"
        return problem(422, "invalid-request", "Invalid request", summary, errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error"
        )
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, slug, str(exc.detail), str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, _logged_path(request), exc_info=exc)
        return problem(500, "internal-error", "Internal error", "the hub failed; see its log")


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, by Content-Length or while streaming,
    before a handler can buffer them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        response = problem(
            413, "payload-too-large", "Payload too large", f"request body over {self.limit} bytes"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_ANY_ROUTE = {
    400: "Invalid input", 404: "Not found", 409: "Conflict", 413: "Body too large",
    415: "Unsupported media type", 422: "Invalid request", 503: "A backend cannot answer now",
}  # fmt: skip
_GUARDED = {401: "No or unknown credential", 403: "Scope missing", 429: "Rate limited"}


def document_problems(app: FastAPI) -> None:
    """Say in the OpenAPI document what every operation really answers on failure: an RFC
    9457 problem (not FastAPI's default ``HTTPValidationError`` JSON), for the statuses any
    route can give, and 401/403/429 on those that take a bearer credential."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
        content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                statuses = dict(_ANY_ROUTE)
                if operation.get("security"):
                    statuses.update(_GUARDED)
                for status, description in statuses.items():
                    known = responses.get(str(status))
                    if known is None or (status == 422 and "HTTPValidationError" in str(known)):
                        responses[str(status)] = {"description": description, "content": content}
        return document

    app.openapi = openapi  # type: ignore[method-assign]
