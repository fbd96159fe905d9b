"""Access tokens: short-lived JWTs signed with an asymmetric key, and the ring of signing keys.

The token endpoint (OAuth2 client credentials) mints them with ``TokenIssuer``; every API
process checks them with ``verify`` before a request reaches a handler. Pure: no HTTP, no
database. The storage keeps each ``SigningKey`` as ``to_private_json()`` sealed with
``forgeline.security.secretbox`` and rebuilds the ``KeyRing`` from its rows.

Tokens are RFC 9068 shaped: header ``{"alg", "kid", "typ": "at+jwt"}``, claims ``iss``,
``sub``, ``aud`` (the environment: a ``dev`` token is refused by ``prod``), ``iat``, ``nbf``,
``exp``, ``jti``, ``scope`` (space-separated), ``tenant`` and ``kind`` (the principal kind).

What ``verify`` trusts is decided here, never by the token: the algorithm must be one of the
ring's (pinned in joserfc's registry too, so ``none`` and HS256-with-the-public-key cannot
be chosen by an attacker), the key comes from the ring by ``kid`` and must be of that same
algorithm, and a header that points somewhere else for a key (``jku``, ``x5u``, ``jwk``,
``x5c``) is refused before anything else is looked at. Reasons in the raised
``Unauthorized`` are short and fixed: they name the rule broken, never a value expected.

Identify a token by its ``jti``, never by its text: an ES256 signature can be rewritten into
another valid one (ECDSA malleability), so two different strings may carry the same token.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import BadSignatureError, InvalidKeyCurveError, JoseError
from joserfc.jwa import EdDSAAlgorithm, ESAlgorithm, JWSAlgModel
from joserfc.jwk import ECKey, KeyParameters, OKPKey
from joserfc.jws import JWSRegistry
from joserfc.registry import JWS_HEADER_REGISTRY, HeaderRegistryDict

from ..exceptions import ConfigError, InvalidInput, Unauthorized

__all__ = [
    "ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "TOKEN_TYPE",
    "Algorithm",
    "Claims",
    "KeyRing",
    "SigningKey",
    "TokenIssuer",
    "authorization_server_metadata",
    "verify",
]

Algorithm = Literal["EdDSA", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
#: Larger tokens are refused unread: nothing we issue comes near it, and parsing is not free.
MAX_TOKEN_BYTES = 8 * 1024
#: RFC 9068: marks our access tokens, so no other JWT signed by the same keys can pass as one.
TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
#: Longest lifetime ``issue`` accepts: access tokens are short-lived, there are no refreshes.
MAX_TTL = 3600
_HEADER_NAMES = frozenset({"alg", "kid", "typ"})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


# -- the algorithms joserfc may use ---------------------------------------------------------


class _Ed25519Only(EdDSAAlgorithm):
    """``EdDSA`` restricted to Ed25519 keys.

    RFC 9864 deprecates the name ``EdDSA`` because it does not say which curve; joserfc warns
    on every use for that reason. Pinning the curve here removes the ambiguity the RFC is
    about, and ``EdDSA`` is the name every JWT library verifies today (``Ed25519``, its
    replacement, is not yet), so resource servers reading our JWKS can check our tokens.
    """

    security_warning = None  # type: ignore[assignment]  # the curve is pinned: see above

    def check_key(self, key: Any) -> None:
        super().check_key(key)
        if not isinstance(key, OKPKey) or key.curve_name != "Ed25519":
            raise InvalidKeyCurveError("EdDSA here means Ed25519")


class _PinnedRegistry(JWSRegistry):
    """A registry that knows our two algorithms and our three header names, nothing else.

    joserfc's default registry knows ``none``, HS256 and the key-bearing headers; this one
    cannot be talked into them even if a check before it were removed.
    """

    algorithms: dict[str, JWSAlgModel] = {  # noqa: RUF012 - joserfc's own class-level table
        "EdDSA": _Ed25519Only(),
        "ES256": ESAlgorithm("ES256", "P-256", 256, True),
    }
    recommended: list[str] = []  # noqa: RUF012
    default_header_registry: HeaderRegistryDict = {  # noqa: RUF012
        name: JWS_HEADER_REGISTRY[name] for name in _HEADER_NAMES
    }


_REGISTRIES = {alg: _PinnedRegistry(algorithms=[alg]) for alg in ALGORITHMS}


# -- signing keys -------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """One signing key pair. ``repr`` never shows the private part."""

    kid: str
    alg: Algorithm
    private_jwk: OKPKey | ECKey = field(repr=False, hash=False)
    created_at: float
    retired_at: float | None = None

    def __post_init__(self) -> None:
        expected = OKPKey if self.alg == "EdDSA" else ECKey
        if self.alg not in ALGORITHMS or not isinstance(self.private_jwk, expected):
            raise ConfigError(f"signing key {self.kid!r}: not an {self.alg} key")
        if not self.private_jwk.is_private:
            raise ConfigError(f"signing key {self.kid!r}: the private part is missing")
        try:
            _REGISTRIES[self.alg].get_alg(self.alg).check_key(self.private_jwk)
        except JoseError as exc:
            raise ConfigError(f"signing key {self.kid!r}: wrong curve for {self.alg}") from exc

    @classmethod
    def generate(cls, alg: Algorithm = "EdDSA", *, now: float | None = None) -> SigningKey:
        """A new key; its ``kid`` is the RFC 7638 thumbprint, so it names this key only."""
        params: KeyParameters = {"alg": alg, "use": "sig"}
        jwk: OKPKey | ECKey
        if alg == "EdDSA":
            jwk = OKPKey.generate_key("Ed25519", parameters=params, auto_kid=True)
        elif alg == "ES256":
            jwk = ECKey.generate_key("P-256", parameters=params, auto_kid=True)
        else:
            raise ConfigError(f"signing algorithm must be one of {', '.join(ALGORITHMS)}")
        return cls(str(jwk.kid), alg, jwk, time.time() if now is None else now)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as published in the JWKS (``kid``, ``alg``, ``use: sig``)."""
        public = dict(self.private_jwk.as_dict(private=False))
        public.update(kid=self.kid, alg=self.alg, use="sig")
        return public

    def to_private_json(self) -> str:
        """The private JWK as JSON: seal it before it touches a disk."""
        private = dict(self.private_jwk.as_dict(private=True))
        private.update(kid=self.kid, alg=self.alg, use="sig")
        return json.dumps(private, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_private_json(
        cls, text: str | bytes, *, created_at: float, retired_at: float | None = None
    ) -> SigningKey:
        """Rebuild a key from ``to_private_json()``; the times live beside it, in clear."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("stored signing key is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("kid"), str) or not data["kid"]:
            raise ConfigError("stored signing key has no kid")
        kid, alg = data["kid"], data.get("alg")
        if alg not in ALGORITHMS:
            raise ConfigError(f"stored signing key {kid!r}: algorithm not one of {ALGORITHMS}")
        key_class = OKPKey if alg == "EdDSA" else ECKey
        params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
        try:
            stored = key_class.import_key(data)
            # Rebuilt from the private scalar alone, so the public half we publish is the
            # one that verifies, whatever "x"/"y" the stored JSON claims.
            jwk = key_class.import_key(stored.private_key, parameters=params)  # type: ignore[arg-type]
        except Exception as exc:  # any parser failure means the same thing
            # Only the class name: the message of a key parser may quote key material.
            raise ConfigError(f"stored signing key {kid!r}: {type(exc).__name__}") from None
        if jwk.as_dict(private=False) != stored.as_dict(private=False) | params:
            raise ConfigError(f"stored signing key {kid!r}: public and private halves differ")
        return cls(kid, cast(Algorithm, alg), jwk, created_at, retired_at)

    def retired(self, at: float) -> SigningKey:
        return replace(self, retired_at=at)


class KeyRing:
    """The signing keys of a hub: the newest unretired one signs; one retired less than
    ``overlap`` seconds ago still verifies, so tokens it signed live out their lifetime.

    ``overlap`` must cover the longest token lifetime plus the verifiers' leeway; the issuer
    refuses a ``ttl`` longer than it. Mutable: the storage persists ``keys`` after
    ``rotate``, ``prune`` or ``revoke``.
    """

    def __init__(self, keys: Iterable[SigningKey] = (), *, overlap: float) -> None:
        if not (math.isfinite(overlap) and overlap >= 0):
            raise ConfigError("key overlap must be a finite number of seconds >= 0")
        self.overlap = float(overlap)
        self._keys: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ConfigError(f"two signing keys share the kid {key.kid!r}")
            self._keys[key.kid] = key

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key held, newest first."""
        return tuple(sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True))

    def signing_key(self) -> SigningKey:
        for key in self.keys:
            if key.retired_at is None:
                return key
        raise ConfigError("no signing key: rotate the key ring to create one")

    def verification_key(self, kid: str, *, now: float | None = None) -> SigningKey | None:
        key = self._keys.get(kid)
        return key if key is not None and self._verifies(key, _now(now)) else None

    def verification_keys(self, *, now: float | None = None) -> tuple[SigningKey, ...]:
        moment = _now(now)
        return tuple(key for key in self.keys if self._verifies(key, moment))

    def algorithms(self, *, now: float | None = None) -> frozenset[str]:
        return frozenset(key.alg for key in self.verification_keys(now=now))

    def jwks(self, *, now: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set served at ``/.well-known/jwks.json``: keys that verify at ``now``."""
        return {"keys": [key.public_jwk() for key in self.verification_keys(now=now)]}

    def rotate(self, *, now: float | None = None, alg: Algorithm | None = None) -> SigningKey:
        """Make a new signing key (of the current key's algorithm unless ``alg`` says) and
        retire the current one at ``now``; it keeps verifying for ``overlap`` seconds."""
        moment = _now(now)
        if alg is None:
            unretired = [k for k in self.keys if k.retired_at is None]
            alg = unretired[0].alg if unretired else "EdDSA"
        new = SigningKey.generate(alg, now=moment)
        for kid, key in list(self._keys.items()):
            if key.retired_at is None:
                self._keys[kid] = key.retired(moment)
        self._keys[new.kid] = new
        return new

    def prune(self, *, now: float | None = None) -> list[SigningKey]:
        """Drop keys past their overlap (they verify nothing any more); returns them."""
        moment = _now(now)
        gone = [key for key in self._keys.values() if not self._verifies(key, moment)]
        for key in gone:
            del self._keys[key.kid]
        return gone

    def revoke(self, kid: str) -> SigningKey | None:
        """Drop a key at once, without overlap: for a key that leaked. Every token it signed
        stops verifying; if it was the signing key, ``rotate`` before issuing again."""
        return self._keys.pop(kid, None)

    def _verifies(self, key: SigningKey, now: float) -> bool:
        return key.retired_at is None or now - key.retired_at < self.overlap


# -- issuing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claims:
    """What a verified access token says."""

    issuer: str
    subject: str
    audience: str
    tenant: str
    kind: str
    scopes: frozenset[str]
    issued_at: float
    not_before: float
    expires_at: float
    token_id: str
    key_id: str

    @property
    def environment(self) -> str:
        """The environment the token is for: its audience."""
        return self.audience


class TokenIssuer:
    """Mints access tokens with the ring's current signing key."""

    def __init__(self, ring: KeyRing, issuer: str) -> None:
        _check_issuer(issuer)
        self.ring = ring
        self.issuer = issuer

    def issue(
        self,
        subject: str,
        *,
        tenant: str,
        environment: str,
        scopes: Iterable[str],
        kind: str,
        ttl: int = 300,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A signed access token and its ``expires_in`` (seconds), for the token response."""
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= MAX_TTL:
            raise ConfigError(f"token ttl must be 1..{MAX_TTL} seconds")
        if ttl > self.ring.overlap:
            # Otherwise a token signed just before a rotation would die before it expires.
            raise ConfigError(f"token ttl {ttl} s is longer than the key overlap")
        for name, value in (("subject", subject), ("tenant", tenant), ("kind", kind)):
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"token {name} must be a non-empty string")
        if not isinstance(environment, str) or not environment:
            raise InvalidInput("token environment must be a non-empty string")
        if isinstance(scopes, str):
            # A string is an iterable of one-letter scopes: never what the caller meant.
            raise InvalidInput("scopes must be a collection of scope names, not one string")
        scope_list = list(scopes)
        bad = [s for s in scope_list if not isinstance(s, str) or not _SCOPE_TOKEN.fullmatch(s)]
        if bad:
            raise InvalidInput(f"invalid scope names: {bad!r}")
        scope_list = sorted(set(scope_list))
        key = self.ring.signing_key()
        issued = int(_now(now))
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": environment,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(scope_list),
            "tenant": tenant,
            "kind": kind,
        }
        header = {"alg": key.alg, "kid": key.kid, "typ": TOKEN_TYPE}
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False)
        token = jws.serialize_compact(
            header, payload, key.private_jwk, registry=_REGISTRIES[key.alg]
        )
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidInput("the token would exceed 8 KiB: ask for fewer scopes")
        return token, ttl


# -- verifying ------------------------------------------------------------------------------


def verify(
    token: str,
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
    leeway: float = 30,
) -> Claims:
    """The claims of ``token`` if the ring signed it for ``audience`` and it is valid at
    ``now`` (± ``leeway`` seconds of clock skew); else ``Unauthorized`` with a short reason.

    The order matters: size, shape and header are judged before any key is touched, and
    the key is found before the claims are read, so a token from a dropped key reads as
    ``unknown signing key`` whatever its dates.
    """
    moment = _now(now)
    if not isinstance(token, str):
        raise Unauthorized("malformed token")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthorized("token too large")
    parts = token.split(".")
    if len(parts) != 3 or not _B64URL.fullmatch(parts[0]) or not _B64URL.fullmatch(parts[1]):
        raise Unauthorized("malformed token")
    header = _json_object(parts[0])

    if not _HEADER_NAMES.issuperset(header):
        raise Unauthorized("untrusted token header")  # jku, x5u, jwk, x5c, crit, b64, ...
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (TOKEN_TYPE, f"application/{TOKEN_TYPE}"):
        raise Unauthorized("not an access token")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ring.algorithms(now=moment):
        raise Unauthorized("token algorithm not accepted")
    kid = header.get("kid")
    key = ring.verification_key(kid, now=moment) if isinstance(kid, str) else None
    if key is None:
        raise Unauthorized("unknown signing key")
    if key.alg != alg:
        raise Unauthorized("token algorithm not accepted")
    if not _B64URL.fullmatch(parts[2]):
        raise Unauthorized("malformed token")
    try:
        jws.deserialize_compact(token, key.private_jwk, registry=_REGISTRIES[key.alg])
    except BadSignatureError:
        raise Unauthorized("bad token signature") from None
    except JoseError:
        raise Unauthorized("malformed token") from None

    claims = _json_object(parts[1])
    if claims.get("iss") != issuer:
        raise Unauthorized("token issuer mismatch")
    if claims.get("aud") != audience:
        raise Unauthorized("token audience mismatch")
    iat, nbf, exp = (_numeric_date(claims, name) for name in ("iat", "nbf", "exp"))
    if exp <= moment - leeway:
        raise Unauthorized("token expired")
    if nbf > moment + leeway or iat > moment + leeway:
        raise Unauthorized("token not yet valid")
    strings = {name: claims.get(name) for name in ("sub", "tenant", "kind", "jti", "scope")}
    if not all(isinstance(v, str) for v in strings.values()) or not all(
        strings[name] for name in ("sub", "tenant", "kind", "jti")
    ):
        raise Unauthorized("token claims missing or invalid")
    scopes = frozenset(str(strings["scope"]).split())
    if not all(_SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise Unauthorized("token claims missing or invalid")
    return Claims(
        issuer=issuer,
        subject=str(strings["sub"]),
        audience=audience,
        tenant=str(strings["tenant"]),
        kind=str(strings["kind"]),
        scopes=scopes,
        issued_at=iat,
        not_before=nbf,
        expires_at=exp,
        token_id=str(strings["jti"]),
        key_id=key.kid,
    )


def _json_object(segment: str) -> dict[str, Any]:
    """A base64url JSON object; duplicate names are refused, not resolved (a parser that
    kept the first ``alg`` and one that kept the last would disagree about the token)."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed token") from None
    if not isinstance(value, dict):
        raise Unauthorized("malformed token")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    # bool is an int in Python; NaN would compare false with everything and never expire.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthorized("token claims missing or invalid")
    return float(value)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


# -- discovery ------------------------------------------------------------------------------


def authorization_server_metadata(
    issuer: str, *, scopes: Sequence[str] | None = None
) -> dict[str, Any]:
    """RFC 8414 metadata, served at ``/.well-known/oauth-authorization-server``.

    Only the client credentials grant exists, so there is no authorization endpoint and no
    response type (the RFC requires the member; the honest value is an empty list).
    """
    _check_issuer(issuer)
    base = issuer.rstrip("/")
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }
    if scopes is not None:
        metadata["scopes_supported"] = sorted(scopes)
    return metadata


def _check_issuer(issuer: str) -> None:
    # RFC 8414 section 2: a URL with a scheme and a host, no query and no fragment.
    parts = urlsplit(issuer) if isinstance(issuer, str) else None
    if (
        parts is None
        or parts.scheme not in ("https", "http")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or "?" in issuer
        or "#" in issuer
    ):
        raise ConfigError("the token issuer must be an http(s) URL without query or fragment")
