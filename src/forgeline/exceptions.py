"""Every error Forgeline raises, in one tree.

Drivers' errors (sqlite3, aiohttp, asyncpg, nats, aiomqtt) are translated where they enter,
into the most specific class here, with ``raise ... from exc``. Errors that reach HTTP carry
their status and an RFC 9457 problem ``type`` slug, so the API layer never guesses.

    ForgelineError
    ├── InvalidInput                    400  bad input: fix the request, do not retry
    │   ├── InvalidEvent                400  an event breaks the CloudEvents/Forgeline rules
    │   ├── InvalidSubscription         422  a subscription that could never fire correctly
    │   ├── UnsupportedMediaType        415
    │   └── PayloadTooLarge             413  body or batch over the configured limit
    ├── Unauthorized                    401  no or unknown credentials
    ├── NotFound                        404
    ├── Conflict                        409  the object exists or changed under you
    ├── ConfigError                     --   a config file or setting that cannot be used
    ├── BackendError                    503  a log/store engine failed; the request may be retried
    │   └── BackendUnavailable          503  the engine cannot be reached at all
    └── DeliveryError                   --   one delivery attempt failed (never reaches HTTP)
        ├── TransientDeliveryError           retry on schedule (timeouts, 5xx, 429, network)
        └── PermanentDeliveryError           dead-letter at once (4xx other than 408/425/429)

Control flow is not failure: nothing here is raised to skip or re-queue work.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "Forbidden",
    "ForgelineError",
    "InvalidEvent",
    "InvalidInput",
    "InvalidSubscription",
    "NotFound",
    "PayloadTooLarge",
    "PermanentDeliveryError",
    "TooManyRequests",
    "TransientDeliveryError",
    "Unauthorized",
    "UnsupportedMediaType",
]


class ForgelineError(Exception):
    """Root of every Forgeline error."""

    status: int = 500
    problem: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # Field-level findings (``{"path": "...", "message": "..."}``), shown in problem bodies.
        self.errors = errors or []

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments would be lost by the default pickling of exceptions.
        return (_rebuild, (type(self), self.detail, self.errors))


def _rebuild(
    cls: type[ForgelineError], detail: str, errors: list[dict[str, str]]
) -> ForgelineError:
    return cls(detail, errors=errors)


class InvalidInput(ForgelineError):
    status = 400
    problem = "invalid-input"
    title = "Invalid input"


class InvalidEvent(InvalidInput):
    problem = "invalid-event"
    title = "Invalid event"


class InvalidSubscription(InvalidInput):
    status = 422
    problem = "invalid-subscription"
    title = "Invalid subscription"


class UnsupportedMediaType(InvalidInput):
    status = 415
    problem = "unsupported-media-type"
    title = "Unsupported media type"


class PayloadTooLarge(InvalidInput):
    status = 413
    problem = "payload-too-large"
    title = "Payload too large"


class Unauthorized(ForgelineError):
    status = 401
    problem = "unauthorized"
    title = "Unauthorized"


class Forbidden(ForgelineError):
    """Authenticated, but the route needs a scope the caller does not hold."""

    status = 403
    problem = "forbidden"
    title = "Forbidden"


class TooManyRequests(ForgelineError):
    """A rate limit: ``retry_after`` seconds until the next request may pass."""

    status = 429
    problem = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: float = 1.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_limited, (self.detail, self.retry_after))


def _rebuild_limited(detail: str, retry_after: float) -> TooManyRequests:
    return TooManyRequests(detail, retry_after=retry_after)


class NotFound(ForgelineError):
    status = 404
    problem = "not-found"
    title = "Not found"


class Conflict(ForgelineError):
    status = 409
    problem = "conflict"
    title = "Conflict"


class ConfigError(ForgelineError):
    problem = "config-error"
    title = "Configuration error"


class BackendError(ForgelineError):
    status = 503
    problem = "backend-error"
    title = "Storage backend error"


class BackendUnavailable(BackendError):
    problem = "backend-unavailable"
    title = "Storage backend unavailable"


class DeliveryError(ForgelineError):
    """One delivery attempt failed. ``status`` is the sink's HTTP status, if it answered."""

    problem = "delivery-failed"
    title = "Delivery failed"

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        response_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.response_excerpt = response_excerpt
        # Seconds the sink asked us to wait (429/503 Retry-After); the schedule honours it.
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_delivery,
            (type(self), self.detail, self.http_status, self.response_excerpt, self.retry_after),
        )


def _rebuild_delivery(
    cls: type[DeliveryError],
    detail: str,
    http_status: int | None,
    excerpt: str | None,
    retry_after: float | None,
) -> DeliveryError:
    return cls(detail, http_status=http_status, response_excerpt=excerpt, retry_after=retry_after)


class TransientDeliveryError(DeliveryError):
    """Worth retrying: the sink was down, slow, overloaded or briefly broken."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help (the sink rejected the request itself): dead-letter now."""
