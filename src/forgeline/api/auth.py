"""Authentication and authorization of API requests: who calls (a ``Caller``) and whether
the route lets them.

Every ``/v1`` route declares what it needs with ``Depends(require("scope"))``; the
dependency answers the caller, so a handler that narrows further (an event type, a tenant's
object) has it at hand. Credentials come only in ``Authorization: Bearer <credential>``:
the operator's bootstrap key, a principal's API key, or an access token from
``POST /oauth/token``. A credential in the query string is refused outright, even a valid
one: URLs end up in proxy logs, browser history and Referer headers.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..exceptions import Forbidden, Unauthorized
from ..security.access import OPERATOR, Caller

__all__ = ["authenticate", "require"]

#: Query parameters that carry credentials in other APIs: refused here, whatever they hold.
_QUERY_CREDENTIALS = frozenset({"access_token", "api_key", "apikey", "token", "key"})


#: Declares the bearer scheme in the OpenAPI document; reads nothing itself (``authenticate``
#: parses the header, the same way for every credential).
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (flk_...), an access token from /oauth/token, or the operator key",
)
Declared = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def authenticate(request: Request, _declared: Declared = None) -> Caller:
    """The request's caller, computed once per request; ``Unauthorized`` otherwise."""
    found: Caller | None = getattr(request.state, "caller", None)
    if found is not None:
        return found
    guard = getattr(request.app.state, "guard", None)
    try:
        if _QUERY_CREDENTIALS & {name.lower() for name in request.query_params}:
            raise Unauthorized(
                "credentials go in the Authorization header, never in the URL's query string"
            )
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("send Authorization: Bearer <API key or access token>")
        caller = await _identify(request, credential)
    except Unauthorized:
        if guard is not None:
            await guard.check(request)  # failures spend the address's budget: no brute force
        raise
    request.state.caller = caller
    if guard is not None:
        await guard.check(request)  # one budget per principal (and route, where a rule says)
    return caller


async def _identify(request: Request, credential: str) -> Caller:
    hub = request.app.state.hub
    operator: str = hub.admin_key
    if operator and hmac.compare_digest(credential.encode(), operator.encode()):
        return OPERATOR
    identify = getattr(hub, "identify", None)
    if identify is not None:
        caller: Caller | None = await identify(credential)
        if caller is not None:
            return caller
    raise Unauthorized("unknown or expired credential")


def require(scope: str) -> Callable[[Request], Awaitable[Caller]]:
    """A dependency: the caller, who must hold ``scope`` (403 otherwise)."""

    async def check(request: Request, _declared: Declared = None) -> Caller:
        caller = await authenticate(request)
        if not caller.allows(scope):
            raise Forbidden(f"this route needs the {scope!r} scope")
        return caller

    check.__name__ = f"require_{scope.replace(':', '_').replace('-', '_')}"
    return check
