"""The REST sink on the deliver stage: one event becomes one templated request to an API.

``sink: {rest: {method, url, headers, body, auth, idempotency_header, success, timeout}}``
(the shape and its checks are ``RestTarget``'s). The URL and header templates are filled
from the event (``{subject}``, ``{data.task}``; URL values percent-encoded); the body is the
event, its data, nothing, a compiled mapping's result or a JSON template. An event that
cannot fill the request (a missing path, a mapping that does not fit) is a permanent failure
naming what is missing: retrying could never make it fit.

Requests go through the ``HttpSender``'s aiohttp session (one connection pool for every HTTP
sink, DESIGN.md §6), and answers are classified by the same rules as the webhook sink
(``sinks.refusal``): ``success`` statuses deliver; 5xx, 408, 425 and 429 are retried,
honouring ``Retry-After``; anything else dead-letters with the status and an excerpt.
Credentials are secret references resolved at each request (``env:``/``file:``), so they
rotate without a restart; OAuth2 tokens come from ``oauth.TokenCache`` and a 401 from the
target refreshes the token and tries once more within the same attempt.
"""

from __future__ import annotations

import asyncio
import base64
import re
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from ..connectors.mqtt.topics import MissingField, Template
from ..envelope import STRUCTURED_CONTENT_TYPE, Event
from ..exceptions import PermanentDeliveryError, TransientDeliveryError
from ..mapping import MappingError
from ..mapping.cache import compiled_mapping
from ..route.subscription import (
    MappingBody,
    OAuth2Auth,
    RestTarget,
    TemplateBody,
    rest_template,
    success_statuses,
)
from ..systems import resolve_secret
from .oauth import TokenCache, scrub
from .paths import event_path
from .sinks import HttpSender, Sent, drain, read_failure, refusal

__all__ = ["RestSender", "render_request"]

_JSON = "application/json"
_ALONE = re.compile(r"\{([^{}]*)\}")


class RestRequest:
    """A request rendered from one event, before credentials are added."""

    __slots__ = ("body", "headers", "url")

    def __init__(self, url: URL, headers: CIMultiDict[str], body: bytes | None) -> None:
        self.url = url
        self.headers = headers
        self.body = body


class RestSender:
    """Sends REST requests over an ``HttpSender``'s session; holds the OAuth2 tokens."""

    def __init__(self, sender: HttpSender, *, tokens: TokenCache | None = None) -> None:
        self._sender = sender
        self.tokens = tokens or TokenCache()

    async def send(self, target: RestTarget, event: Event, timeout: float) -> Sent:
        """One attempt, token fetch and 401 refresh included, within ``timeout`` seconds."""
        limit = min(timeout, target.timeout) if target.timeout else timeout
        request = render_request(target, event)
        try:
            async with asyncio.timeout(limit):
                return await self._exchange(target, request, limit)
        except TimeoutError as exc:
            raise TransientDeliveryError(f"no answer within {limit:g}s") from exc

    async def _exchange(self, target: RestTarget, request: RestRequest, limit: float) -> Sent:
        session = self._sender.session
        auth = target.auth
        headers = request.headers
        token: str | None = None
        credential = ""  # kept out of the excerpt a target might echo it into
        if isinstance(auth, OAuth2Auth):
            token = credential = await self.tokens.token(session, auth, limit)
            headers["Authorization"] = f"Bearer {token}"
        elif auth is not None:
            if auth.type == "bearer":
                credential = resolve_secret(auth.token)
                headers["Authorization"] = f"Bearer {credential}"
            elif auth.type == "basic":
                pair = f"{auth.username}:{resolve_secret(auth.password)}".encode()
                credential = base64.b64encode(pair).decode()  # as it would be echoed
                headers["Authorization"] = f"Basic {credential}"
            else:
                credential = resolve_secret(auth.value)
                headers[auth.name] = credential
        accepted = success_statuses(target.success)
        status, excerpt, retry_after = await self._request(session, target, request, accepted)
        if status == 401 and token is not None and status not in accepted:
            # The token expired early or was revoked: one fresh token, one more try. A second
            # 401 means the client lacks the right, which a retry will not change.
            assert isinstance(auth, OAuth2Auth)
            self.tokens.invalidate(auth, token)
            fresh = await self.tokens.token(session, auth, limit)
            headers["Authorization"] = f"Bearer {fresh}"
            status, excerpt, retry_after = await self._request(session, target, request, accepted)
            excerpt = scrub(excerpt, fresh)
        if status in accepted:
            return Sent(status)
        raise refusal(status, scrub(excerpt, credential), retry_after)

    async def _request(
        self,
        session: aiohttp.ClientSession,
        target: RestTarget,
        request: RestRequest,
        accepted: frozenset[int],
    ) -> tuple[int, str, float | None]:
        try:
            async with session.request(
                target.method,
                request.url,
                data=request.body,
                headers=request.headers,
                # No body, no Content-Type: aiohttp would otherwise claim an octet-stream.
                skip_auto_headers=None if request.body is not None else ("Content-Type",),
                allow_redirects=False,  # a redirect is the target's misconfiguration
            ) as response:
                if response.status in accepted:
                    await drain(response)
                    return response.status, "", None
                return (response.status, *await read_failure(response))
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc


