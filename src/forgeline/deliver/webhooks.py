"""The webhook endpoints' sink: one signed POST per attempt; the dispatcher owns retries.

Each attempt of a ``WebhookSink`` delivery posts the event (CloudEvents JSON) - or, when the
endpoint's subscription maps, the mapped data - to the endpoint's URL with the Standard
Webhooks headers: ``webhook-id`` (the event id, or a digest of it when it cannot be a header
value: the same on every retry, so the receiver can deduplicate), ``webhook-timestamp`` and
``webhook-signature`` by every secret still signing (after a rotation, the old one and the new
one), ``Content-Type: application/json`` and ``User-Agent: Forgeline-Webhooks/<version>``.

What the answer means:

* 2xx: delivered. Nothing else is success.
* 3xx: failed, and never followed (the URL was checked; where it points was not).
* 410 Gone: the receiver says the endpoint is gone: the delivery is dead and the endpoint is
  disabled (a ``webhook.endpoint.disabled.v1`` event is appended).
* ``Webhook-Delivery: abort`` (or ``abort-message``; any case) on a non-2xx answer: the
  receiver asks us to stop trying this message (it can never take it): the delivery is dead
  at once with that reason, to be replayed by hand if ever. The endpoint's other messages
  carry on, and it does not count towards the endpoint's failing streak.
* any other answer, a timeout or a connection error: retried on the endpoint's schedule, as
  Svix and Stripe do - a receiver's 404 or 401 during a deploy is usually temporary. 429 and
  503 honour ``Retry-After``.
* a destination the egress policy refuses (the name now resolves to an internal address; the
  connection goes only to addresses the policy validated): dead at once, with the rule.

An endpoint whose every attempt has failed for ``disable_after`` seconds (five days unless
configured) is disabled at its next failure, with the same event. A success ends the streak.

Endpoints and their unsealed secrets are cached in memory for a few seconds (every attempt
would otherwise cost a database read and an AES-GCM open); a change made through this
process's API is seen at once (``forget``), one made through another within ``CACHE_TTL``.
HTTP goes through a session of its own, whose connector is the egress policy's: a webhook
URL is a tenant's choice, and must never reach what the hub's other sinks may.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson

from .. import __version__
from ..envelope import Event
from ..exceptions import (
    BackendError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from ..route.subscription import WebhookSink
from ..store import Subscription
from ..webhooks.egress import EgressPolicy, EgressRefused
from ..webhooks.endpoint_store import Endpoint, EndpointStore
from ..webhooks.signing import Signer, message_id
from .sinks import Sent, client_timeout, drain, read_failure

__all__ = [
    "ABORT_HEADER",
    "CACHE_TTL",
    "DEFAULT_DISABLE_AFTER",
    "DISABLED_TYPE",
    "SOURCE",
    "TEST_TYPE",
    "USER_AGENT",
    "SealingKeys",
    "TestOutcome",
    "WebhookSender",
]

log = logging.getLogger(__name__)

USER_AGENT = f"Forgeline-Webhooks/{__version__}"
#: A receiver's answer header that stops the retries of one message: ``abort``.
ABORT_HEADER = "Webhook-Delivery"
_ABORT_VALUES = frozenset({"abort", "abort-message"})
#: Seconds of failing without one success after which an endpoint is disabled.
DEFAULT_DISABLE_AFTER = 5 * 86_400.0
#: Seconds an endpoint (URL, secrets, health) is used from memory before it is read again.
CACHE_TTL = 5.0
SOURCE = "forgeline/webhooks"
DISABLED_TYPE = "webhook.endpoint.disabled.v1"
TEST_TYPE = "webhook.test.v1"
_RETRY_AFTER_STATUSES = frozenset({429, 503})

Publish = Callable[[Sequence[Event]], Awaitable[Any]]
Changed = Callable[[], Awaitable[None]]


class SealingKeys(Protocol):
    """Secrets at rest (``SecretBox``): the sender opens an endpoint's, bound to their row."""

    def seal(self, plaintext: bytes, *, context: bytes) -> str: ...

    def open(self, token: str, *, context: bytes) -> bytes: ...


class _Gone(PermanentDeliveryError):
    """410: the endpoint is to be disabled."""


class _Aborted(PermanentDeliveryError):
    """``Webhook-Delivery: abort``: this message is dead, the endpoint is fine."""


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """What a test send learned: never the receiver's body (it may echo what it should not,
    and the caller may not be the receiver's owner)."""

    event_id: str
    delivered: bool
    status: int | None
    duration_ms: float
    error: str | None = None


