"""Access tokens: what a client gets, and every forged token an attacker could try.

Malicious tokens are built by hand here (base64, json, hmac and raw signatures from
``cryptography``), never with the library under test, so a bug in it cannot hide a hole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from forgeline.exceptions import ConfigError, InvalidInput, Unauthorized
from forgeline.security.tokens import (
    MAX_TOKEN_BYTES,
    Algorithm,
    KeyRing,
    SigningKey,
    TokenIssuer,
    authorization_server_metadata,
    verify,
)

ISSUER = "https://hub.plant.example"
T0 = 1_800_000_000.0
OVERLAP = 900.0


# -- helpers: tokens made by hand ------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def unsegment(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def forge(header: Any, claims: Any, signature: bytes = b"") -> str:
    return f"{segment(header)}.{segment(claims)}.{b64(signature)}"


def raw_sign(private: Any, signing_input: bytes) -> bytes:
    """A JWS signature made with ``cryptography`` alone (ES256 as r || s, 32 bytes each)."""
    if isinstance(private, Ed25519PrivateKey):
        return private.sign(signing_input)
    r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign_raw(private: Any, header: Any, payload: bytes) -> str:
    signing_input = f"{segment(header)}.{b64(payload)}".encode()
    return f"{signing_input.decode()}.{b64(raw_sign(private, signing_input))}"


def sign(private: Any, header: Any, claims: Any) -> str:
    return sign_raw(private, header, json.dumps(claims).encode())


def header_for(key: SigningKey, **extra: Any) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": "at+jwt", **extra}


def good_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "svc-mes",
        "aud": "prod",
        "iat": int(T0),
        "nbf": int(T0),
        "exp": int(T0) + 300,
        "jti": "abc123",
        "scope": "events:publish events:read",
        "tenant": "acme",
        "kind": "service",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def rejected(token: Any, ring: KeyRing, *, now: float = T0, audience: str = "prod") -> str:
    with pytest.raises(Unauthorized) as caught:
        verify(token, ring, issuer=ISSUER, audience=audience, now=now)
    return caught.value.detail


@pytest.fixture(params=["EdDSA", "ES256"])
def alg(request: pytest.FixtureRequest) -> Algorithm:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def ring(alg: Algorithm) -> KeyRing:
    ring = KeyRing(overlap=OVERLAP)
    ring.rotate(now=T0 - 3600, alg=alg)
    return ring


@pytest.fixture
def key(ring: KeyRing) -> SigningKey:
    return ring.signing_key()


@pytest.fixture
def issuer(ring: KeyRing) -> TokenIssuer:
    return TokenIssuer(ring, ISSUER)


def mint(issuer: TokenIssuer, *, now: float = T0, environment: str = "prod", ttl: int = 300) -> str:
    token, _ = issuer.issue(
        "svc-mes",
        tenant="acme",
        environment=environment,
        scopes=["events:read", "events:publish"],
        kind="service",
        ttl=ttl,
        now=now,
    )
    return token


# -- what a client gets --------------------------------------------------------------------


def test_issued_token_verifies_and_carries_every_claim(
    issuer: TokenIssuer, key: SigningKey
) -> None:
    token, expires_in = issuer.issue(
        "svc-mes",
        tenant="acme",
        environment="prod",
        scopes=["events:read", "events:publish"],
        kind="service",
        ttl=120,
        now=T0 + 0.7,
    )
    assert expires_in == 120
    header_part, payload_part, _ = token.split(".")
    assert unsegment(header_part) == {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    payload = unsegment(payload_part)
    assert payload == {
        "iss": ISSUER,
        "sub": "svc-mes",
        "aud": "prod",
        "iat": int(T0),
        "nbf": int(T0),
        "exp": int(T0) + 120,
        "jti": payload["jti"],
        "scope": "events:publish events:read",
        "tenant": "acme",
        "kind": "service",
    }
    assert len(payload["jti"]) >= 22

    claims = verify(token, issuer.ring, issuer=ISSUER, audience="prod", now=T0 + 60)
    assert claims.subject == "svc-mes"
    assert claims.tenant == "acme"
    assert claims.kind == "service"
    assert claims.environment == claims.audience == "prod"
    assert claims.scopes == {"events:read", "events:publish"}
    assert claims.expires_at == int(T0) + 120
    assert claims.token_id == payload["jti"]
    assert claims.key_id == key.kid


def test_each_token_has_its_own_id(issuer: TokenIssuer) -> None:
    first, second = mint(issuer), mint(issuer)
    assert unsegment(first.split(".")[1])["jti"] != unsegment(second.split(".")[1])["jti"]


def test_a_token_with_no_scopes_verifies_with_none(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("u", tenant="t", environment="prod", scopes=[], kind="user", now=T0)
    assert verify(token, issuer.ring, issuer=ISSUER, audience="prod", now=T0).scopes == set()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": 3601}, "ttl"),
        ({"ttl": 1000}, "overlap"),  # longer than the ring's overlap of 900 s
    ],
)
def test_issue_refuses_lifetimes_the_ring_cannot_honour(
    issuer: TokenIssuer, change: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"tenant": "t", "environment": "prod", "scopes": [], "kind": "user"}
    with pytest.raises(ConfigError, match=message):
        issuer.issue("u", **args, **change)


@pytest.mark.parametrize(
    "change",
    [
        {"scopes": ["events read"]},
        {"scopes": ['say"hi']},
        {"scopes": [""]},
        {"scopes": [7, "a"]},
        {"scopes": "events:read"},
        {"tenant": ""},
        {"kind": ""},
        {"environment": ""},
    ],
)
def test_issue_refuses_bad_claims(issuer: TokenIssuer, change: dict[str, Any]) -> None:
    args: dict[str, Any] = {"tenant": "t", "environment": "prod", "scopes": ["a"], "kind": "user"}
    args.update(change)
    with pytest.raises(InvalidInput):
        issuer.issue("u", **args)
    with pytest.raises(InvalidInput):
        issuer.issue("", tenant="t", environment="prod", scopes=[], kind="user")


def test_issue_refuses_a_token_that_verify_would_refuse_as_too_large(issuer: TokenIssuer) -> None:
    scopes = [f"scope:{n:05d}" for n in range(1000)]
    with pytest.raises(InvalidInput, match="8 KiB"):
        issuer.issue("u", tenant="t", environment="prod", scopes=scopes, kind="user")


def test_an_empty_ring_cannot_issue() -> None:
    with pytest.raises(ConfigError, match="rotate"):
        TokenIssuer(KeyRing(overlap=OVERLAP), ISSUER).issue(
            "u", tenant="t", environment="prod", scopes=[], kind="user"
        )


# -- attacks on the header -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"anything"])
def test_alg_none_is_refused(key: SigningKey, ring: KeyRing, name: str, signature: bytes) -> None:
    token = forge({"alg": name, "kid": key.kid, "typ": "at+jwt"}, good_claims(), signature)
    assert rejected(token, ring) == "token algorithm not accepted"


def public_key_forms(key: SigningKey) -> list[bytes]:
    """Every way a verifier might hold the public key, as an HMAC secret would see it."""
    public = key.private_jwk.public_key
    return [
        json.dumps(key.public_jwk()).encode(),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        base64.urlsafe_b64decode(str(key.public_jwk()["x"]) + "=="),
    ]


@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_is_refused(
    key: SigningKey, ring: KeyRing, hs: str
) -> None:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hs]
    for secret in public_key_forms(key):
        signing_input = f"{segment(header_for(key, alg=hs))}.{segment(good_claims())}"
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        assert rejected(f"{signing_input}.{b64(mac)}", ring) == "token algorithm not accepted"


def test_the_key_of_a_kid_decides_the_algorithm_not_the_header() -> None:
    # A ring holding both kinds: an ES256 header naming the Ed25519 key must not pass, even
    # though ES256 is one of the ring's algorithms.
    ring = KeyRing(overlap=OVERLAP)
    ed = ring.rotate(now=T0 - 100, alg="EdDSA")
    ring.rotate(now=T0 - 10, alg="ES256")
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = sign(attacker, header_for(ed, alg="ES256"), good_claims())
    assert rejected(token, ring) == "token algorithm not accepted"


def test_an_algorithm_outside_the_ring_is_refused_even_if_well_signed() -> None:
    ring = KeyRing(overlap=OVERLAP)
    ring.rotate(now=T0, alg="EdDSA")
    attacker = ec.generate_private_key(ec.SECP256R1())
    token = sign(attacker, {"alg": "ES256", "kid": "mine", "typ": "at+jwt"}, good_claims())
    assert rejected(token, ring) == "token algorithm not accepted"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIBszCCAVmgAwIBAgIU"]),
        ("crit", ["exp"]),
        ("b64", False),
    ],
)
def test_headers_pointing_at_other_keys_are_refused(
    key: SigningKey, ring: KeyRing, name: str, value: Any
) -> None:
    # Signed with the real key: the header alone is enough to refuse the token.
    token = sign(key.private_jwk.private_key, header_for(key, **{name: value}), good_claims())
    assert rejected(token, ring) == "untrusted token header"


def test_jku_header_is_refused(key: SigningKey, ring: KeyRing) -> None:
    attacker = Ed25519PrivateKey.generate()
    header = header_for(key, alg="EdDSA", jku="https://attacker.example/.well-known/jwks.json")
    assert rejected(sign(attacker, header, good_claims()), ring) == "untrusted token header"


def test_x5u_header_is_refused(key: SigningKey, ring: KeyRing) -> None:
    attacker = Ed25519PrivateKey.generate()
    header = header_for(key, alg="EdDSA", x5u="https://attacker.example/cert.pem")
    assert rejected(sign(attacker, header, good_claims()), ring) == "untrusted token header"


def test_embedded_jwk_header_is_refused(key: SigningKey, ring: KeyRing) -> None:
    # The classic: the attacker signs with their own key and ships its public half inline.
    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    for kid in (key.kid, "attacker"):
        header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt", "jwk": jwk}
        assert rejected(sign(attacker, header, good_claims()), ring) == "untrusted token header"


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt+x", "id_token"])
def test_a_jwt_that_is_not_an_access_token_is_refused(
    key: SigningKey, ring: KeyRing, typ: str | None
) -> None:
    header = {"alg": key.alg, "kid": key.kid} if typ is None else header_for(key, typ=typ)
    token = sign(key.private_jwk.private_key, header, good_claims())
    assert rejected(token, ring) == "not an access token"


def test_rfc9068_long_typ_is_accepted(key: SigningKey, ring: KeyRing) -> None:
    token = sign(
        key.private_jwk.private_key, header_for(key, typ="application/AT+JWT"), good_claims()
    )
    assert verify(token, ring, issuer=ISSUER, audience="prod", now=T0).tenant == "acme"


@pytest.mark.parametrize("kid", ["no-such-key", None, 7, ["a"]])
def test_unknown_kid_is_refused(key: SigningKey, ring: KeyRing, kid: Any) -> None:
    header = header_for(key)
    if kid is None:
        del header["kid"]
    else:
        header["kid"] = kid
    token = sign(key.private_jwk.private_key, header, good_claims())
    assert rejected(token, ring) == "unknown signing key"


def test_token_of_another_ring_is_refused(alg: Algorithm, ring: KeyRing) -> None:
    other = KeyRing(overlap=OVERLAP)
    other.rotate(now=T0, alg=alg)
    assert rejected(mint(TokenIssuer(other, ISSUER)), ring) == "unknown signing key"


# -- attacks on the signature --------------------------------------------------------------


def test_foreign_signature_under_our_kid_is_refused(
    alg: Algorithm, key: SigningKey, ring: KeyRing
) -> None:
    attacker = (
        Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
    )
    assert rejected(sign(attacker, header_for(key), good_claims()), ring) == "bad token signature"


def test_edited_claims_break_the_signature(issuer: TokenIssuer, ring: KeyRing) -> None:
    header_part, payload_part, signature = mint(issuer).split(".")
    claims = unsegment(payload_part)
    claims["tenant"] = "victim"
    assert rejected(f"{header_part}.{segment(claims)}.{signature}", ring) == "bad token signature"
    claims = unsegment(payload_part)
    claims["scope"] += " admin"
    assert rejected(f"{header_part}.{segment(claims)}.{signature}", ring) == "bad token signature"


def test_edited_signature_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    head, body, signature = mint(issuer).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 0x01
    assert rejected(f"{head}.{body}.{b64(bytes(raw))}", ring) == "bad token signature"
    truncated = b64(bytes(raw[:-1]))
    assert rejected(f"{head}.{body}.{truncated}", ring) == "bad token signature"


def test_signature_over_an_edited_header_is_refused(
    issuer: TokenIssuer, key: SigningKey, ring: KeyRing
) -> None:
    _, body, signature = mint(issuer).split(".")
    edited = segment({"kid": key.kid, "alg": key.alg, "typ": "at+jwt"})  # same members, new bytes
    assert rejected(f"{edited}.{body}.{signature}", ring) == "bad token signature"


# -- attacks on the claims (with a valid signature) ----------------------------------------


def test_expired_token_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    token = mint(issuer, now=T0, ttl=300)
    exp = int(T0) + 300
    verify(token, ring, issuer=ISSUER, audience="prod", now=exp + 29.9)  # within the leeway
    assert rejected(token, ring, now=exp + 30) == "token expired"
    assert rejected(token, ring, now=exp + 86_400) == "token expired"
    with pytest.raises(Unauthorized, match="expired"):
        verify(token, ring, issuer=ISSUER, audience="prod", now=exp, leeway=0)


def test_not_yet_valid_token_is_refused(key: SigningKey, ring: KeyRing) -> None:
    private = key.private_jwk.private_key
    later = int(T0) + 120
    token = sign(private, header_for(key), good_claims(nbf=later, exp=later + 300))
    assert rejected(token, ring, now=T0) == "token not yet valid"
    verify(token, ring, issuer=ISSUER, audience="prod", now=later - 30)  # within the leeway
    issued_later = sign(private, header_for(key), good_claims(iat=later, exp=later + 300))
    assert rejected(issued_later, ring, now=T0) == "token not yet valid"


def test_a_token_minted_in_the_future_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    assert rejected(mint(issuer, now=T0 + 600), ring, now=T0) == "token not yet valid"


def test_token_for_another_environment_is_refused(issuer: TokenIssuer, ring: KeyRing) -> None:
    assert (
        rejected(mint(issuer, environment="dev"), ring, audience="prod")
        == "token audience mismatch"
    )


@pytest.mark.parametrize("aud", [["prod"], ["prod", "dev"], "PROD", "prod "])
def test_audience_must_be_exactly_the_environment(key: SigningKey, ring: KeyRing, aud: Any) -> None:
    token = sign(key.private_jwk.private_key, header_for(key), good_claims(aud=aud))
    assert rejected(token, ring) == "token audience mismatch"


def test_token_of_another_issuer_is_refused(ring: KeyRing) -> None:
    token = mint(TokenIssuer(ring, "https://other-hub.example"))
    assert rejected(token, ring) == "token issuer mismatch"


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        ("iss", "token issuer mismatch"),
        ("aud", "token audience mismatch"),
        ("exp", "token claims missing or invalid"),
        ("nbf", "token claims missing or invalid"),
        ("iat", "token claims missing or invalid"),
        ("sub", "token claims missing or invalid"),
        ("jti", "token claims missing or invalid"),
        ("scope", "token claims missing or invalid"),
        ("tenant", "token claims missing or invalid"),
        ("kind", "token claims missing or invalid"),
    ],
)
def test_missing_claim_is_refused(key: SigningKey, ring: KeyRing, claim: str, reason: str) -> None:
    token = sign(key.private_jwk.private_key, header_for(key), good_claims(**{claim: ...}))
    assert rejected(token, ring) == reason


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": "9999999999"},
        {"exp": True},
        {"exp": math.nan},
        {"exp": math.inf},
        {"iat": None},
        {"sub": ""},
        {"sub": 42},
        {"tenant": ["acme"]},
        {"kind": ""},
        {"scope": ["events:read"]},
        {"scope": 'bad"scope'},
    ],
)
def test_ill_typed_claim_is_refused(
    key: SigningKey, ring: KeyRing, changes: dict[str, Any]
) -> None:
    payload = json.dumps(good_claims(**changes), allow_nan=True).encode()  # NaN as a forger would
    token = sign_raw(key.private_jwk.private_key, header_for(key), payload)
    assert rejected(token, ring) == "token claims missing or invalid"


# -- malformed and oversized ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "e30.e30.",  # {}.{}. : no algorithm, no signature
        "!!!.e30.sig",
        "W10.e30.c2ln",  # header is a JSON array
        "bm90IGpzb24.e30.c2ln",  # header is not JSON
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln\n",
        " eyJhbGciOiJFZERTQSJ9.e30.c2ln",
        "ëyJhbGciOiJFZERTQSJ9.e30.c2ln",
        None,
        b"eyJhbGciOiJFZERTQSJ9.e30.c2ln",
        12345,
    ],
)
def test_malformed_token_is_refused(ring: KeyRing, token: Any) -> None:
    assert rejected(token, ring) in (
        "malformed token",
        "untrusted token header",
        "not an access token",
    )


def test_malformed_shapes_read_as_malformed(key: SigningKey, ring: KeyRing) -> None:
    assert rejected("a.b", ring) == "malformed token"
    assert rejected("W10.e30.c2ln", ring) == "malformed token"
    assert (
        rejected(f"{segment(header_for(key))}.{segment(good_claims())}.", ring) == "malformed token"
    )
    payload_not_json = sign_raw(key.private_jwk.private_key, header_for(key), b"not json")
    assert rejected(payload_not_json, ring) == "malformed token"
    payload_array = sign_raw(key.private_jwk.private_key, header_for(key), b"[1, 2]")
    assert rejected(payload_array, ring) == "malformed token"


def test_duplicate_header_members_are_refused(key: SigningKey, ring: KeyRing) -> None:
    # One parser may keep the first "alg", another the last: refuse rather than guess.
    header = f'{{"alg":"none","kid":"{key.kid}","typ":"at+jwt","alg":"{key.alg}"}}'
    signing_input = f"{b64(header.encode())}.{segment(good_claims())}".encode()
    token = f"{signing_input.decode()}.{b64(raw_sign(key.private_jwk.private_key, signing_input))}"
    assert rejected(token, ring) == "malformed token"


def test_oversized_token_is_refused_even_when_well_signed(key: SigningKey, ring: KeyRing) -> None:
    claims = good_claims(padding="x" * MAX_TOKEN_BYTES)
    token = sign(key.private_jwk.private_key, header_for(key), claims)
    assert len(token) > MAX_TOKEN_BYTES
    assert rejected(token, ring) == "token too large"
    assert rejected("a" * (10 * 1024 * 1024), ring) == "token too large"


def test_a_hand_made_token_with_extra_claims_verifies(key: SigningKey, ring: KeyRing) -> None:
    # The forging helpers themselves are sound: the same recipe with the real key passes.
    token = sign(key.private_jwk.private_key, header_for(key), good_claims(extra="ok"))
    assert verify(token, ring, issuer=ISSUER, audience="prod", now=T0).subject == "svc-mes"


def test_the_joserfc_registry_itself_knows_no_other_algorithm(key: SigningKey) -> None:
    from joserfc import jws
    from joserfc.errors import UnsupportedAlgorithmError

    from forgeline.security import tokens

    for registry in tokens._REGISTRIES.values():
        for name in ("none", "HS256", "RS256", "ES256K", "Ed448"):
            with pytest.raises(UnsupportedAlgorithmError):
                registry.get_alg(name)
    mac = hmac.new(b"k", b"x", hashlib.sha256).digest()
    forged = forge({"alg": "HS256", "kid": key.kid}, good_claims(), mac)
    with pytest.raises(UnsupportedAlgorithmError):
        jws.deserialize_compact(forged, key.private_jwk, registry=tokens._REGISTRIES[key.alg])


# -- rotation ------------------------------------------------------------------------------


def test_rotation_overlap_keeps_old_tokens_alive_then_drops_them(alg: Algorithm) -> None:
    ring = KeyRing(overlap=OVERLAP)
    old = ring.rotate(now=T0, alg=alg)
    issuer = TokenIssuer(ring, ISSUER)
    old_token = mint(issuer, now=T0 + 100)
    rotated_at = T0 + 200
    new = ring.rotate(now=rotated_at)
    assert new.alg == alg
    assert ring.signing_key() == new
    new_token = mint(issuer, now=rotated_at + 1)
    assert unsegment(new_token.split(".")[0])["kid"] == new.kid

    # Inside the window both verify.
    for token in (old_token, new_token):
        verify(token, ring, issuer=ISSUER, audience="prod", now=rotated_at + 150)
    # Once the window closes, the old key verifies nothing, whatever the token's dates.
    assert rejected(old_token, ring, now=rotated_at + OVERLAP) == "unknown signing key"
    assert ring.verification_key(old.kid, now=rotated_at + OVERLAP - 0.001) is not None
    assert ring.verification_key(old.kid, now=rotated_at + OVERLAP) is None


def test_jwks_follows_the_rotation() -> None:
    ring = KeyRing(overlap=OVERLAP)
    assert ring.jwks(now=T0) == {"keys": []}
    first = ring.rotate(now=T0)
    assert [k["kid"] for k in ring.jwks(now=T0)["keys"]] == [first.kid]
    second = ring.rotate(now=T0 + 10)
    assert [k["kid"] for k in ring.jwks(now=T0 + 10)["keys"]] == [second.kid, first.kid]
    assert [k["kid"] for k in ring.jwks(now=T0 + 10 + OVERLAP)["keys"]] == [second.kid]

    assert ring.prune(now=T0 + 10 + OVERLAP - 1) == []
    assert [k.kid for k in ring.prune(now=T0 + 10 + OVERLAP)] == [first.kid]
    assert [k.kid for k in ring.keys] == [second.kid]


def test_jwks_entries_are_public_keys_for_signatures(ring: KeyRing, key: SigningKey) -> None:
    (entry,) = ring.jwks(now=T0)["keys"]
    assert entry["kid"] == key.kid
    assert entry["alg"] == key.alg
    assert entry["use"] == "sig"
    assert "d" not in entry
    assert entry["kty"] == ("OKP" if key.alg == "EdDSA" else "EC")
    assert entry["crv"] == ("Ed25519" if key.alg == "EdDSA" else "P-256")
    assert json.loads(json.dumps(ring.jwks(now=T0))) == ring.jwks(now=T0)


def test_revoked_key_stops_verifying_at_once(
    issuer: TokenIssuer, ring: KeyRing, key: SigningKey
) -> None:
    # A leaked key: rotate, then revoke the old one instead of letting it overlap.
    token = mint(issuer)
    new = ring.rotate(now=T0 + 1)
    assert ring.revoke(key.kid) == key.retired(T0 + 1)
    assert rejected(token, ring, now=T0 + 2) == "unknown signing key"
    assert [k["kid"] for k in ring.jwks(now=T0 + 2)["keys"]] == [new.kid]
    assert ring.revoke(key.kid) is None


def test_an_empty_ring_verifies_nothing(
    issuer: TokenIssuer, ring: KeyRing, key: SigningKey
) -> None:
    token = mint(issuer)
    ring.revoke(key.kid)
    rejected(token, ring)
    assert ring.jwks(now=T0) == {"keys": []}
    with pytest.raises(ConfigError):
        ring.signing_key()


def test_zero_overlap_drops_the_old_key_at_rotation(alg: Algorithm) -> None:
    ring = KeyRing(overlap=0)
    old = ring.rotate(now=T0, alg=alg)
    ring.rotate(now=T0 + 1)
    assert ring.verification_key(old.kid, now=T0 + 1) is None


@pytest.mark.parametrize("overlap", [-1, math.nan, math.inf])
def test_overlap_must_be_sane(overlap: float) -> None:
    with pytest.raises(ConfigError):
        KeyRing(overlap=overlap)


def test_duplicate_kids_are_refused(key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="share"):
        KeyRing([key, key.retired(T0)], overlap=OVERLAP)


def test_ring_rebuilt_from_storage_verifies_what_it_signed(
    issuer: TokenIssuer, ring: KeyRing
) -> None:
    old_token = mint(issuer)
    ring.rotate(now=T0 + 5)
    stored = [(k.to_private_json(), k.created_at, k.retired_at) for k in ring.keys]
    rebuilt = KeyRing(
        [SigningKey.from_private_json(j, created_at=c, retired_at=r) for j, c, r in stored],
        overlap=OVERLAP,
    )
    assert rebuilt.keys == ring.keys
    verify(old_token, rebuilt, issuer=ISSUER, audience="prod", now=T0 + 6)
    fresh = mint(TokenIssuer(rebuilt, ISSUER), now=T0 + 6)
    verify(fresh, ring, issuer=ISSUER, audience="prod", now=T0 + 7)


# -- keys at rest --------------------------------------------------------------------------


def test_private_key_never_shows_in_repr(key: SigningKey) -> None:
    d = json.loads(key.to_private_json())["d"]
    assert d not in repr(key)
    assert d not in str(key.public_jwk())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda jwk: "not json",
        lambda jwk: json.dumps([jwk]),
        lambda jwk: json.dumps({k: v for k, v in jwk.items() if k != "kid"}),
        lambda jwk: json.dumps({k: v for k, v in jwk.items() if k != "d"}),  # public only
        lambda jwk: json.dumps({**jwk, "alg": "HS256"}),
        lambda jwk: json.dumps({**jwk, "alg": "ES256" if jwk["alg"] == "EdDSA" else "EdDSA"}),
        lambda jwk: json.dumps({**jwk, "x": "AAAA"}),
    ],
)
def test_a_damaged_stored_key_is_a_config_error_that_leaks_nothing(
    key: SigningKey, mangle: Any
) -> None:
    original = json.loads(key.to_private_json())
    with pytest.raises(ConfigError) as caught:
        SigningKey.from_private_json(mangle(original), created_at=T0)
    assert original["d"] not in str(caught.value)


def test_a_p256_key_cannot_pose_as_eddsa() -> None:
    ec_key = SigningKey.generate("ES256", now=T0)
    with pytest.raises(ConfigError):
        SigningKey(ec_key.kid, "EdDSA", ec_key.private_jwk, T0)


# -- discovery -----------------------------------------------------------------------------


def test_authorization_server_metadata() -> None:
    metadata = authorization_server_metadata(ISSUER, scopes=["events:read", "admin"])
    assert metadata == {
        "issuer": ISSUER,
        "token_endpoint": f"{ISSUER}/oauth/token",
        "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["admin", "events:read"],
    }
    assert authorization_server_metadata(f"{ISSUER}/")["token_endpoint"] == f"{ISSUER}/oauth/token"


@pytest.mark.parametrize(
    "issuer",
    [
        "",
        "hub.example",
        "ftp://hub.example",
        "https://hub.example?x=1",
        "https://hub#f",
        "https://",
    ],
)
def test_issuer_must_be_a_plain_url(issuer: str, ring: KeyRing) -> None:
    with pytest.raises(ConfigError):
        authorization_server_metadata(issuer)
    with pytest.raises(ConfigError):
        TokenIssuer(ring, issuer)
