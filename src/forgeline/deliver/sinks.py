"""Sinks: the last hop of the data path. One attempt each; the dispatcher owns retries.

The webhook sink (``HttpSender``: CloudEvents structured POST) lives here, with the rules
every HTTP sink shares (``refusal``: what a status means; ``read_failure``, ``drain``); the
templated REST sink is ``rest.py`` and uses the same session and rules.

HTTP goes through a shared aiohttp session: on this machine kind aiohttp sustained 3-4x
httpx's request rate at the concurrency delivery runs (DESIGN.md §6). aiohttp's errors are
translated here into ``TransientDeliveryError`` (try again later) or
``PermanentDeliveryError`` (the sink refused the request itself: dead-letter now).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache, partial
from time import time

import aiohttp

from ..envelope import STRUCTURED_CONTENT_TYPE, Event
from ..exceptions import PermanentDeliveryError, TransientDeliveryError
from ..log import EventLog
from ..route.subscription import HttpSink, PublishSink
from ..systems import resolve_secret
from .paths import event_path

__all__ = [
    "EXCERPT_LIMIT",
    "HttpSender",
    "Sent",
    "client_timeout",
    "drain",
    "publish_derived",
    "read_failure",
    "refusal",
]

#: Bytes of a failing response kept with the attempt: enough to read an error, never a dump.
EXCERPT_LIMIT = 1024
# Statuses worth retrying: timeouts, "too early", rate limits and server-side failures.
_TRANSIENT_4XX = frozenset({408, 425, 429})
_DRAIN_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Sent:
    status: int | None


class HttpSender:
    """Posts events as CloudEvents structured JSON, every attempt keyed by the event id.

    ``connector`` makes the session's connector (called with ``limit``): the egress policy's
    for the sinks a tenant chose, which must reach only what it allows (``EgressPolicy``);
    aiohttp's own, resolving names for a minute, for the operator's."""

    def __init__(
        self,
        *,
        connections: int = 256,
        connector: Callable[..., aiohttp.TCPConnector] | None = None,
    ) -> None:
        self._connections = connections
        self._connector = connector or partial(aiohttp.TCPConnector, ttl_dns_cache=60)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            connector = self._connector(limit=self._connections)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
            )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (and connection pool), for the other HTTP sinks."""
        assert self._session is not None, "HttpSender.open() first"
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, sink: HttpSink, event: Event, timeout: float) -> Sent:
        assert self._session is not None, "HttpSender.open() first"
        headers = {
            "Content-Type": STRUCTURED_CONTENT_TYPE,
            "Idempotency-Key": event.id,
            "User-Agent": "forgeline",
            **sink.headers,
        }
        auth = sink.auth
        if auth is not None:
            if auth.type == "bearer":
                headers["Authorization"] = f"Bearer {resolve_secret(auth.token)}"
            elif auth.type == "basic":
                pair = f"{auth.username}:{resolve_secret(auth.password)}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            else:
                headers[auth.name] = resolve_secret(auth.value)
        try:
            async with self._session.post(
                sink.url,
                data=event.to_json(),
                headers=headers,
                timeout=client_timeout(timeout),
                allow_redirects=False,  # a redirect is the sink's misconfiguration, not success
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await drain(response)
                    return Sent(status)
                excerpt, retry_after = await read_failure(response)
        except TimeoutError as exc:
            raise TransientDeliveryError(f"no answer within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        raise refusal(status, excerpt, retry_after)


def refusal(
    status: int, excerpt: str, retry_after: float | None, detail: str | None = None
) -> TransientDeliveryError | PermanentDeliveryError:
    """What an answer that is not success means: worth retrying (5xx, 408, 425, 429, with the
    sink's ``Retry-After``) or not (any other status: the sink refused the request itself)."""
    detail = detail or f"HTTP {status}"
    if status >= 500 or status in _TRANSIENT_4XX:
        return TransientDeliveryError(
            detail, http_status=status, response_excerpt=excerpt, retry_after=retry_after
        )
    return PermanentDeliveryError(detail, http_status=status, response_excerpt=excerpt)


async def read_failure(response: aiohttp.ClientResponse) -> tuple[str, float | None]:
    """A failing answer's body excerpt and its ``Retry-After`` in seconds."""
    excerpt = await _excerpt(response)
    return excerpt, _retry_after(response.headers.get("Retry-After"))


async def drain(response: aiohttp.ClientResponse) -> None:
    """Read a small body to its end so the connection goes back to the pool; past the limit
    stop reading (chunked or not) and let aiohttp close the connection instead."""
    drained = 0
    while drained <= _DRAIN_LIMIT and not response.content.at_eof():
        chunk = await response.content.read(16 * 1024)
        if not chunk:
            return
        drained += len(chunk)


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    try:
        chunk = await response.content.read(EXCERPT_LIMIT)
    except (TimeoutError, aiohttp.ClientError):
        return ""
    return chunk.decode("utf-8", "replace")


@lru_cache(maxsize=64)
def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """aiohttp's total timeout of ``seconds``, made once per value, not once per attempt."""
    return aiohttp.ClientTimeout(total=seconds)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


async def publish_derived(
    log: EventLog,
    sink: PublishSink,
    subscription_id: str,
    event: Event,
    *,
    origin: str | None = None,
) -> Sent:
    """Append the derived event. Its id is a digest of (subscription, original event), so a
    retried attempt appends nothing new: the log's ``(source, id)`` dedup absorbs it.

    ``origin``: the system the original came from, kept in the ``origin`` extension so that
    ownership rules still know who sent a change after a flow turned it into another event."""
    digest = hashlib.sha256(f"{subscription_id}\0{event.source}\0{event.id}".encode()).hexdigest()
    extensions = dict(event.extensions)
    extensions["causationid"] = event.id
    extensions.setdefault("correlationid", event.id)
    if origin is not None:
        extensions["origin"] = origin
    if sink.publish.tenant is not None:
        # A flow hands the event to a tenant (a partner's share of the plant's events).
        extensions["tenant"] = sink.publish.tenant
    subject = event.subject
    if sink.publish.subject is not None:
        value = event_path(event.to_dict(), sink.publish.subject)
        if value is None or isinstance(value, dict | list) or value == "":
            raise PermanentDeliveryError(
                f"{sink.publish.subject!r} is {value!r}: not a subject for the new event"
            )
        subject = str(value)
        if "partitionkey" in extensions and extensions["partitionkey"] == event.subject:
            del extensions["partitionkey"]  # it followed the old subject: follow the new one
    derived = Event(
        id=digest[:32],
        source=sink.publish.source,
        type=sink.publish.type,
        subject=subject,
        time=event.time,
        data=event.data,
        datacontenttype=event.datacontenttype,
        data_base64=event.data_base64,
        extensions=extensions,
    )
    await log.append([derived])
    return Sent(None)
