"""OAuth2 client credentials (RFC 6749 §4.4) for the REST sink, on the deliver stage.

A REST target with ``auth: {type: oauth2, …}`` gets a bearer token from its ``token_url``.
Tokens are cached per (token_url, client_id, scope, audience) until shortly before their
``expires_in``, shared by every subscription with that key, and fetched once however many
deliveries ask at the same moment. The client secret is a reference (``env:``/``file:``)
read at each fetch, so a rotated secret is used from the next fetch without a restart.

Token endpoint failures are classified like any HTTP answer (``sinks.refusal``): a 4xx
(``invalid_client``: a wrong id or secret) dead-letters the delivery with the endpoint's
reason; a 5xx, 429 or a network failure is retried on the delivery's schedule. Neither the
secret nor a token ever appears in an error, an excerpt or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from ..exceptions import PermanentDeliveryError, TransientDeliveryError
from ..route.subscription import OAuth2Auth
from ..systems import resolve_secret
from .sinks import read_failure, refusal

__all__ = ["DEFAULT_LIFETIME", "TokenCache", "scrub"]

#: Seconds a token is used when the endpoint does not say (``expires_in`` is optional); a
#: target's 401 still forces a refresh sooner.
DEFAULT_LIFETIME = 300.0
# Refresh this long before expiry (at most a minute, at most a tenth of the lifetime), so a
# token does not expire between being taken from the cache and reaching the target.
_EARLY_MAX = 60.0
_EARLY_SHARE = 0.1
_MAX_TOKEN_RESPONSE = 64 * 1024

_Key = tuple[str, str, str | None, str | None, str]


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float  # on the cache's monotonic clock


class TokenCache:
    """Bearer tokens by client, fetched on demand and shared by concurrent deliveries."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[_Key, _Token] = {}
        self._fetching: dict[_Key, asyncio.Task[_Token]] = {}

    async def token(self, session: aiohttp.ClientSession, auth: OAuth2Auth, timeout: float) -> str:
        """A token for ``auth``: the cached one while it is fresh, else a new one."""
        key = _key(auth)
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at > self._clock():
            return cached.value
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(session, auth, key, timeout))
            self._fetching[key] = task
            task.add_done_callback(lambda done: self._fetched(key, done))
        # Shielded: a delivery that gives up (its own timeout) must not cancel the fetch the
        # others are waiting for.
        return (await asyncio.shield(task)).value

    def invalidate(self, auth: OAuth2Auth, token: str) -> None:
        """The target refused ``token`` (401): forget it, unless another delivery has already
        replaced it with a newer one."""
        key = _key(auth)
        cached = self._tokens.get(key)
        if cached is not None and cached.value == token:
            del self._tokens[key]

    def _fetched(self, key: _Key, done: asyncio.Task[_Token]) -> None:
        if self._fetching.get(key) is done:
            del self._fetching[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have left already

    async def _fetch(
        self, session: aiohttp.ClientSession, auth: OAuth2Auth, key: _Key, timeout: float
    ) -> _Token:
        secret = resolve_secret(auth.client_secret)
        form = {"grant_type": "client_credentials"}
        if auth.scope:
            form["scope"] = auth.scope
        if auth.audience:
            form["audience"] = auth.audience
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the shared session does not decompress
            "User-Agent": "forgeline",
        }
        if auth.client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts form-encoded before the Basic encoding.
            pair = f"{quote(auth.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = auth.client_id
            form["client_secret"] = secret
        where = f"OAuth2 token endpoint {auth.token_url}"
        try:
            async with session.post(
                auth.token_url,
                data=form,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    body = await response.content.read(_MAX_TOKEN_RESPONSE)
                    token = self._parse(body, where)
                    self._tokens[key] = token
                    return token
                excerpt, retry_after = await read_failure(response)
        except TimeoutError as exc:
            raise TransientDeliveryError(f"{where}: no answer within {timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{where}: {type(exc).__name__}: {exc}") from exc
        excerpt = scrub(excerpt, secret)
        raise refusal(status, excerpt, retry_after, f"{where}: HTTP {status}{_reason(excerpt)}")

    def _parse(self, body: bytes, where: str) -> _Token:
        try:
            answer: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        value = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(value, str) or not value:
            # A 200 without a token is a wrong token_url (a web page) more often than a hiccup.
            raise PermanentDeliveryError(f"{where}: the answer has no access_token")
        kind = answer.get("token_type", "bearer")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise PermanentDeliveryError(f"{where}: token_type {kind!r} is not bearer")
        lifetime = answer.get("expires_in")
        try:
            seconds = float(lifetime) if lifetime is not None else DEFAULT_LIFETIME
        except (TypeError, ValueError):
            seconds = DEFAULT_LIFETIME
        early = min(_EARLY_MAX, max(0.0, seconds) * _EARLY_SHARE)
        return _Token(value, self._clock() + seconds - early)


def _key(auth: OAuth2Auth) -> _Key:
    # The secret's reference too: a token is shared only by subscriptions holding the same
    # credential. Without it, a tenant naming another tenant's token_url and client_id (no
    # secret) was handed that tenant's cached token, sent on to a URL of its choosing.
    return (auth.token_url, auth.client_id, auth.scope, auth.audience, auth.client_secret)


def scrub(text: str, *secrets: str) -> str:
    """``text`` without ``secrets`` (as sent or percent-encoded): an endpoint that echoes its
    request must not put a credential into a dead letter."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form:
                text = text.replace(form, "***")
    return text


def _reason(excerpt: str) -> str:
    """RFC 6749 §5.2's ``error`` and ``error_description``, when the answer has them."""
    try:
        answer = orjson.loads(excerpt)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return ""
    description = answer.get("error_description")
    text = f" {answer['error']}"
    if isinstance(description, str) and description:
        text += f": {description[:300]}"
    return text
