"""The hub's identity authority: who a presented credential is, and access tokens for clients.

Governance at the ingest end of the data path (DESIGN.md §1): every ``/v1`` request's
credential comes here through ``hub.identify`` (``api/auth.py`` handles the operator's key
itself), and ``POST /oauth/token`` comes here for a token. The pure parts live beside it
(``apikeys``, ``tokens``, ``secretbox``); the state is the ``SecurityStore``; this module
holds the rules that join them:

- An API key is found by its clear prefix, compared by hash, and refused when revoked,
  expired, minted for another environment, or its principal is disabled.
- An access token is verified against the ``KeyRing``: the private halves of the signing keys
  are stored sealed (context ``b"signing-key:" + kid``), unsealed into memory here. The first
  start makes a key; ``rotate`` makes a new one and retires the old, which keeps verifying
  for ``key_overlap`` seconds. Other processes of a deployment re-read the keys every
  ``REFRESH_EVERY`` seconds, and at once (at most every ``UNKNOWN_KID_EVERY`` seconds) when a
  token names a key they do not know: a rotation elsewhere is picked up on first sight.
- A token's principal is read again on every request: disabling a principal stops its
  tokens at once, and a scope taken away is gone from its tokens too (their scopes are
  intersected with the principal's current ones). One primary-key read, as an API key costs.

Refusals answer ``None`` (the caller answers a generic 401); the reason goes to the log at
INFO with the key's public prefix, never the secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any, cast

from ..exceptions import ConfigError, ForgelineError, InvalidInput, NotFound, Unauthorized
from . import apikeys
from .access import SCOPES, Caller, Kind, check_scopes
from .secretbox import SecretBox, load_secretbox
from .store import ENVIRONMENTS, Credential, Principal, SecurityStore, refusal
from .tokens import (
    Algorithm,
    Claims,
    KeyRing,
    SigningKey,
    TokenIssuer,
    authorization_server_metadata,
    verify,
)

__all__ = [
    "CLIENT_SECRET_PREFIX_LENGTH",
    "DEFAULT_KEY_OVERLAP",
    "DEFAULT_TOKEN_TTL",
    "REFRESH_EVERY",
    "UNKNOWN_KID_EVERY",
    "Authority",
    "TokenRequestError",
    "client_secret_prefix",
]

log = logging.getLogger(__name__)

#: How long a verified API key is believed without asking the store again (seconds).
KEY_CACHE_SECONDS = 1.0
_KEYS_KEPT = 10_000

DEFAULT_TOKEN_TTL = 300
#: One hour: a token signed just before a rotation lives out its lifetime, with room to spare.
DEFAULT_KEY_OVERLAP = 3600.0
#: Seconds between two reads of the signing keys by one process.
REFRESH_EVERY = 60.0
#: An unknown ``kid`` triggers a read at most this often: garbage tokens cannot make every
#: request a database read.
UNKNOWN_KID_EVERY = 1.0
#: A client secret's stored prefix: ``flcs_`` and 8 characters of the secret (40 of its 260
#: bits), so an operator can tell the secrets of one client apart and the token endpoint can
#: find one in one query. The 220 bits left are as unguessable as the whole.
CLIENT_SECRET_PREFIX_LENGTH = len(apikeys.CLIENT_SECRET_PREFIX) + 1 + 8
_CLIENT_SECRET = re.compile(r"flcs_[a-z2-7]{52}")


class TokenRequestError(ForgelineError):
    """A refused token request, as RFC 6749 §5.2 names it (``invalid_client``,
    ``invalid_scope``...). Not a problem+json error: the token endpoint answers OAuth's own
    body. ``principal`` is the client when it is known, for the audit log."""

    problem = "oauth-error"
    title = "Token request refused"

    def __init__(
        self, error: str, description: str, *, status: int = 400, principal: Principal | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.status = status
        self.principal = principal

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_token_error, (self.error, self.detail, self.status))


def _rebuild_token_error(error: str, description: str, status: int) -> TokenRequestError:
    return TokenRequestError(error, description, status=status)


def client_secret_prefix(secret: str) -> str:
    """What a client secret is stored and listed by (see ``CLIENT_SECRET_PREFIX_LENGTH``)."""
    return secret[:CLIENT_SECRET_PREFIX_LENGTH]


class Authority:
    """Identifies callers and issues access tokens for one hub (one issuer, one environment).

    ``clock`` gives the time every check uses; tests move it to reach an expiry."""

    def __init__(
        self,
        security: SecurityStore,
        box: SecretBox,
        *,
        issuer: str,
        environment: str,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        key_overlap: float = DEFAULT_KEY_OVERLAP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if environment not in ENVIRONMENTS:
            raise ConfigError(
                f"environment {environment!r} is not one of {', '.join(ENVIRONMENTS)}"
            )
        if not (math.isfinite(key_overlap) and key_overlap > 0):
            raise ConfigError("the signing key overlap must be a positive number of seconds")
        if (
            isinstance(token_ttl, bool)
            or not isinstance(token_ttl, int | float)
            or not math.isfinite(token_ttl)
            or token_ttl < 1
            or token_ttl != int(token_ttl)
        ):
            raise ConfigError("the token lifetime must be a positive whole number of seconds")
        if token_ttl > key_overlap:
            # A token signed just before a rotation must not outlive its key.
            raise ConfigError(
                f"the token lifetime ({token_ttl} s) is longer than the signing key overlap"
                f" ({key_overlap:g} s)"
            )
        self.security = security
        self.box = box
        self.issuer = issuer
        self.environment = environment
        self.token_ttl = int(token_ttl)  # a token's exp and expires_in are whole seconds
        self.clock = clock
        self.ring = KeyRing(overlap=key_overlap)
        self._issuer = TokenIssuer(self.ring, issuer)  # checks the issuer URL now
        self._loaded_at = -math.inf
        self._unknown_kid_at = -math.inf
        self._refreshing = asyncio.Lock()
        # API keys verified in the last KEY_CACHE_SECONDS, by the key's SHA-256: the store
        # lookup is most of an authenticated request's cost (bench/auth.py).
        self._keys: dict[bytes, tuple[float, Caller]] = {}

    @classmethod
    def from_settings(cls, settings: Any, security: SecurityStore) -> Authority:
        """The hub's authority: ``environment``, ``public_url`` (the issuer), ``token_ttl``
        and ``key_overlap`` from the settings (defaults where a setting is missing: ``dev``,
        the hub's own address, 300 s, 1 h); the master key as ``load_secretbox`` finds it,
        the dev key in the data directory allowed only for an embedded hub."""
        issuer = getattr(settings, "public_url", None) or (
            f"http://{settings.host}:{settings.port}"
        )
        box = load_secretbox(data_dir=settings.data_dir, allow_dev_key=settings.embedded)
        return cls(
            security,
            box,
            issuer=issuer,
            environment=getattr(settings, "environment", None) or "dev",
            token_ttl=getattr(settings, "token_ttl", None) or DEFAULT_TOKEN_TTL,
            key_overlap=getattr(settings, "key_overlap", None) or DEFAULT_KEY_OVERLAP,
        )

    # -- signing keys ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the signing keys, making the first one if there is none (the security store
        must be open)."""
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read the signing keys from the store; make one if none can sign."""
        async with self._refreshing:
            await self._load()
            if not any(key.retired_at is None for key in self.ring.keys):
                # First start, or every key retired: two processes starting at once may both
                # make one; the newest signs everywhere after their next refresh, both verify.
                await self._store_new_key()
                await self._load()

    async def rotate(self) -> SigningKey:
        """A new signing key; the ones before it retire now and verify for the overlap."""
        async with self._refreshing:
            await self._load()
            now = self.clock()
            previous = [key.kid for key in self.ring.keys if key.retired_at is None]
            algorithm = self.ring.signing_key().alg if previous else "EdDSA"
            # Stored before the old ones retire: a crash in between leaves two signing keys
            # (the newest signs), never none.
            new = await self._store_new_key(algorithm, now)
            for kid in previous:
                try:
                    await self.security.retire_signing_key(kid, now)
                except NotFound:
                    continue  # another process's rotation raced this one
            await self._load()
            log.info("rotated the signing key: %s signs, %d retired", new.kid, len(previous))
            return new

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return self.ring.jwks(now=self.clock())

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return authorization_server_metadata(self.issuer, scopes=list(SCOPES))

    async def refresh_if_due(self) -> None:
        """Re-read the keys if ``REFRESH_EVERY`` has passed; a read in progress is not waited
        for (this process's keys stay good meanwhile)."""
        if time.monotonic() - self._loaded_at >= REFRESH_EVERY and not self._refreshing.locked():
            await self.refresh()

    async def _store_new_key(
        self, alg: Algorithm = "EdDSA", now: float | None = None
    ) -> SigningKey:
        key = SigningKey.generate(alg, now=self.clock() if now is None else now)
        sealed = self.box.seal(key.to_private_json().encode(), context=_context(key.kid))
        await self.security.add_signing_key(
            key.kid, key.alg, sealed, key.public_jwk(), key.created_at
        )
        return key

    async def _load(self) -> None:
        now = self.clock()
        keys: list[SigningKey] = []
        records = await self.security.active_signing_keys(now - self.ring.overlap)
        for record in records:
            try:
                # A master key that is not configured raises ConfigError: configuration must
                # fix that, so it is not caught.
                opened = self.box.open(record.sealed_private, context=_context(record.kid))
            except InvalidInput:
                # Corrupt, or sealed for another row: never sign or verify with it.
                log.error("signing key %s does not open with the master key; skipped", record.kid)
                continue
            try:
                key = SigningKey.from_private_json(
                    opened, created_at=record.created_at, retired_at=record.retired_at
                )
            except ConfigError as exc:
                log.error("signing key %s is unusable (%s); skipped", record.kid, exc.detail)
                continue
            if key.kid != record.kid or key.alg != record.alg:
                log.error("signing key %s does not match its row; skipped", record.kid)
                continue
            keys.append(key)
        if records and not keys:
            # Not one opens: the master key is wrong (one of the same id but other bytes),
            # not the rows. Making a new key would split the deployment's tokens in two.
            raise ConfigError(
                f"none of the {len(records)} signing keys opens with this master key: set the"
                " FORGELINE_MASTER_KEY the other processes of this deployment use"
            )
        self.ring = KeyRing(keys, overlap=self.ring.overlap)
        self._issuer = TokenIssuer(self.ring, self.issuer)
        self._loaded_at = time.monotonic()

    # -- who is calling -----------------------------------------------------------------------

    async def identify(self, credential: str) -> Caller | None:
        """The caller ``credential`` (an API key or an access token) stands for, or None."""
        if apikeys.parse(credential) is not None:
            return await self._by_api_key(credential)
        if credential.count(".") == 2:
            return await self._by_token(credential)
        return None

    async def _by_api_key(self, credential: str) -> Caller | None:
        """A key verified less than ``KEY_CACHE_SECONDS`` ago answers from memory: a
        revocation, an expiry or a disabled principal therefore takes up to that long to
        apply (in every process alike), in exchange for a store read per request."""
        digest = hashlib.sha256(credential.encode()).digest()
        now = self.clock()
        cached = self._keys.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        verified = await self._check_api_key(credential)
        if len(self._keys) >= _KEYS_KEPT:
            self._keys = {k: v for k, v in self._keys.items() if v[0] > now}
            if len(self._keys) >= _KEYS_KEPT:
                self._keys.clear()
        if verified is None:
            self._keys.pop(digest, None)
            return None
        caller, expires_at = verified
        # Never believed past the key's own expiry.
        until = now + KEY_CACHE_SECONDS
        if expires_at is not None:
            until = min(until, expires_at)
        self._keys[digest] = (until, caller)
        return caller

    def forget_keys(self) -> None:
        """Drop the verified keys held in memory: an admin change made in this process (a
        revocation, a disabled principal, scopes taken away) applies here at once."""
        self._keys.clear()

    async def _check_api_key(self, credential: str) -> tuple[Caller, float | None] | None:
        parsed = apikeys.parse(credential)
        assert parsed is not None  # checked by identify
        if parsed.environment != self.environment:
            log.info("API key %s refused: minted for %s", parsed.prefix, parsed.environment)
            return None
        found = await self.security.credential_by_prefix(parsed.prefix)
        if found is None:
            log.info("API key %s refused: unknown", parsed.prefix)
            return None
        stored, principal = found
        if stored.kind != "api_key" or not apikeys.matches(credential, stored.secret_hash):
            log.info("API key %s refused: does not match", parsed.prefix)
            return None
        now = self.clock()
        why = refusal(stored, principal, now) or self._elsewhere(principal)
        if why is not None:
            log.info("API key %s refused: %s", parsed.prefix, why)
            return None
        await self._touch(stored, now)
        return _caller(principal, frozenset(principal.scopes), via="api-key"), stored.expires_at

    async def _by_token(self, token: str) -> Caller | None:
        await self.refresh_if_due()
        try:
            claims = self._verify(token)
        except Unauthorized as exc:
            if exc.detail != "unknown signing key" or not self._may_look_for_kid():
                log.info("access token refused: %s", exc.detail)
                return None
            await self.refresh()  # a rotation in another process: its key is in the store
            try:
                claims = self._verify(token)
            except Unauthorized as again:
                log.info("access token refused: %s", again.detail)
                return None
        try:
            principal = await self.security.get_principal(claims.subject)
        except NotFound:
            log.info("access token %s refused: its principal is gone", claims.token_id)
            return None
        why = None
        if principal.disabled:
            why = "principal disabled"
        elif principal.tenant != claims.tenant or principal.kind != claims.kind:
            why = "principal changed"
        else:
            why = self._elsewhere(principal)
        if why is not None:
            log.info("access token %s refused: %s", claims.token_id, why)
            return None
        # The token's scopes as far as the principal still holds them (a narrowing such as
        # events:read:lot.* of a held events:read stays: it is less, not more).
        held = set(principal.scopes)
        scopes = frozenset(s for s in claims.scopes if _covered(s, held, principal.kind))
        return _caller(principal, scopes, via="token")

    def _verify(self, token: str) -> Claims:
        return verify(
            token, self.ring, issuer=self.issuer, audience=self.environment, now=self.clock()
        )

    def _may_look_for_kid(self) -> bool:
        now = time.monotonic()
        if now - self._unknown_kid_at < UNKNOWN_KID_EVERY:
            return False
        self._unknown_kid_at = now
        return True

    def _elsewhere(self, principal: Principal) -> str | None:
        if principal.environment != self.environment:
            return f"principal is for {principal.environment}, this hub is {self.environment}"
        return None

    async def _touch(self, stored: Credential, now: float) -> None:
        try:
            await self.security.touch_credential(stored, now=now)
        except ForgelineError as exc:
            # Last use is bookkeeping: it must not turn a valid key away.
            log.warning("could not record the use of %s: %s", stored.prefix, exc)

    # -- the token endpoint -------------------------------------------------------------------

    async def issue(self, client_id: str, client_secret: str, scope: str | None) -> dict[str, Any]:
        """An access token response (RFC 6749 §5.1) for a client authenticated with one of
        its client secrets, or ``TokenRequestError``. ``scope`` (space-separated) must be a
        subset of the principal's scopes, or a type-pattern narrowing of one it holds;
        without it the token carries every scope the principal holds."""
        await self.refresh_if_due()
        principal = await self._client(client_id, client_secret)
        granted = self._granted(principal, scope)
        try:
            token, expires_in = self._issuer.issue(
                principal.id,
                tenant=principal.tenant,
                environment=self.environment,
                scopes=granted,
                kind=principal.kind,
                ttl=self.token_ttl,
                now=self.clock(),
            )
        except InvalidInput as exc:  # too many scopes for a token of 8 KiB
            raise TokenRequestError("invalid_scope", exc.detail, principal=principal) from None
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": " ".join(sorted(granted)),
        }

    async def _client(self, client_id: str, client_secret: str) -> Principal:
        refused = TokenRequestError("invalid_client", "client authentication failed", status=401)
        if not client_id:
            raise refused
        if not _CLIENT_SECRET.fullmatch(client_secret):
            refused.principal = await self._known(client_id)
            raise refused
        found = await self.security.credential_by_prefix(client_secret_prefix(client_secret))
        if (
            found is None
            or found[0].kind != "client_secret"
            or found[0].principal_id != client_id
            or not apikeys.matches(client_secret, found[0].secret_hash)
        ):
            refused.principal = await self._known(client_id)
            raise refused
        stored, principal = found
        now = self.clock()
        why = refusal(stored, principal, now) or self._elsewhere(principal)
        if why is not None:
            log.info("client %s refused: %s", client_id, why)
            refused.principal = principal
            raise refused
        await self._touch(stored, now)
        return principal

    async def _known(self, client_id: str) -> Principal | None:
        try:
            return await self.security.get_principal(client_id)
        except (NotFound, InvalidInput):
            return None

    def _granted(self, principal: Principal, scope: str | None) -> list[str]:
        held = set(principal.scopes)
        if scope is None or not scope.strip(" "):
            return sorted(held)
        requested = set(scope.split(" ")) - {""}
        too_much = sorted(s for s in requested if not _covered(s, held, principal.kind))
        if too_much:
            raise TokenRequestError(
                "invalid_scope",
                f"the client does not hold {' '.join(too_much)[:200]}",
                principal=principal,
            )
        return sorted(requested)


def _covered(scope: str, held: set[str], kind: str) -> bool:
    """Whether a client holding ``held`` may have ``scope`` in a token: held as such, or a
    type-pattern narrowing (``events:read:lot.*``) of a scope it holds (``events:read``)."""
    if scope in held:
        return True
    base, _, pattern = scope.rpartition(":")
    if not pattern or base not in held or base.count(":") != 1:
        return False
    try:
        check_scopes(kind, [scope])
    except InvalidInput:
        return False
    return True


def _context(kid: str) -> bytes:
    return b"signing-key:" + kid.encode()


def _caller(principal: Principal, scopes: frozenset[str], *, via: Any) -> Caller:
    return Caller(
        id=principal.id,
        kind=cast(Kind, principal.kind),
        tenant=principal.tenant,
        scopes=scopes,
        environment=principal.environment,
        via=via,
    )
