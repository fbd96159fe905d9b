"""HTTP hygiene around every answer of the API: security headers, CORS, rate limits, page caps.

``install_hygiene`` puts the pieces on an app in the right order; ``RateLimitGuard`` is the
dependency that spends a caller's rate budget once the route (and, after authentication, the
principal) is known; ``page_size`` caps list sizes. Errors stay RFC 9457 problems
(``problems.py``): nothing here writes a body of its own except the last-resort 500.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ConfigError, InvalidInput, TooManyRequests
from ..security.ratelimit import RateLimiter, RateRules, limit_headers
from .problems import problem

__all__ = [
    "CORS_ALLOWED_HEADERS",
    "EXTRA_HEADERS",
    "RateLimitGuard",
    "SecurityHeaders",
    "add_response_headers",
    "install_hygiene",
    "page_size",
]

#: Scope key of headers that code inside the app computed for the answer (the rate-limit
#: fields): handlers may return a ``Response`` of their own, so only the outermost middleware
#: can be sure to add them.
EXTRA_HEADERS = "forgeline.response_headers"

_ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    # API answers carry events, prices, schedules: no cache on the way may keep them.
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    # Nothing here is meant to be framed; the CSP form is the current one, XFO the fallback.
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)

#: Request headers a browser page on an allowed origin may send: credentials travel as a
#: bearer token (not cookies), events in binary mode as ``ce-*`` headers.
CORS_ALLOWED_HEADERS: tuple[str, ...] = (
    "authorization",
    "content-type",
    "idempotency-key",
    "traceparent",
    "tracestate",
    *(
        f"ce-{name}"
        for name in (
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "dataschema",
            "partitionkey",
            "correlationid",
            "causationid",
            "traceparent",
            "tenant",
        )
    ),
)


def add_response_headers(scope: Scope, headers: dict[str, str]) -> None:
    """Have ``SecurityHeaders`` add ``headers`` to this request's answer, whatever it is."""
    extra: list[tuple[bytes, bytes]] = scope.setdefault(EXTRA_HEADERS, [])
    extra.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())


class SecurityHeaders:
    """Pure ASGI middleware (no ``BaseHTTPMiddleware``: it costs a task and a queue per
    request) that adds the security headers to every HTTP answer, unless the answer set its
    own value of one (a future console page choosing its own CSP, say).

    HSTS only on https requests (``scope["scheme"]``, which uvicorn takes from
    ``X-Forwarded-Proto`` for trusted proxies), or always with ``force_hsts`` behind a TLS
    terminator that does not say so: over plain http the header means nothing, and on a
    plant's internal http listener it would break the next https-less visit.

    An exception that escapes the app would reach Starlette's ServerErrorMiddleware, which
    sits outside every user middleware and answers without us: so this one answers the 500
    problem itself (the same body as ``problems.py``) and re-raises, leaving the logging to
    the app's handler and the server.
    """

    def __init__(
        self, app: ASGIApp, *, force_hsts: bool = False, hsts_max_age: int = 31_536_000
    ) -> None:
        self.app = app
        self.force_hsts = force_hsts
        hsts = (b"strict-transport-security", f"max-age={hsts_max_age}".encode())
        self._https = (*_ALWAYS, hsts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = self._headers(scope, message.get("headers", []))
            await send(message)

        try:
            await self.app(scope, receive, secured)
        except Exception:
            if not started:
                answer = problem(
                    500, "internal-error", "Internal error", "the hub failed; see its log"
                )
                await answer(scope, receive, secured)
            raise

    def _headers(self, scope: Scope, given: Iterable[tuple[bytes, bytes]]) -> list[Any]:
        headers = list(given)
        present = {name.lower() for name, _ in headers}
        secure = self._https if self.force_hsts or scope.get("scheme") == "https" else _ALWAYS
        headers.extend(h for h in secure if h[0] not in present)
        extra = scope.get(EXTRA_HEADERS)
        if extra:
            headers.extend(h for h in extra if h[0] not in present)
        return headers


def _checked_origin(origin: str) -> str:
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "*" in origin
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            f"CORS origin {origin!r}: give an exact origin such as https://mes.plant.example "
            "(scheme, host and port; no path, no wildcard)"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def install_hygiene(
    app: FastAPI, *, cors_origins: Iterable[str] = (), force_hsts: bool = False
) -> None:
    """Add CORS (only when ``cors_origins`` is given) and the security headers to ``app``.

    Call it after every other ``add_middleware`` (``BodyLimit`` included): the last added is
    the outermost, and the headers must wrap every answer, a 413 from ``BodyLimit`` too.

    CORS is closed by default: no ``Access-Control-*`` header at all, so a browser page on
    another origin cannot read any answer. With origins, only those exact origins, without
    credentials (the API authenticates by bearer token; cookies are never an API credential).
    """
    origins = [_checked_origin(origin) for origin in cors_origins]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=["Location", "RateLimit", "RateLimit-Policy", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders, force_hsts=force_hsts)


def _caller_from_state(request: Request) -> tuple[str | None, str | None]:
    """(id, kind) of the caller that authentication left in ``request.state.caller``
    (``auth.authenticate``); (None, None) before authentication."""
    caller = getattr(request.state, "caller", None)
    return getattr(caller, "id", None), getattr(caller, "kind", None)


class RateLimitGuard:
    """A FastAPI dependency that spends one unit of the caller's budget, or refuses with 429.

    A dependency and not a middleware: the route's template and the principal exist only
    once routing and authentication ran. Put it after ``authenticate`` in a router's
    dependencies (alone on routes reached without a caller, like the token endpoint, whose
    rule is then keyed by client address). The RateLimit fields go on every answer, the 429
    problem included, through ``add_response_headers``; the 429 also carries Retry-After.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        rules: RateRules,
        *,
        principal: Callable[[Request], tuple[str | None, str | None]] = _caller_from_state,
    ) -> None:
        self.limiter = limiter
        self.rules = rules
        self.principal = principal

    async def __call__(self, request: Request) -> None:
        await self.check(request)

    async def check(self, request: Request) -> None:
        """The guard itself, for an authentication dependency to call once it knows the
        principal: one FastAPI dependency instead of two (each costs a few µs a request)."""
        route = getattr(request.scope.get("route"), "path", None) or request.url.path
        principal, kind = self.principal(request)
        client = request.client.host if request.client else "unknown"
        bucket = self.rules.resolve(
            request.method, route, client=client, principal=principal, kind=kind
        )
        decision = await self.limiter.hit(bucket.key, bucket.limit)
        add_response_headers(request.scope, limit_headers(decision, bucket.limit))
        if not decision.allowed:
            wait = math.ceil(decision.retry_after)
            raise TooManyRequests(
                f"over the {bucket.limit.name!r} rate limit; retry in {wait} s",
                retry_after=decision.retry_after,
            )


def page_size(requested: int | None, *, maximum: int, default: int = 100) -> int:
    """The number of items a list answer holds: ``requested`` clamped to ``maximum``.

    Clamped, not refused: every list answers with a cursor to the next page, so a client that
    asks for more than the cap still reads everything, in more pages; a 400 would break
    clients written against another hub's cap for no gain, since the cap (not the refusal)
    is what protects the server. Google's AIP-158 asks for the same; GitHub clamps
    ``per_page`` alike. A size below 1 is a mistake worth saying, and says so.
    """
    if requested is None:
        return min(default, maximum)
    if requested < 1:
        raise InvalidInput(
            f"limit must be at least 1 (got {requested})",
            errors=[{"path": "limit", "message": "must be at least 1"}],
        )
    return min(requested, maximum)
