"""Standard Webhooks signatures, symmetric (``v1``) and asymmetric (``v1a``): what outbound
deliveries carry and what ``verify: {standard: …}`` hooks check on the way in.

Followed, from the spec (standard-webhooks/standard-webhooks ``spec/standard-webhooks.md``,
version 1.0.0):

* headers ``webhook-id``, ``webhook-timestamp`` (integer unix seconds) and
  ``webhook-signature``; the signed content is ``{id}.{timestamp}.{body}``, the body's exact
  bytes;
* ``v1``: HMAC-SHA256 keyed with the bytes of the base64 after ``whsec_`` (random, 24 to 64
  bytes), signature ``v1,<base64 of the 32-byte MAC>``;
* ``v1a``: Ed25519; "base64 encoded, prefixed with ``whsk_`` for the secret key, and
  ``whpk_`` for the public key". The spec names the encoding, not the key bytes, so those
  follow the reference Go library (``libraries/go/webhook_asymmetric.go``), the only
  reference implementation of v1a: ``whsk_`` + base64 of the 32-byte seed (RFC 8032's
  private key, ``ed25519.NewKeyFromSeed``), ``whpk_`` + base64 of the 32-byte public key,
  signature ``v1a,<base64 of the 64-byte signature>``, standard base64 with padding. Its
  test vector (``TestAsymmetricWebhookSign``) is one of our tests;
* several signatures space-separated (rotation: old and new secret sign together); a verifier
  accepts when ANY one matches one of its keys, ignores versions it does not know, compares
  MACs in constant time, and refuses a timestamp more than the tolerance (5 minutes) from now;
* the id and timestamp should not contain ``.`` (else the content could be re-split into a
  different id, timestamp and body): :func:`sign` refuses such an id, :func:`message_id` maps
  any event id onto one that is safe, the same on every retry.

Verification never says which part failed (:class:`WebhookVerificationError` has one message;
its ``reason`` is for logs and metrics). A key that is not a key (:class:`InvalidWebhookKey`)
is the configuration's fault, not the caller's, and is never shown back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets as random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..exceptions import InvalidInput, Unauthorized

__all__ = [
    "DEFAULT_TOLERANCE",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "InvalidWebhookKey",
    "Signer",
    "WebhookVerificationError",
    "check_verification_key",
    "message_id",
    "new_keypair",
    "new_symmetric_secret",
    "public_key_of",
    "sign",
    "signature_headers",
    "verify",
]

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

#: Seconds a timestamp may be away from now, either way (the spec's 5 minutes).
DEFAULT_TOLERANCE = 300.0

SYMMETRIC_PREFIX = "whsec_"
PRIVATE_PREFIX = "whsk_"
PUBLIC_PREFIX = "whpk_"

# The spec: "at least 24 bytes (192 bits, 512 maximum)", i.e. 24 to 64 bytes. What we make
# and sign with; verifying accepts any non-empty secret, as the reference libraries do, so a
# partner's shorter secret still works inbound.
_SECRET_BYTES = (24, 64)
_NEW_SECRET_BYTES = 32
_ED25519_KEY_BYTES = 32
_SIGNATURE_BYTES = {"v1": 32, "v1a": 64}

# A header carries a few signatures during a rotation; more is someone making each request
# cost us an Ed25519 verification per entry and key.
MAX_SIGNATURES = 16

# Visible ASCII but ".": survives every HTTP stack unchanged (no leading/trailing space to
# strip, no charset to guess) and cannot be re-split with the timestamp.
_SAFE_ID = re.compile(r"[\x21-\x2d\x2f-\x7e]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

Reason: TypeAlias = Literal["headers", "timestamp", "signature"]


class WebhookVerificationError(Unauthorized):
    """A request that is not a validly signed, current Standard Webhooks message.

    The message is the same whatever failed; ``reason`` (``headers``, ``timestamp`` or
    ``signature``) says which, for logs and counters only."""

    problem = "webhook-verification-failed"
    title = "Webhook verification failed"

    def __init__(
        self,
        detail: str = "the webhook signature could not be verified",
        *,
        reason: Reason = "signature",
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.reason: Reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_verification, (self.detail, self.reason))


def _rebuild_verification(detail: str, reason: Reason) -> WebhookVerificationError:
    return WebhookVerificationError(detail, reason=reason)


class InvalidWebhookKey(InvalidInput):
    """Text that is not a usable Standard Webhooks secret or key. The message says what was
    expected and never repeats the text (it may be a secret with a typo)."""

    problem = "invalid-webhook-key"
    title = "Invalid webhook key"


# --- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Symmetric:
    secret: bytes
    _keyed: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.secret, digestmod=hashlib.sha256))

    def mac(self, content: bytes) -> bytes:
        """HMAC-SHA256 of ``content``, from the key's prepared state. Not ``hmac.digest``:
        CPython's one-shot lets go of the GIL on every call, however short the message, and
        the caller then waits for whichever thread took it (beside one busy thread, a hundred
        times fewer calls/s than this way - ``bench.webhooks`` measures both; in the hub, a
        tenth of the webhook deliveries/s).
        An HMAC object's update lets go only from 2 KiB on, as hashlib's do."""
        keyed = self._keyed.copy()
        keyed.update(content)
        return keyed.digest()


@dataclass(frozen=True, slots=True)
class _Private:
    key: Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class _Public:
    key: Ed25519PublicKey


_Key: TypeAlias = _Symmetric | _Private | _Public


@lru_cache(maxsize=512)
def _parse(text: str) -> _Key:
    # Cached: an endpoint signs every delivery with the same few secrets, and deriving an
    # Ed25519 key costs as much as a signature.
    if text.startswith(SYMMETRIC_PREFIX):
        secret = _decode(text[len(SYMMETRIC_PREFIX) :], "a whsec_ secret")
        if not secret:
            raise InvalidWebhookKey("a whsec_ secret is never empty")
        return _Symmetric(secret)
    if text.startswith(PRIVATE_PREFIX):
        seed = _decode(text[len(PRIVATE_PREFIX) :], "a whsk_ private key")
        if len(seed) != _ED25519_KEY_BYTES:
            raise InvalidWebhookKey("a whsk_ private key is base64 of a 32-byte Ed25519 seed")
        return _Private(Ed25519PrivateKey.from_private_bytes(seed))
    if text.startswith(PUBLIC_PREFIX):
        raw = _decode(text[len(PUBLIC_PREFIX) :], "a whpk_ public key")
        if len(raw) != _ED25519_KEY_BYTES:
            raise InvalidWebhookKey("a whpk_ public key is base64 of a 32-byte Ed25519 key")
        return _Public(Ed25519PublicKey.from_public_bytes(raw))
    raise InvalidWebhookKey(
        "a Standard Webhooks key starts with whsec_ (symmetric), whsk_ (private) or whpk_ (public)"
    )


def check_verification_key(text: str) -> None:
    """Refuse ``text`` unless it can verify: a ``whsec_`` secret or a ``whpk_`` public key
    (:class:`InvalidWebhookKey` saying what was expected, never the text)."""
    if isinstance(_parse(text), _Private):
        raise InvalidWebhookKey("verify with the whpk_ public key, not the whsk_ private key")


def _decode(text: str, what: str) -> bytes:
    """Standard base64, padding optional (the reference libraries accept it without)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhookKey(f"{what} is standard base64 after its prefix") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_symmetric_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes (the spec asks for 24 to 64)."""
    return SYMMETRIC_PREFIX + _b64(random.token_bytes(_NEW_SECRET_BYTES))


def new_keypair() -> tuple[str, str]:
    """A fresh Ed25519 pair: ``("whsk_<seed>", "whpk_<public key>")``."""
    private = Ed25519PrivateKey.generate()
    return PRIVATE_PREFIX + _b64(private.private_bytes_raw()), _public_text(private)


def public_key_of(private: str) -> str:
    """The ``whpk_`` key that verifies what the ``whsk_`` key ``private`` signs."""
    key = _parse(private)
    if not isinstance(key, _Private):
        raise InvalidWebhookKey("only a whsk_ private key has a public key")
    return _public_text(key.key)


def _public_text(private: Ed25519PrivateKey) -> str:
    return PUBLIC_PREFIX + _b64(private.public_key().public_bytes_raw())


# --- signing --------------------------------------------------------------------------------


def message_id(event_id: str) -> str:
    """A ``webhook-id`` for an event: the event id itself when it is safe to sign and to
    carry in a header, else ``msg_`` and a digest of it - the same on every retry, so a
    receiver's deduplication still works."""
    if _SAFE_ID.fullmatch(event_id):
        return event_id
    return "msg_" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated, in their
    order - ``v1,…`` for a ``whsec_`` secret, ``v1a,…`` for a ``whsk_`` key.

    :class:`InvalidInput` for an id or timestamp that cannot be signed safely (see
    :func:`message_id`) or no secret; :class:`InvalidWebhookKey` for a secret that is not
    one (a ``whpk_`` key verifies, it cannot sign)."""
    return Signer(secrets).sign(msg_id, timestamp, body)


def signature_headers(
    msg_id: str, body: bytes, secrets: Sequence[str], *, now: float | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent now (or at ``now``)."""
    return Signer(secrets).headers(msg_id, body, now=now)