def render_request(target: RestTarget, event: Event) -> RestRequest:
    """The URL, headers and body ``target`` makes of ``event``; a ``PermanentDeliveryError``
    naming the path when the event cannot fill them."""
    document = event.to_dict()

    def scalar(name: str) -> Any:
        value = event_path(document, name)
        if value is None:
            raise PermanentDeliveryError(f"the event's {name!r} is null")
        return value

    url = URL(_fill(target.url, scalar, "the url", _escape), encoded=True)
    # Case-insensitive: a template's "content-type" replaces the default, not joins it.
    # "identity": the shared session does not decompress, and excerpts must stay readable.
    headers: CIMultiDict[str] = CIMultiDict(
        {"User-Agent": "forgeline", "Accept-Encoding": "identity"}
    )
    body, content_type = _body(target, event, document)
    if content_type is not None:
        headers["Content-Type"] = content_type
    if target.idempotency_header is not None:
        headers[target.idempotency_header] = event.id
    for name, text in target.headers.items():
        value = _fill(text, scalar, f"header {name!r}", str)
        if "\r" in value or "\n" in value or "\0" in value:
            raise PermanentDeliveryError(f"header {name!r}: the event's value has a line break")
        headers[name] = value
    return RestRequest(url, headers, body)


def _escape(value: str) -> str:
    # Everything but unreserved characters: a subject "MO/00042" stays one path segment.
    return quote(value, safe="")


@lru_cache(maxsize=4096)
def _template(text: str) -> Template:
    return rest_template(text, "template")  # checked when the subscription was saved


def _fill(text: str, resolve: Any, what: str, escape: Any) -> str:
    try:
        rendered: str = _template(text).render(resolve, escape)
    except MissingField as exc:  # a value that is an object or a list
        raise PermanentDeliveryError(f"the event's {exc.args[0]} cannot fill {what}") from None
    except PermanentDeliveryError as exc:
        raise PermanentDeliveryError(f"{exc.detail} for {what}") from None
    return rendered


def _body(
    target: RestTarget, event: Event, document: dict[str, Any]
) -> tuple[bytes | None, str | None]:
    kind = target.body_kind
    if kind == "none":
        return None, None
    if kind == "event":
        return event.to_json(), STRUCTURED_CONTENT_TYPE
    if kind == "data":
        return _data(event)
    if isinstance(kind, MappingBody):
        # A ConfigError here (a file removed or broken since the subscription was saved) is
        # retried by the dispatcher: fixing the file lets the delivery through.
        mapping = compiled_mapping(kind.mapping)
        try:
            result = mapping(document)
        except MappingError as exc:
            raise PermanentDeliveryError(f"mapping {mapping.name!r}: {exc.detail}") from None
        return orjson.dumps(result, default=str), _JSON
    assert isinstance(kind, TemplateBody)
    return orjson.dumps(_fill_json(kind.template, document, ""), default=str), _JSON


def _data(event: Event) -> tuple[bytes | None, str | None]:
    """The event's data as the body, in its own content type."""
    declared = event.datacontenttype
    if event.data_base64 is not None:
        return base64.b64decode(event.data_base64), declared or "application/octet-stream"
    if event.data is None:
        return None, None
    if isinstance(event.data, str) and declared and "json" not in declared:
        return event.data.encode(), declared  # text/csv, application/xml…: as it came
    return orjson.dumps(event.data), declared if declared and "json" in declared else _JSON


def _fill_json(value: Any, document: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        alone = _ALONE.fullmatch(value)
        if alone is not None:
            # A placeholder alone keeps the value's JSON type: numbers, objects, null.
            return event_path(document, alone.group(1).strip())
        return _fill(value, lambda name: event_path(document, name), f"body{where}", str)
    if isinstance(value, dict):
        return {key: _fill_json(item, document, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_fill_json(item, document, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
