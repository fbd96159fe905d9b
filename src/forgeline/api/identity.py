"""Identity over HTTP: the OAuth2 token endpoint, discovery, and the admin routes for
principals, their API keys and client secrets, signing keys and the audit log.

- ``POST /oauth/token``: client credentials only (RFC 6749 §4.4), the client authenticated
  by ``client_secret_basic`` or ``client_secret_post``, errors in RFC 6749 §5.2's own JSON
  shape (not problem+json: OAuth clients parse ``error``). No refresh tokens: a client asks
  again, its secret is its long-lived credential.
- ``/.well-known/jwks.json`` and ``/.well-known/oauth-authorization-server``: open.
- ``/v1/principals`` (+ ``/{id}/keys``, ``/{id}/secrets``): scope ``principals:admin``,
  within the caller's tenant (another tenant's principal answers 404; the operator names a
  tenant). Bodies refuse unknown fields, so a tenant admin cannot set an id, a tenant or a
  status; nobody grants a scope they do not hold. A new key or secret is shown once, in the
  201 that creates it; lists show prefixes, never hashes.
- ``/v1/signing-keys``: the operator's (the keys sign every tenant's tokens).
- ``GET /v1/audit``: scope ``audit:read``, the caller's tenant.

Every admin action here is audited (``security.auditing``), successes and refusals alike.
Issued tokens are not: a client asks for one every few minutes per process, so they would
bury the admin entries, and every append takes the chain's one lock. The token's ``jti``
and the client's secret ``last_used_at`` say enough; a refused client authentication (an
``auth.failed`` entry) is what an auditor looks for.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.responses import Response

from ..exceptions import Conflict, Forbidden, InvalidInput, NotFound
from ..security import apikeys
from ..security.access import Caller, check_scopes
from ..security.auditing import HUB_TENANT, audit, audited
from ..security.authority import Authority, TokenRequestError, client_secret_prefix
from ..security.store import MAX_PAGE, Credential, Principal, SecurityStore
from .auth import authenticate, require
from .events import json_response

__all__ = ["install_identity"]

#: Tenant names: what the operator may give; ``*`` (the hub's own audit entries) is not one.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: The longest lifetime a key or secret may be given: ten years.
MAX_LIFETIME = 10 * 365 * 86_400
#: How long the old key of a rotation keeps working by default: switching a key in a plant
#: application is a deployment, which takes longer than the signing keys' hour.
DEFAULT_ROTATION_OVERLAP = 86_400
MAX_ROTATION_OVERLAP = 30 * 86_400
_MAX_TOKEN_REQUEST = 8 * 1024
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

oauth = APIRouter(tags=["identity"])
principals = APIRouter(prefix="/v1/principals", tags=["principals"])
signing_keys = APIRouter(prefix="/v1/signing-keys", tags=["signing keys"])
audit_log = APIRouter(prefix="/v1/audit", tags=["audit"])


def install_identity(app: FastAPI) -> None:
    """Add the token endpoint, discovery and the identity admin routes to ``app`` (once: a
    second call changes nothing), after ``app.state.guard`` is set. The hub must have an
    ``authority`` (``Authority``)."""
    if getattr(app.state, "identity_installed", False):
        return
    app.state.identity_installed = True
    # No caller is known on these routes: the rate-limit guard (``hygiene``) keys them by
    # client address, so guessing client secrets is paced. The admin routes get it through
    # ``authenticate``.
    guard = getattr(app.state, "guard", None)
    app.include_router(oauth, dependencies=[Depends(guard)] if guard is not None else [])
    guarded = [Depends(authenticate)]
    for router in (principals, signing_keys, audit_log):
        app.include_router(router, dependencies=guarded)


def _authority(request: Request) -> Authority:
    found = getattr(request.app.state.hub, "authority", None)
    if not isinstance(found, Authority):
        raise RuntimeError("the hub has no Authority: wire hub.authority before serving")
    return found


def _security(request: Request) -> SecurityStore:
    store: SecurityStore = request.app.state.hub.security
    return store


# -- the token endpoint --------------------------------------------------------------------

_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_TOKEN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            _FORM: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "An access token (RFC 6749 §5.1).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        },
        "400": {
            "description": "RFC 6749 §5.2 error: invalid_request, invalid_scope, ...",
            "content": {"application/json": {"schema": _OAUTH_ERROR}},
        },
        "401": {
            "description": "invalid_client",
            "content": {"application/json": {"schema": _OAUTH_ERROR}},
        },
        "429": {
            "description": "Too many attempts from this address (a problem, Retry-After)",
            "content": {"application/problem+json": {"schema": {"type": "object"}}},
        },
    },
}


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="forgeline", charset="UTF-8"'
    body = {"error": error, "error_description": description}
    return json_response(body, status, headers=headers)


@oauth.post(
    "/oauth/token",
    summary="An access token for a client (OAuth2 client credentials)",
    openapi_extra=_TOKEN_FORM,
)
async def token(request: Request) -> Response:
    try:
        form = await _token_form(request)
        client_id, client_secret = _client_credentials(request, form)
        grant = form.get("grant_type")
        if grant is None:
            raise TokenRequestError("invalid_request", "grant_type is required")
        if grant != "client_credentials":
            raise TokenRequestError(
                "unsupported_grant_type", "only client_credentials is supported"
            )
        answer = await _authority(request).issue(client_id, client_secret, form.get("scope"))
    except TokenRequestError as exc:
        if exc.error == "invalid_client" and exc.principal is not None:
            # A known client's secret guessed wrong, revoked, expired: worth an auditor's eye.
            # Unknown client ids are not recorded: anyone could fill the log with them.
            await audit(
                request.app.state.hub,
                None,
                "auth.failed",
                exc.principal.id,
                "denied",
                {"via": "client_secret", "error": exc.error},
                tenant=exc.principal.tenant,
            )
        return _oauth_error(exc.error, exc.detail, exc.status)
    return json_response(answer, headers=_NO_STORE)


async def _token_form(request: Request) -> dict[str, str]:
    """The form's parameters. RFC 6749 §3.2: each at most once; one without a value is as if
    it were absent."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise TokenRequestError("invalid_request", f"send the parameters as {_FORM}")
    body = await request.body()
    if len(body) > _MAX_TOKEN_REQUEST:
        raise TokenRequestError("invalid_request", "the request is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise TokenRequestError("invalid_request", "the form cannot be read") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TokenRequestError("invalid_request", f"{name[:40]} is given twice")
        form[name] = value
    return {name: value for name, value in form.items() if value}


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """(client_id, client_secret) from HTTP Basic (RFC 6749 §2.3.1: each form-urlencoded,
    then joined by ':') or from the form; using both is refused, as the RFC asks."""
    header = request.headers.get("authorization")
    if header is None:
        if "client_secret" not in form or "client_id" not in form:
            raise TokenRequestError("invalid_client", "client authentication failed", status=401)
        return form["client_id"], form["client_secret"]
    if "client_secret" in form:
        raise TokenRequestError(
            "invalid_request", "authenticate the client one way: Basic or the form, not both"
        )
    scheme, _, encoded = header.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        raw_id, separator, raw_secret = decoded.partition(":")
        if not separator:
            raise ValueError("no colon")
    except (ValueError, binascii.Error):
        raise TokenRequestError(
            "invalid_client", "client authentication failed", status=401
        ) from None
    client_id, client_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if form.get("client_id", client_id) != client_id:
        raise TokenRequestError("invalid_request", "client_id differs from the Basic one")
    return client_id, client_secret


# -- discovery -----------------------------------------------------------------------------


@oauth.get("/.well-known/jwks.json", summary="The keys that verify access tokens (JWK Set)")
async def jwks(request: Request) -> Response:
    authority = _authority(request)
    await authority.refresh_if_due()
    # Verifiers may cache it a little; after a rotation they refetch on an unknown kid.
    return json_response(authority.jwks(), headers={"Cache-Control": "public, max-age=300"})


@oauth.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
async def metadata(request: Request) -> Response:
    return json_response(
        _authority(request).metadata(), headers={"Cache-Control": "public, max-age=3600"}
    )


# -- principals ----------------------------------------------------------------------------

Admin = Annotated[Caller, Depends(require("principals:admin"))]


class NewPrincipal(BaseModel):
    """A principal to create. ``tenant`` is for the operator only: a tenant admin creates in
    its own tenant."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["user", "service", "plant", "partner"]
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(default_factory=list, max_length=100)
    environment: Literal["dev", "test", "prod"] | None = Field(
        default=None, description="default: the hub's"
    )
    tenant: str | None = Field(default=None, pattern=TENANT_PATTERN)


class PrincipalChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[str] | None = Field(default=None, max_length=100)
    disabled: StrictBool | None = None


class Unprocessable(InvalidInput):
    """A body that is well-formed but cannot be done (a partner given an admin scope): 422,
    the same problem as a body that failed validation, so clients see one shape."""

    status = 422
    problem = "invalid-request"
    title = "Invalid request"


def _unprocessable(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"body.{field}: {message}", errors=[{"path": f"body.{field}", "message": message}]
    )


def _checked_scopes(kind: str, scopes: list[str]) -> list[str]:
    try:
        return check_scopes(kind, scopes)
    except InvalidInput as exc:
        raise _unprocessable("scopes", exc.detail) from None


def _grantable(caller: Caller, scopes: set[str]) -> None:
    """A tenant admin grants only scopes it holds itself: ``principals:admin`` alone must not
    be a way to every other scope of its tenant."""
    if caller.tenant is None:
        return
    missing = sorted(scope for scope in scopes if not _holds(caller, scope))
    if missing:
        raise Forbidden(f"you cannot grant scopes you do not hold: {', '.join(missing)}")


def _holds(caller: Caller, scope: str) -> bool:
    if "*" in caller.scopes or scope in caller.scopes:
        return True
    base, _, _ = scope.rpartition(":")  # events:read:lot.* narrows events:read
    return base.count(":") == 1 and base in caller.scopes


def _tenant_for(caller: Caller, requested: str | None) -> str:
    if caller.tenant is None:
        if requested is None:
            raise _unprocessable("tenant", "the operator names the principal's tenant")
        return requested
    if requested is not None:
        raise _unprocessable("tenant", "extra inputs are not permitted")
    return caller.tenant


@principals.post("", status_code=201, summary="Create a principal")
async def create_principal(request: Request, caller: Admin, body: NewPrincipal) -> Response:
    hub = request.app.state.hub
    tenant = _tenant_for(caller, body.tenant)
    scopes = _checked_scopes(body.kind, body.scopes)
    environment = body.environment or _authority(request).environment
    async with audited(hub, caller, "principal.create", tenant=tenant) as action:
        action.detail.update(name=body.name, kind=body.kind, scopes=scopes)
        _grantable(caller, set(scopes))
        principal = await _security(request).create_principal(
            tenant, environment, body.kind, body.name, scopes
        )
        action.target = principal.id
    return json_response(
        principal.public(), 201, headers={"Location": f"/v1/principals/{principal.id}"}
    )


@principals.get("", summary="The tenant's principals, in creation order")
async def list_principals(
    request: Request,
    caller: Admin,
    kind: Literal["user", "service", "plant", "partner"] | None = None,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    tenant: Annotated[str | None, Query(pattern=TENANT_PATTERN)] = None,
) -> Response:
    page = await _security(request).list_principals(
        _listed_tenant(caller, tenant), kind=kind, cursor=after, limit=min(limit, MAX_PAGE)
    )
    return json_response(
        {"principals": [p.public() for p in page.items], "next_after": page.next_cursor}
    )


def _listed_tenant(caller: Caller, requested: str | None) -> str:
    """The tenant a list reads: the caller's own; the operator names one."""
    if caller.tenant is None:
        if requested is None:
            raise InvalidInput(
                "the operator names the tenant: ?tenant=acme",
                errors=[{"path": "tenant", "message": "required for the operator"}],
            )
        return requested
    if requested is not None and requested != caller.tenant:
        raise Forbidden("you read your own tenant only")
    return caller.tenant


@principals.get("/{id}", summary="One principal")
async def get_principal(request: Request, caller: Admin, id: str) -> Response:
    principal = await _security(request).get_principal(id, tenant=caller.tenant)
    return json_response(principal.public())


@principals.patch("/{id}", summary="Change a principal's scopes, or disable (enable) it")
async def update_principal(
    request: Request, caller: Admin, id: str, body: PrincipalChange
) -> Response:
    store = _security(request)
    if body.scopes is None and body.disabled is None:
        return json_response((await store.get_principal(id, tenant=caller.tenant)).public())
    async with audited(request.app.state.hub, caller, "principal.update", target=id) as action:
        current = await store.get_principal(id, tenant=caller.tenant)
        action.tenant = current.tenant
        scopes = None
        if body.scopes is not None:
            scopes = _checked_scopes(current.kind, body.scopes)
            action.detail["scopes"] = scopes
            # Only what is added must be held: taking a scope away needs no more than admin.
            _grantable(caller, set(scopes) - set(current.scopes))
        if body.disabled is not None:
            action.detail["disabled"] = body.disabled
        changed = await store.update_principal(
            id, tenant=caller.tenant, scopes=scopes, disabled=body.disabled
        )
        _authority(request).forget_keys()  # other API processes follow within a second
    return json_response(changed.public())


# -- API keys and client secrets -----------------------------------------------------------


class NewCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_in: int | None = Field(
        default=None, ge=1, le=MAX_LIFETIME, description="seconds; default: never expires"
    )


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: int = Field(
        default=DEFAULT_ROTATION_OVERLAP,
        ge=0,
        le=MAX_ROTATION_OVERLAP,
        description="how long the old one keeps working",
    )
    expires_in: int | None = Field(
        default=None, ge=1, le=MAX_LIFETIME, description="default: the old one's lifetime"
    )


CredentialKind = Literal["api_key", "client_secret"]
_SHOWN_AS: dict[str, str] = {"api_key": "key", "client_secret": "secret"}
_ACTION: dict[str, str] = {"api_key": "api_key", "client_secret": "client_secret"}


def _mint(kind: CredentialKind, principal: Principal) -> tuple[str, str, str]:
    """(plaintext, prefix, hash) of a new credential of ``principal``."""
    if kind == "api_key":
        plaintext, parts = apikeys.new_key(principal.environment)
        return plaintext, parts.prefix, parts.key_hash
    plaintext, hashed = apikeys.new_client_secret()
    return plaintext, client_secret_prefix(plaintext), hashed


async def _with_fresh_prefix(
    kind: CredentialKind,
    principal: Principal,
    store: Callable[[str, str], Awaitable[Credential]],
) -> tuple[str, Credential]:
    """Mint and store; a prefix already taken (40-60 random bits: rare) means mint again."""
    for attempt in range(3):
        plaintext, prefix, hashed = _mint(kind, principal)
        try:
            return plaintext, await store(prefix, hashed)
        except Conflict:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _shown_once(kind: CredentialKind, plaintext: str, credential: Credential) -> dict[str, Any]:
    body = {
        "id": credential.id,
        _SHOWN_AS[kind]: plaintext,
        "prefix": credential.prefix,
        "principal_id": credential.principal_id,
        "created_at": credential.created_at,
        "expires_at": credential.expires_at,
    }
    if kind == "client_secret":
        body["client_id"] = credential.principal_id
    return body


async def _own_credential(
    store: SecurityStore, principal_id: str, credential_id: str, kind: str, tenant: str | None
) -> Credential:
    """The credential ``credential_id`` if it is ``principal_id``'s and of ``kind``: the
    path's principal is checked, not only the credential's tenant."""
    for credential in await store.list_credentials(principal_id, tenant=tenant):
        if credential.id == credential_id and credential.kind == kind:
            return credential
    raise NotFound(f"no {_SHOWN_AS[kind]} {credential_id!r} of principal {principal_id!r}")


def _credential_routes(segment: str, kind: CredentialKind) -> None:
    noun = _SHOWN_AS[kind]
    action_name = _ACTION[kind]

    async def create(
        request: Request, caller: Admin, id: str, body: NewCredential | None = None
    ) -> Response:
        store = _security(request)
        lifetime = body.expires_in if body is not None else None
        async with audited(
            request.app.state.hub, caller, f"{action_name}.create", target=id
        ) as action:
            principal = await store.get_principal(id, tenant=caller.tenant)
            action.tenant = principal.tenant
            # A credential carries its principal's scopes: minting one is granting them.
            _grantable(caller, set(principal.scopes))
            expires_at = None if lifetime is None else _authority(request).clock() + lifetime
            plaintext, credential = await _with_fresh_prefix(
                kind,
                principal,
                lambda prefix, hashed: store.add_credential(
                    principal.id, kind, prefix, hashed, expires_at=expires_at, tenant=caller.tenant
                ),
            )
            action.target = credential.id
            action.detail.update(principal=principal.id, prefix=credential.prefix)
        return json_response(_shown_once(kind, plaintext, credential), 201, headers=_NO_STORE)

    async def list_(request: Request, caller: Admin, id: str) -> Response:
        found = await _security(request).list_credentials(id, tenant=caller.tenant)
        return json_response({f"{noun}s": [c.public() for c in found if c.kind == kind]})

    async def revoke(request: Request, caller: Admin, id: str, credential_id: str) -> Response:
        store = _security(request)
        async with audited(
            request.app.state.hub, caller, f"{action_name}.revoke", target=credential_id
        ) as action:
            action.detail["principal"] = id
            principal = await store.get_principal(id, tenant=caller.tenant)
            action.tenant = principal.tenant
            await _own_credential(store, principal.id, credential_id, kind, caller.tenant)
            revoked = await store.revoke_credential(credential_id, tenant=caller.tenant)
            _authority(request).forget_keys()  # other API processes follow within a second
            action.detail["prefix"] = revoked.prefix
        return json_response(revoked.public())

    async def rotate(
        request: Request,
        caller: Admin,
        id: str,
        credential_id: str,
        body: Rotation | None = None,
    ) -> Response:
        store = _security(request)
        rotation = body or Rotation()
        now = _authority(request).clock()
        async with audited(
            request.app.state.hub, caller, f"{action_name}.rotate", target=credential_id
        ) as action:
            action.detail["principal"] = id
            principal = await store.get_principal(id, tenant=caller.tenant)
            action.tenant = principal.tenant
            _grantable(caller, set(principal.scopes))  # a new credential is a new grant
            old = await _own_credential(store, principal.id, credential_id, kind, caller.tenant)
            overlap_until = apikeys.rotated_expiry(
                old.expires_at, now=now, overlap=rotation.overlap_seconds
            )
            if rotation.expires_in is not None:
                expires_at: float | None = now + rotation.expires_in
            elif old.expires_at is not None:
                # The same lifetime the old one was given.
                expires_at = now + max(1.0, old.expires_at - old.created_at)
            else:
                expires_at = None
            plaintext, new = await _with_fresh_prefix(
                kind,
                principal,
                lambda prefix, hashed: store.rotate_credential(
                    old.id,
                    tenant=caller.tenant,
                    prefix=prefix,
                    secret_hash=hashed,
                    expires_at=expires_at,
                    overlap_until=overlap_until,
                ),
            )
            action.detail.update(old_prefix=old.prefix, new=new.id, prefix=new.prefix)
            _authority(request).forget_keys()  # the old key's new expiry applies here at once
        answer = _shown_once(kind, plaintext, new)
        answer["replaces"] = {"id": old.id, "expires_at": overlap_until}
        return json_response(answer, 201, headers=_NO_STORE)

    base = f"/{{id}}/{segment}"
    principals.add_api_route(
        base, create, methods=["POST"], status_code=201, name=f"create_{kind}",
        summary=f"A new {noun} for the principal (shown once)",
    )  # fmt: skip
    principals.add_api_route(
        base, list_, methods=["GET"], name=f"list_{kind}s",
        summary=f"The principal's {noun}s (prefixes and dates, never the {noun}s)",
    )  # fmt: skip
    principals.add_api_route(
        f"{base}/{{credential_id}}/revoke", revoke, methods=["POST"], name=f"revoke_{kind}",
        summary=f"Revoke a {noun} at once",
    )  # fmt: skip
    principals.add_api_route(
        f"{base}/{{credential_id}}/rotate", rotate, methods=["POST"], status_code=201,
        name=f"rotate_{kind}",
        summary=f"A new {noun}; the old one keeps working for overlap_seconds",
    )  # fmt: skip


_credential_routes("keys", "api_key")
_credential_routes("secrets", "client_secret")


# -- signing keys --------------------------------------------------------------------------


async def _operator(request: Request) -> Caller:
    caller = await authenticate(request)
    if caller.tenant is not None or caller.kind != "operator":
        raise Forbidden("signing keys are the hub operator's")
    return caller


Operator = Annotated[Caller, Depends(_operator)]


@signing_keys.get("", summary="The token signing keys that verify (public parts)")
async def list_signing_keys(request: Request, caller: Operator) -> Response:
    authority = _authority(request)
    since = authority.clock() - authority.ring.overlap
    records = await _security(request).active_signing_keys(since)
    return json_response({"keys": [record.public() for record in records]})


@signing_keys.post("/rotate", status_code=201, summary="Rotate the token signing key")
async def rotate_signing_key(request: Request, caller: Operator) -> Response:
    authority = _authority(request)
    async with audited(
        request.app.state.hub, caller, "signing_key.rotate", tenant=HUB_TENANT
    ) as action:
        key = await authority.rotate()
        action.target = key.kid
        action.detail["alg"] = key.alg
    return json_response({"kid": key.kid, "alg": key.alg, "created_at": key.created_at}, 201)


# -- audit ---------------------------------------------------------------------------------

_AUDIT_TENANT = re.compile(TENANT_PATTERN)


@audit_log.get("", summary="The tenant's audit log, oldest first")
async def read_audit(
    request: Request,
    caller: Annotated[Caller, Depends(require("audit:read"))],
    action: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[datetime | None, Query(description="entries at or after")] = None,
    after: Annotated[int | None, Query(ge=0, description="next_after of the page before")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    tenant: Annotated[str | None, Query(description="the operator's choice; * = the hub")] = None,
) -> Response:
    if caller.tenant is None:
        if tenant is None or not (tenant == HUB_TENANT or _AUDIT_TENANT.fullmatch(tenant)):
            raise InvalidInput(
                "the operator names the tenant: ?tenant=acme, or ?tenant=* for the hub's own",
                errors=[{"path": "tenant", "message": "required for the operator"}],
            )
        read = tenant
    else:
        read = _listed_tenant(caller, tenant)
    page = await _security(request).query_audit(
        read,
        action=action,
        since=None if since is None else since.timestamp(),
        cursor=None if after is None else str(after),
        limit=min(limit, MAX_PAGE),
    )
    next_after = None if page.next_cursor is None else int(page.next_cursor)
    return json_response(
        {"entries": [record.as_dict() for record in page.items], "next_after": next_after}
    )
