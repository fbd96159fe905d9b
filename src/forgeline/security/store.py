"""The security store: principals, their credentials, the token issuer's signing keys,
Idempotency-Key records and the hash-chained audit log, in the store's database.

Governance around every stage of the data path: the API's authentication reads principals and
credentials here, the token endpoint its signing keys, ``POST /v1/purchase-requests`` its
idempotency records, and every admin action ends as an audit entry. The tables are the store's
(migration ``0003``), on SQLite or PostgreSQL, chosen by the store URL
(``open_security_store``), built as the cross-reference is (``forgeline.ownership.xref``):
this ABC holds the rules once (validation, ids, what a conflict is, the audit chain's checks);
the backends (``_sqlite.py``, ``_postgres.py``) supply one small primitive per operation.

Tenancy: every principal belongs to one tenant. Calls that take ``tenant`` answer ``NotFound``
for another tenant's object, exactly as for a missing one, so ids cannot be probed;
``tenant=None`` is the hub operator's view of every tenant.

Nothing secret is kept in clear: a credential is a lookup prefix and a hash (``apikeys``
makes both), a signing key's private half arrives sealed (``secretbox``). ``public()`` gives
each object as the API may show it.
"""

from __future__ import annotations

import json
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast, get_args

from ulid import ULID

from .._lifecycle import AsyncResource
from ..exceptions import ConfigError, Conflict, InvalidInput, NotFound
from .audit import (
    AuditEntry,
    AuditRecord,
    Extent,
    Head,
    VerifyResult,
    canonical_detail,
    verify_chain,
)

__all__ = [
    "CLAIM_LEASE",
    "IDEMPOTENCY_TTL",
    "MAX_PAGE",
    "TOUCH_INTERVAL",
    "Credential",
    "CredentialKind",
    "CredentialState",
    "Environment",
    "IdempotencyRecord",
    "Page",
    "Principal",
    "PrincipalKind",
    "SecurityStore",
    "SigningKeyRecord",
    "open_security_store",
    "refusal",
]

T = TypeVar("T")

Environment = Literal["dev", "test", "prod"]
PrincipalKind = Literal["user", "service", "plant", "partner"]
CredentialKind = Literal["api_key", "client_secret"]
CredentialState = Literal["active", "expired", "revoked"]

ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
PRINCIPAL_KINDS: tuple[str, ...] = get_args(PrincipalKind)
CREDENTIAL_KINDS: tuple[str, ...] = get_args(CredentialKind)

#: An Idempotency-Key is remembered this long (seconds); after that the key is free again.
IDEMPOTENCY_TTL = 24 * 3600.0
#: A claim still unanswered after this long (seconds) belonged to a request that died (a
#: crash between the claim and its answer): the key's next request may run. The requests
#: themselves must then be safe to run twice - a purchase request finds its RFQ by marker.
CLAIM_LEASE = 300.0
#: ``last_used_at`` is written at most this often per credential (seconds): it answers "is
#: this key still in use?", which needs minutes, not one write per request.
TOUCH_INTERVAL = 60.0
#: The largest page a list answers.
MAX_PAGE = 1000

_MAX_NAME = 128
_MAX_TEXT = 256
_MAX_SCOPES = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEQ = re.compile(r"[0-9]{1,18}")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), so no space, '"' or '\'.
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")


# -- what is stored ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone or something that calls the API: bound to one tenant and one environment (the
    audience of its tokens), with the scopes it may be granted."""

    id: str
    tenant: str
    environment: Environment
    kind: PrincipalKind
    name: str
    scopes: tuple[str, ...]
    created_at: float
    updated_at: float
    disabled_at: float | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "environment": self.environment,
            "kind": self.kind,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "disabled": self.disabled,
            "disabled_at": self.disabled_at,
        }


@dataclass(frozen=True, slots=True)
class Credential:
    """An API key or OAuth client secret of one principal. ``secret_hash`` is kept out of
    ``repr`` and ``public()``, so neither a log line nor a response can carry it."""

    id: str
    principal_id: str
    kind: CredentialKind
    prefix: str
    secret_hash: str = field(repr=False)
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def state(self, now: float | None = None) -> CredentialState:
        """``revoked`` wins over ``expired``: the stronger reason is the one to report."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal_id": self.principal_id,
            "kind": self.kind,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "state": self.state(),
        }