@dataclass(slots=True)
class _Loaded:
    endpoint: Endpoint
    keys: list[tuple[str, float | None]]  # unsealed secret, its expiry
    loaded_at: float
    failing_since: float | None
    _signer: Signer | None = None
    _signer_until: float = 0.0  # when one of its secrets expires

    def signer(self, now: float) -> Signer:
        """The secrets signing at ``now``: after a rotation, the old one until it expires."""
        if self._signer is None or now >= self._signer_until:
            keys = [key for key, expires in self.keys if expires is None or expires > now]
            if not keys:
                raise PermanentDeliveryError("the endpoint has no signing secret")
            self._signer = Signer(keys)
            expiries = [expires for _, expires in self.keys if expires is not None]
            self._signer_until = min((at for at in expiries if at > now), default=math.inf)
        return self._signer


class WebhookSender:
    """Signs and posts webhook deliveries; disables endpoints that are gone or keep failing.

    ``publish`` appends the ``webhook.endpoint.disabled.v1`` events (the hub's ``publish``);
    ``changed`` is awaited after an endpoint was disabled here, so the hub stops routing and
    claiming for it (its ``refresh`` of the subscription table, then a wake)."""

    def __init__(
        self,
        endpoints: EndpointStore,
        box: SealingKeys,
        egress: EgressPolicy,
        *,
        publish: Publish,
        changed: Changed | None = None,
        disable_after: float = DEFAULT_DISABLE_AFTER,
        connections: int = 256,
        cache_ttl: float = CACHE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = endpoints
        self.box = box
        self.egress = egress
        self.disable_after = disable_after
        self.clock = clock
        self._publish = publish
        self._changed = changed
        self._connections = connections
        self._cache_ttl = cache_ttl
        self._cache: dict[str, _Loaded] = {}
        self._loading: dict[str, asyncio.Future[_Loaded]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=self.egress.connector(limit=self._connections),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def forget(self, endpoint_id: str) -> None:
        """Read the endpoint again at its next use (it was changed or deleted)."""
        self._cache.pop(endpoint_id, None)

    # -- deliveries ----------------------------------------------------------------------------

    async def send(self, sub: Subscription, event: Event, timeout: float) -> Sent:
        """One attempt of ``sub``'s delivery of ``event`` (mapped already, if it maps)."""
        sink = sub.spec.sink
        if not isinstance(sink, WebhookSink):
            raise PermanentDeliveryError("not a webhook subscription")
        endpoint_id = sink.webhook.endpoint
        loaded = self._cached(endpoint_id) or await self._load(endpoint_id)
        endpoint = loaded.endpoint
        if endpoint.subscription.id != sub.id:
            # Only the endpoint's own subscription signs with its secrets: another (another
            # tenant's, say) naming it would otherwise have its events vouched for.
            raise PermanentDeliveryError(
                f"webhook endpoint {endpoint.id} belongs to another subscription"
            )
        body = orjson.dumps(event.data) if sub.spec.map is not None else event.to_json()
        try:
            status = await self._post(loaded, webhook_id(event), body, timeout)
        except _Aborted:
            raise
        except _Gone as exc:
            await self._keep_going(self.disable(endpoint.id, exc.detail, trigger="gone"))
            raise
        except DeliveryError:
            await self._keep_going(self._failing(loaded))
            raise
        if loaded.failing_since is not None:
            loaded.failing_since = None
            await self._keep_going(self.endpoints.mark_healthy(endpoint.id))
        return Sent(status)

    async def test(self, endpoint_id: str, timeout: float = 15.0) -> TestOutcome:
        """Send a ``webhook.test.v1`` event to this endpoint only (disabled or not), once,
        with the endpoint's current secrets; the endpoint's state is left as it was."""
        self.forget(endpoint_id)
        loaded = await self._load(endpoint_id)
        endpoint = loaded.endpoint
        tenant = {"tenant": endpoint.tenant} if endpoint.tenant is not None else {}
        event = Event.new(
            TEST_TYPE,
            SOURCE,
            {"endpoint": endpoint.id, "message": "a test event from Forgeline"},
            subject=endpoint.id,
            **tenant,
        )
        started = time.perf_counter()
        try:
            status = await self._post(loaded, webhook_id(event), event.to_json(), timeout)
        except DeliveryError as exc:
            return TestOutcome(event.id, False, exc.http_status, _since(started), exc.detail)
        return TestOutcome(event.id, True, status, _since(started))

    async def _post(self, loaded: _Loaded, event_id: str, body: bytes, timeout: float) -> int:
        assert self._session is not None, "WebhookSender.open() first"
        now = self.clock()
        headers = loaded.signer(now).headers(event_id, body, now=now)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        try:
            async with self._session.post(
                loaded.endpoint.url,
                data=body,
                headers=headers,
                timeout=client_timeout(timeout),
                allow_redirects=False,  # checked where it points, not where it redirects
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await drain(response)
                    return status
                excerpt, retry_after = await read_failure(response)
                abort = response.headers.get(ABORT_HEADER, "").strip().lower() in _ABORT_VALUES
        except TimeoutError as exc:
            raise TransientDeliveryError(f"no answer within {timeout:g}s") from exc
        except EgressRefused as exc:
            raise PermanentDeliveryError(f"refused by the egress policy: {exc.detail}") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if abort:
            raise _Aborted(
                f"HTTP {status} with {ABORT_HEADER}: abort: the receiver stopped this message",
                http_status=status,
                response_excerpt=excerpt,
            )
        if status == 410:
            raise _Gone(
                "HTTP 410 Gone: the receiver retired the endpoint",
                http_status=status,
                response_excerpt=excerpt,
            )
        detail = f"HTTP {status}" + (" (redirects are not followed)" if status < 400 else "")
        raise TransientDeliveryError(
            detail,
            http_status=status,
            response_excerpt=excerpt,
            retry_after=retry_after if status in _RETRY_AFTER_STATUSES else None,
        )

    # -- the endpoint's health -------------------------------------------------------------

    async def disable(
        self, endpoint_id: str, reason: str, *, trigger: str = "failing"
    ) -> Endpoint | None:
        """Disable the endpoint and announce it (``webhook.endpoint.disabled.v1``); None
        when it was disabled already (by another attempt, or another process: one event)."""
        endpoint = await self.endpoints.set_enabled(endpoint_id, False, reason, self.clock())
        self.forget(endpoint_id)
        if endpoint is None:
            return None
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
        await self._publish([disabled_event(endpoint, reason, trigger)])
        if self._changed is not None:
            await self._changed()
        return endpoint

    async def _failing(self, loaded: _Loaded) -> None:
        now = self.clock()
        since = loaded.failing_since
        if since is None:
            loaded.failing_since = now  # concurrent failures need not all write it
            since = await self.endpoints.mark_failing(loaded.endpoint.id, now)
            loaded.failing_since = since
        if since is not None and now - since >= self.disable_after:
            failing = _iso(since)
            await self.disable(
                loaded.endpoint.id,
                f"every attempt since {failing} failed (disabled after "
                f"{self.disable_after:g}s of failures)",
            )

    @staticmethod
    async def _keep_going(work: Awaitable[Any]) -> None:
        """Bookkeeping must not change an attempt's outcome: a store that is away now is
        logged, and the next attempt tries again."""
        try:
            await work
        except BackendError as exc:
            log.warning("webhook endpoint bookkeeping failed: %s", exc.detail)

    # -- the endpoint, from memory ---------------------------------------------------------

    def _cached(self, endpoint_id: str) -> _Loaded | None:
        found = self._cache.get(endpoint_id)
        if found is not None and self.clock() - found.loaded_at < self._cache_ttl:
            return found
        return None

    async def _load(self, endpoint_id: str) -> _Loaded:
        now = self.clock()
        found = self._cached(endpoint_id)
        if found is not None:
            return found
        pending = self._loading.get(endpoint_id)
        if pending is not None:  # one read for the attempts that all found it stale
            return await asyncio.shield(pending)
        future: asyncio.Future[_Loaded] = asyncio.get_running_loop().create_future()
        self._loading[endpoint_id] = future
        try:
            loaded = await self._read(endpoint_id, now)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(loaded)
            return loaded
        finally:
            del self._loading[endpoint_id]

    async def _read(self, endpoint_id: str, now: float) -> _Loaded:
        endpoint = await self.endpoints.get(endpoint_id)
        if endpoint is None:
            self._cache.pop(endpoint_id, None)
            raise PermanentDeliveryError(f"no webhook endpoint {endpoint_id} (deleted?)")
        keys = [
            (self.box.open(secret.sealed, context=secret.context()).decode(), secret.expires_at)
            for secret in endpoint.signing(now)
        ]
        loaded = _Loaded(endpoint, keys, now, endpoint.failing_since)
        self._cache[endpoint_id] = loaded
        return loaded


def disabled_event(endpoint: Endpoint, reason: str, trigger: str) -> Event:
    """``webhook.endpoint.disabled.v1``, in the endpoint's tenant (its own subscriptions, and
    the operator's, can tell someone)."""
    tenant = {"tenant": endpoint.tenant} if endpoint.tenant is not None else {}
    data = {
        "endpoint": endpoint.id,
        "description": endpoint.description,
        "trigger": trigger,
        "reason": reason,
        "disabled_at": _iso(endpoint.disabled_at or time.time()),
        "failing_since": _iso(endpoint.failing_since) if endpoint.failing_since else None,
    }
    return Event.new(DISABLED_TYPE, SOURCE, data, subject=endpoint.id, **tenant)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def webhook_id(event: Event) -> str:
    """The ``webhook-id`` receivers deduplicate on: the same on every retry, and unique as the
    log's dedup key is - (source, id), not the id alone, which two sources may share."""
    return message_id(f"{event.source}\x1f{event.id}")