class Signer:
    """:func:`sign` and :func:`signature_headers` with ``secrets`` read and checked once: an
    endpoint signs every delivery with the same few (same errors, at construction)."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise InvalidInput("sign with at least one secret")
        self._keys: list[tuple[str, Callable[[bytes], bytes]]] = []
        for text in secrets:
            key = _parse(text)
            if isinstance(key, _Symmetric):
                low, high = _SECRET_BYTES
                if not low <= len(key.secret) <= high:
                    raise InvalidWebhookKey(f"a whsec_ secret that signs has {low} to {high} bytes")
                self._keys.append(("v1,", key.mac))
            elif isinstance(key, _Private):
                self._keys.append(("v1a,", key.key.sign))
            else:
                raise InvalidWebhookKey("a whpk_ public key verifies; sign with its whsk_ key")

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        _check_signable(msg_id, timestamp)
        content = _content(msg_id, timestamp, body)
        return " ".join(version + _b64(mac(content)) for version, mac in self._keys)

    def headers(self, msg_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
        timestamp = math.floor(time.time() if now is None else now)
        return {
            HEADER_ID: msg_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: self.sign(msg_id, timestamp, body),
        }


def _check_signable(msg_id: str, timestamp: int) -> None:
    if not _SAFE_ID.fullmatch(msg_id):
        raise InvalidInput(
            "a webhook id is 1 to 256 visible ASCII characters without '.': "
            "message_id(event_id) makes one from any event id"
        )
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise InvalidInput("a webhook timestamp is a non-negative integer (unix seconds)")


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


# --- verifying ------------------------------------------------------------------------------


def verify(
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """The ``webhook-id`` of a message signed by one of ``keys`` (``whsec_`` secrets and
    ``whpk_`` public keys), sent within ``tolerance`` seconds of now.

    ``headers`` is matched case-insensitively; a header sent twice with different values is
    refused (which one would the caller act on?). :class:`WebhookVerificationError` for
    anything else than such a message; :class:`InvalidWebhookKey` when ``keys`` are not keys
    (a ``whsk_`` private key included: a verifier holds the public half only)."""
    for text in keys:
        check_verification_key(text)
    parsed = [_parse(text) for text in keys]
    if not parsed:
        raise InvalidWebhookKey("verify with at least one whsec_ secret or whpk_ key")
    msg_id = _header(headers, HEADER_ID)
    sent_at = _header(headers, HEADER_TIMESTAMP)
    signatures = _header(headers, HEADER_SIGNATURE)
    if not msg_id or not sent_at or not signatures:
        raise WebhookVerificationError(reason="headers")
    if not _TIMESTAMP.fullmatch(sent_at):
        raise WebhookVerificationError(reason="headers")
    timestamp = int(sent_at)
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise WebhookVerificationError(reason="timestamp")
    entries = signatures.split()
    if len(entries) > MAX_SIGNATURES:
        raise WebhookVerificationError(reason="signature")
    content = _content(msg_id, timestamp, body)
    if not _any_signature_matches(entries, content, parsed):
        raise WebhookVerificationError(reason="signature")
    return msg_id


def _any_signature_matches(entries: list[str], content: bytes, keys: list[_Key]) -> bool:
    macs = [key.mac(content) for key in keys if isinstance(key, _Symmetric)]
    publics = [key.key for key in keys if isinstance(key, _Public)]
    matched = False
    for entry in entries:
        version, comma, encoded = entry.partition(",")
        size = _SIGNATURE_BYTES.get(version)
        if not comma or size is None:
            continue  # a version we do not know (v2 one day): not ours to judge
        signature = _signature_bytes(encoded, size)
        if signature is None:
            continue
        if version == "v1":
            # Every MAC compared, in constant time each: the time taken tells nothing about
            # which secret of a rotation matched, or how much of one.
            for mac in macs:
                matched |= hmac.compare_digest(mac, signature)
        else:
            for public in publics:
                try:
                    public.verify(signature, content)
                except InvalidSignature:
                    continue
                matched = True
    return matched


def _signature_bytes(encoded: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """One header's value, whatever the case of its name; None when absent or sent twice
    with different values."""
    values = {value for key, value in headers.items() if key.lower() == name}
    direct = headers.get(name)
    if direct is not None:
        values.add(direct)
    return values.pop() if len(values) == 1 else None