def refusal(credential: Credential, principal: Principal, now: float | None = None) -> str | None:
    """Why ``credential`` (as ``credential_by_prefix`` found it) may not authenticate, or None
    when it may. The reason is for the audit log; the caller answers a generic 401."""
    state = credential.state(now)
    if state != "active":
        return f"credential {state}"
    if principal.disabled:
        return "principal disabled"
    return None


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    """A token-signing key as stored: the private JWK sealed by ``secretbox``."""

    kid: str
    alg: str
    sealed_private: str = field(repr=False)
    public_jwk: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    retired_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "public_jwk": self.public_jwk,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first request made with one Idempotency-Key, and its answer once it has one."""

    tenant: str
    principal: str
    key: str
    #: The caller's digest of the request (method, path, body): same key, other digest = misuse.
    digest: str
    status: int | None
    body: bytes | None
    created_at: float
    completed_at: float | None = None

    @property
    def in_progress(self) -> bool:
        """The first request has not answered yet: a second one must not run, nor replay."""
        return self.status is None

    def same_request(self, digest: str) -> bool:
        return self.digest == digest


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paged list; pass ``next_cursor`` back for the next, None = end."""

    items: list[T]
    next_cursor: str | None


# -- the store ---------------------------------------------------------------------------------


class SecurityStore(AsyncResource, ABC):
    """Principals, credentials, signing keys, idempotency records and the audit log."""

    # -- principals ------------------------------------------------------------------------

    async def create_principal(
        self,
        tenant: str,
        environment: str,
        kind: str,
        name: str,
        scopes: Iterable[str] = (),
    ) -> Principal:
        """A new principal, id ``pr_<ULID>``. ``Conflict`` when ``tenant`` has ``name``."""
        _check_text("tenant", tenant, _MAX_NAME)
        _check_choice("environment", environment, ENVIRONMENTS)
        _check_choice("kind", kind, PRINCIPAL_KINDS)
        _check_text("name", name, _MAX_NAME)
        now = time.time()
        principal = Principal(
            id=f"pr_{ULID()}",
            tenant=tenant,
            environment=cast(Environment, environment),
            kind=cast(PrincipalKind, kind),
            name=name,
            scopes=_scopes(scopes),
            created_at=now,
            updated_at=now,
        )
        await self._insert_principal(principal)
        return principal

    async def get_principal(self, id: str, *, tenant: str | None = None) -> Principal:
        """The principal ``id``; ``NotFound`` if missing or (``tenant`` given) another's."""
        _check_text("id", id, _MAX_NAME)
        found = await self._get_principal(id)
        if found is None or (tenant is not None and found.tenant != tenant):
            raise _no_principal(id)
        return found

    async def list_principals(
        self,
        tenant: str,
        *,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Principal]:
        """``tenant``'s principals (of ``kind``) in creation order, ``limit`` at a time."""
        _check_text("tenant", tenant, _MAX_NAME)
        if kind is not None:
            _check_choice("kind", kind, PRINCIPAL_KINDS)
        if cursor is not None:
            _check_text("cursor", cursor, _MAX_NAME)
        _check_limit(limit)
        rows = await self._list_principals(tenant, kind, cursor or "", limit + 1)
        return _page(rows, limit, lambda principal: principal.id)

    async def update_principal(
        self,
        id: str,
        *,
        tenant: str | None,
        scopes: Iterable[str] | None = None,
        disabled: bool | None = None,
    ) -> Principal:
        """Replace ``scopes`` and/or disable (or enable) the principal; None leaves a field.
        Disabling twice keeps the first ``disabled_at``. ``NotFound`` as ``get_principal``."""
        _check_text("id", id, _MAX_NAME)
        if disabled is not None and not isinstance(disabled, bool):
            raise _invalid("disabled", "must be true or false")
        joined = None if scopes is None else " ".join(_scopes(scopes))
        if joined is None and disabled is None:
            return await self.get_principal(id, tenant=tenant)
        found = await self._update_principal(id, tenant, joined, disabled, time.time())
        if found is None:
            raise _no_principal(id)
        return found

    # -- credentials -----------------------------------------------------------------------

    async def add_credential(
        self,
        principal_id: str,
        kind: str,
        prefix: str,
        secret_hash: str,
        *,
        expires_at: float | None,
        tenant: str | None,
    ) -> Credential:
        """A new credential (id ``cr_<ULID>``) of ``principal_id``. ``NotFound`` when the
        principal is missing or another tenant's; ``Conflict`` when ``prefix`` is taken."""
        _check_text("principal_id", principal_id, _MAX_NAME)
        credential = Credential(
            id=f"cr_{ULID()}",
            principal_id=principal_id,
            kind=cast(CredentialKind, _check_choice("kind", kind, CREDENTIAL_KINDS)),
            prefix=_check_text("prefix", prefix, _MAX_NAME),
            secret_hash=_check_text("secret_hash", secret_hash, _MAX_TEXT),
            created_at=time.time(),
            expires_at=_check_time("expires_at", expires_at),
        )
        await self._insert_credential(credential, tenant)
        return credential

    async def rotate_credential(
        self,
        id: str,
        *,
        tenant: str | None,
        prefix: str,
        secret_hash: str,
        expires_at: float | None,
        overlap_until: float,
    ) -> Credential:
        """Rotation with overlap, in one transaction: a new credential of the same principal
        and kind, and the old one's expiry brought forward to ``overlap_until`` (never pushed
        back), so clients can switch while both work. Answers the new credential.

        ``NotFound`` as ``revoke_credential``; ``Conflict`` when the old one is revoked (a
        leaked key is revoked, not rotated) or ``prefix`` is taken."""
        _check_text("id", id, _MAX_NAME)
        _check_text("prefix", prefix, _MAX_NAME)
        _check_text("secret_hash", secret_hash, _MAX_TEXT)
        _check_time("expires_at", expires_at)
        _epoch("overlap_until", overlap_until)
        new = await self._rotate_credential(
            id,
            tenant,
            new_id=f"cr_{ULID()}",
            prefix=prefix,
            secret_hash=secret_hash,
            created_at=time.time(),
            expires_at=expires_at,
            overlap_until=overlap_until,
        )
        if new is None:
            raise _no_credential(id)
        return new

    async def credential_by_prefix(self, prefix: str) -> tuple[Credential, Principal] | None:
        """The credential with ``prefix`` and its principal (one query), whatever their state:
        the caller refuses revoked, expired or disabled ones (``refusal``). None if unknown;
        garbage (as a presented key may be) is unknown too, never an error."""
        if not isinstance(prefix, str) or not prefix or len(prefix) > _MAX_NAME:
            return None
        return await self._credential_by_prefix(prefix)

    async def list_credentials(self, principal_id: str, *, tenant: str | None) -> list[Credential]:
        """The principal's credentials, oldest first; ``NotFound`` as ``get_principal``."""
        await self.get_principal(principal_id, tenant=tenant)
        return await self._list_credentials(principal_id)

    async def revoke_credential(self, id: str, *, tenant: str | None) -> Credential:
        """Revoke at once. Revoking again keeps the first ``revoked_at``. ``NotFound`` when
        missing or (``tenant`` given) another tenant's."""
        _check_text("id", id, _MAX_NAME)
        found = await self._revoke_credential(id, tenant, time.time())
        if found is None:
            raise _no_credential(id)
        return found

    async def touch_credential(self, credential: Credential, *, now: float | None = None) -> bool:
        """Record that ``credential`` was just used, at most once per ``TOUCH_INTERVAL``: the
        copy in hand says whether a write is due, so the hot path usually costs nothing, and
        the write's own condition keeps concurrent requests from writing it again. True if
        written."""
        now = time.time() if now is None else now
        stale_before = now - TOUCH_INTERVAL
        if credential.last_used_at is not None and credential.last_used_at >= stale_before:
            return False
        return await self._touch_credential(credential.id, now, stale_before)

    # -- signing keys ----------------------------------------------------------------------

    async def add_signing_key(
        self,
        kid: str,
        alg: str,
        sealed_private: str,
        public_jwk: Mapping[str, Any],
        created_at: float,
    ) -> SigningKeyRecord:
        """Store a new signing key. ``Conflict`` when ``kid`` exists; ``InvalidInput`` when
        ``public_jwk`` holds private members (a JWK's ``d``, ``p``, ``q``…), which would be
        stored, and served, in clear."""
        _check_text("kid", kid, _MAX_NAME)
        _check_text("alg", alg, 32)
        if not isinstance(sealed_private, str) or not sealed_private:
            raise _invalid("sealed_private", "must be the sealed private key (a string)")
        if not isinstance(public_jwk, Mapping) or not public_jwk:
            raise _invalid("public_jwk", "must be a JWK object")
        private = sorted(set(public_jwk) & {"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
        if private:
            raise _invalid("public_jwk", f"holds private members {', '.join(private)}")
        key = SigningKeyRecord(
            kid=kid,
            alg=alg,
            sealed_private=sealed_private,
            public_jwk=dict(public_jwk),
            created_at=_epoch("created_at", created_at),
        )
        await self._insert_signing_key(key)
        return key

    async def active_signing_keys(self, since: float) -> list[SigningKeyRecord]:
        """Keys not retired, or retired after ``since`` (now minus the overlap window: they
        still verify and stay in the JWKS), oldest first. The newest unretired one signs."""
        return await self._active_signing_keys(_epoch("since", since))

    async def retire_signing_key(self, kid: str, at: float) -> SigningKeyRecord:
        """Retire ``kid`` as of ``at``. Retiring again keeps the first time (a retried rotation
        must not stretch the overlap). ``NotFound`` for an unknown kid."""
        _check_text("kid", kid, _MAX_NAME)
        found = await self._retire_signing_key(kid, _epoch("at", at))
        if found is None:
            raise NotFound(f"no signing key {kid!r}")
        return found

    # -- idempotency -----------------------------------------------------------------------

    async def remember_request(
        self, tenant: str, principal: str, key: str, digest: str, *, now: float | None = None
    ) -> IdempotencyRecord | None:
        """Claim ``key`` for this request, atomically: None when this caller is the first (or
        the key's record expired after ``IDEMPOTENCY_TTL``): run the request, then
        ``complete_request`` (or ``release_request`` if it failed and may be retried).
        Otherwise the stored record: ``in_progress`` (another request with this key is
        running: answer 409), another ``digest`` (the key reused for another request: reject),
        or the first answer to replay."""
        _check_request_key(tenant, principal, key, digest)
        now = time.time() if now is None else now
        claim = IdempotencyRecord(tenant, principal, key, digest, None, None, now)
        return await self._remember(claim, now - IDEMPOTENCY_TTL, now - CLAIM_LEASE)

    async def complete_request(
        self,
        tenant: str,
        principal: str,
        key: str,
        digest: str,
        status: int,
        body: bytes,
        *,
        now: float | None = None,
    ) -> None:
        """Store the answer of the request that ``remember_request`` let through. ``Conflict``
        when no such request is in progress (completed already, released, or expired)."""
        _check_request_key(tenant, principal, key, digest)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise _invalid("status", "must be an HTTP status code")
        if not isinstance(body, bytes):
            raise _invalid("body", "must be bytes")
        now = time.time() if now is None else now
        if not await self._complete(tenant, principal, key, digest, status, body, now):
            raise Conflict(f"no request with Idempotency-Key {key!r} is in progress")

    async def release_request(self, tenant: str, principal: str, key: str, digest: str) -> bool:
        """Forget an in-progress claim whose request failed before it had an answer worth
        replaying (a 503 from Odoo), so the client's retry can run. True if released."""
        _check_request_key(tenant, principal, key, digest)
        return await self._release(tenant, principal, key, digest)

    async def purge_requests(self, *, now: float | None = None) -> int:
        """Delete records older than ``IDEMPOTENCY_TTL`` (they are ignored already); the
        number deleted. For the retention task."""
        now = time.time() if now is None else now
        return await self._purge_requests(now - IDEMPOTENCY_TTL)

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append ``entry`` to the chain: seq, time and hash are assigned inside one
        transaction that serialises appenders (across processes) and moves the head."""
        _check_text("tenant", entry.tenant, _MAX_NAME)
        for name in ("actor", "action"):
            _check_text(name, getattr(entry, name), _MAX_TEXT)
        if entry.target is not None:
            _check_text("target", entry.target, _MAX_TEXT)
        return await self._append_audit(entry, canonical_detail(entry))

    async def query_audit(
        self,
        tenant: str,
        *,
        action: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[AuditRecord]:
        """``tenant``'s entries in seq order (of ``action``, at or after ``since``)."""
        _check_text("tenant", tenant, _MAX_NAME)
        if action is not None:
            _check_text("action", action, _MAX_TEXT)
        _check_time("since", since)
        after = 0
        if cursor is not None:
            if not isinstance(cursor, str) or not _SEQ.fullmatch(cursor):
                raise _invalid("cursor", "must be a cursor this API returned")
            after = int(cursor)
        _check_limit(limit)
        rows = await self._query_audit(tenant, action, since, after, limit + 1)
        return _page(rows, limit, lambda record: str(record.seq))

    async def audit_head(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest entry, None before the first: worth copying elsewhere,
        since a chain cannot vouch for its own head."""
        return await self._audit_head()

    async def verify_audit(
        self, *, page_size: int = 1000, progress: Callable[[int], None] | None = None
    ) -> VerifyResult:
        """Check the whole chain, ``page_size`` entries at a time (``progress`` gets the count
        checked so far): any edited, deleted (newest included) or forged entry fails it."""
        if not 1 <= page_size <= 100_000:
            raise _invalid("page_size", "must be 1-100000")
        return await verify_chain(
            self._audit_head,
            self._audit_page,
            self._audit_extent,
            page_size=page_size,
            progress=progress,
        )

    # -- what a backend supplies -----------------------------------------------------------

    @abstractmethod
    async def _insert_principal(self, principal: Principal) -> None:
        """Store it; ``Conflict`` (``name_taken``) when its tenant has its name."""

    @abstractmethod
    async def _get_principal(self, id: str) -> Principal | None: ...

    @abstractmethod
    async def _list_principals(
        self, tenant: str, kind: str | None, after: str, limit: int
    ) -> list[Principal]:
        """Up to ``limit`` of ``tenant``'s principals with ``id > after``, by id."""

    @abstractmethod
    async def _update_principal(
        self, id: str, tenant: str | None, scopes: str | None, disabled: bool | None, now: float
    ) -> Principal | None:
        """Set the fields given (``scopes`` space-joined), ``updated_at`` = ``now``; None when
        ``id`` is missing or not ``tenant``'s."""

    @abstractmethod
    async def _insert_credential(self, credential: Credential, tenant: str | None) -> None:
        """Store it if its principal exists (in ``tenant``), else ``NotFound``; ``Conflict``
        (``prefix_taken``) for a used prefix."""

    @abstractmethod
    async def _rotate_credential(
        self,
        id: str,
        tenant: str | None,
        *,
        new_id: str,
        prefix: str,
        secret_hash: str,
        created_at: float,
        expires_at: float | None,
        overlap_until: float,
    ) -> Credential | None:
        """In one transaction: the new credential, the old one's expiry shortened. None when
        ``id`` is missing or not ``tenant``'s; ``Conflict`` when it is revoked."""

    @abstractmethod
    async def _credential_by_prefix(self, prefix: str) -> tuple[Credential, Principal] | None:
        """One query joining the credential to its principal."""

    @abstractmethod
    async def _list_credentials(self, principal_id: str) -> list[Credential]: ...

    @abstractmethod
    async def _revoke_credential(
        self, id: str, tenant: str | None, now: float
    ) -> Credential | None: ...

    @abstractmethod
    async def _touch_credential(self, id: str, now: float, stale_before: float) -> bool:
        """Set ``last_used_at`` unless it is already at or after ``stale_before``."""

    @abstractmethod
    async def _insert_signing_key(self, key: SigningKeyRecord) -> None:
        """Store it; ``Conflict`` for a known kid."""

    @abstractmethod
    async def _active_signing_keys(self, since: float) -> list[SigningKeyRecord]: ...

    @abstractmethod
    async def _retire_signing_key(self, kid: str, at: float) -> SigningKeyRecord | None: ...

    @abstractmethod
    async def _remember(
        self, claim: IdempotencyRecord, expired_before: float, abandoned_before: float
    ) -> IdempotencyRecord | None:
        """Insert ``claim`` unless its key has a record created at or after
        ``expired_before`` (an older one is replaced), or an unanswered claim made before
        ``abandoned_before`` (its request died: replaced too); None if inserted, else that
        record.
        Atomic against other processes: of two concurrent claims, one inserts."""

    @abstractmethod
    async def _complete(
        self,
        tenant: str,
        principal: str,
        key: str,
        digest: str,
        status: int,
        body: bytes,
        now: float,
    ) -> bool:
        """Fill in the answer of the in-progress record with ``digest``; False if none."""

    @abstractmethod
    async def _release(self, tenant: str, principal: str, key: str, digest: str) -> bool:
        """Delete the in-progress record with ``digest``; False if none."""

    @abstractmethod
    async def _purge_requests(self, before: float) -> int: ...

    @abstractmethod
    async def _append_audit(self, entry: AuditEntry, detail: str) -> AuditRecord:
        """Under the head's lock: ``audit.chain`` the entry after the head (time = now),
        insert it and move the head, in one transaction."""

    @abstractmethod
    async def _query_audit(
        self, tenant: str, action: str | None, since: float | None, after: int, limit: int
    ) -> list[AuditRecord]: ...

    @abstractmethod
    async def _audit_head(self) -> Head: ...

    @abstractmethod
    async def _audit_page(self, after: int, upto: int, limit: int) -> list[AuditRecord]:
        """Entries with ``after < seq <= upto``, by seq, at most ``limit``."""

    @abstractmethod
    async def _audit_extent(self) -> Extent:
        """(min seq, max seq) of the log, None when empty."""


def open_security_store(url: str) -> SecurityStore:
    """The security store in the store at ``url``, not yet opened: the store's own URL,
    ``sqlite:///PATH`` or ``postgresql://…?schema=NAME`` (needs ``forgeline[postgres]``)."""
    if url.startswith("sqlite:"):
        from ._sqlite import SqliteSecurityStore

        return SqliteSecurityStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from ._postgres import PostgresSecurityStore
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs extra packages ({exc.name} is missing):"
                " pip install 'forgeline[postgres]'"
            ) from exc
        return PostgresSecurityStore(url)
    raise ConfigError(
        f"no store backend for {url!r}; use sqlite:///PATH or postgresql://HOST/DB?schema=NAME"
    )


# -- rows, shared by the backends --------------------------------------------------------------

PRINCIPAL_COLUMNS = (
    "id, tenant, environment, kind, name, scopes, created_at, updated_at, disabled_at"
)
CREDENTIAL_COLUMNS = (
    "id, principal_id, kind, prefix, secret_hash, created_at, expires_at, revoked_at, last_used_at"
)
SIGNING_KEY_COLUMNS = "kid, alg, sealed_private, public_jwk, created_at, retired_at"
IDEMPOTENCY_COLUMNS = "tenant, principal, key, digest, status, body, created_at, completed_at"


def qualified(columns: str, alias: str) -> str:
    """``"a, b"`` as ``"t.a, t.b"``, for joins."""
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def principal_row(principal: Principal) -> tuple[Any, ...]:
    """``principal`` in ``PRINCIPAL_COLUMNS`` order."""
    return (
        principal.id,
        principal.tenant,
        principal.environment,
        principal.kind,
        principal.name,
        " ".join(principal.scopes),
        principal.created_at,
        principal.updated_at,
        principal.disabled_at,
    )


def principal_from_row(row: Sequence[Any]) -> Principal:
    id_, tenant, environment, kind, name, scopes, created, updated, disabled = row
    return Principal(
        id_, tenant, environment, kind, name, tuple(scopes.split()), created, updated, disabled
    )


def credential_row(credential: Credential) -> tuple[Any, ...]:
    """``credential`` in ``CREDENTIAL_COLUMNS`` order."""
    return (
        credential.id,
        credential.principal_id,
        credential.kind,
        credential.prefix,
        credential.secret_hash,
        credential.created_at,
        credential.expires_at,
        credential.revoked_at,
        credential.last_used_at,
    )


def credential_from_row(row: Sequence[Any]) -> Credential:
    return Credential(*row)


def signing_key_row(key: SigningKeyRecord) -> tuple[Any, ...]:
    return (
        key.kid,
        key.alg,
        key.sealed_private,
        json.dumps(key.public_jwk, sort_keys=True, separators=(",", ":")),
        key.created_at,
        key.retired_at,
    )


def signing_key_from_row(row: Sequence[Any]) -> SigningKeyRecord:
    kid, alg, sealed, public_jwk, created, retired = row
    return SigningKeyRecord(kid, alg, sealed, json.loads(public_jwk), created, retired)


def idempotency_from_row(row: Sequence[Any]) -> IdempotencyRecord:
    tenant, principal, key, digest, status, body, created, completed = row
    stored = None if body is None else bytes(body)  # asyncpg answers bytes; sqlite3 too
    return IdempotencyRecord(tenant, principal, key, digest, status, stored, created, completed)


def name_taken(principal: Principal) -> Conflict:
    return Conflict(f"tenant {principal.tenant!r} already has a principal {principal.name!r}")


def prefix_taken(prefix: str) -> Conflict:
    return Conflict(f"a credential with prefix {prefix!r} exists; make a new key")


def revoked(id: str) -> Conflict:
    return Conflict(f"credential {id!r} is revoked: make a new one instead of rotating it")


def kid_taken(kid: str) -> Conflict:
    return Conflict(f"a signing key {kid!r} exists")


# -- checks ------------------------------------------------------------------------------------


def _page(rows: list[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(rows, cursor_of(rows[-1]))
    return Page(rows, None)


def _scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(scopes, str):  # one string would be taken letter by letter
        raise _invalid("scopes", "must be a list of scope strings")
    unique = sorted(set(scopes))
    if len(unique) > _MAX_SCOPES:
        raise _invalid("scopes", f"at most {_MAX_SCOPES}")
    for index, scope in enumerate(unique):
        if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
            raise InvalidInput(
                f"scope {scope!r:.80} is not an OAuth scope token",
                errors=[
                    {
                        "path": f"scopes[{index}]",
                        "message": "1-128 visible ASCII characters, no space, '\"' or '\\'",
                    }
                ],
            )
    return tuple(unique)


def _check_request_key(tenant: str, principal: str, key: str, digest: str) -> None:
    _check_text("tenant", tenant, _MAX_NAME)
    _check_text("principal", principal, _MAX_TEXT)
    _check_text("Idempotency-Key", key, 255)
    _check_text("digest", digest, _MAX_NAME)


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise InvalidInput(
            f"{name} must be a non-empty string of at most {limit} characters without control"
            f" characters, not {value!r:.80}",
            errors=[{"path": name, "message": f"1-{limit} characters, no control characters"}],
        )
    return value


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _invalid(name, f"must be one of {', '.join(choices)}, not {value!r:.40}")
    return value


def _check_time(name: str, value: float | None) -> float | None:
    return None if value is None else _epoch(name, value)


def _epoch(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(name, "must be a time in epoch seconds")
    return float(value)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise _invalid("limit", f"must be 1-{MAX_PAGE}")


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name} {message}", errors=[{"path": name, "message": message}])


def _no_principal(id: str) -> NotFound:
    return NotFound(f"no principal {id!r}")


def _no_credential(id: str) -> NotFound:
    return NotFound(f"no credential {id!r}")
