"""API keys and OAuth client secrets: minted once, stored as a hash, found by a clear prefix.

Format of an API key (documented for operators and secret scanners)::

    flk_<environment>_<key id>_<secret>
    flk_prod_k7q2m4xw9c3p_5xg3...   (52 characters of secret)

- ``flk`` marks a Forgeline key, so scanners and humans recognise a leaked one;
- ``environment`` (``dev``, ``test``, ``prod``, ...: ``[a-z][a-z0-9]{0,15}``) shows at a
  glance where the key works;
- ``key id``: 12 characters of base32 (60 random bits), stored in clear: the lookup key;
- ``secret``: 32 random bytes (256 bits) in lowercase base32, 52 characters.

Only lowercase letters and digits between the underscores: the parts never contain the
separator, and a double click selects the whole key. The store keeps ``key_id``,
``environment`` and ``key_hash`` (``sha256:<hex>`` of the whole key text, so a secret
cannot be paired with another key's id); the plaintext is shown once and never again.

Why SHA-256 and not argon2/bcrypt: slow hashes exist to make guessing low-entropy
passwords expensive. A 256-bit random secret cannot be guessed at any speed, so a slow
hash would add only its cost (tens of milliseconds on every authenticated request, a
denial-of-service lever) and no safety. For the same reason there is no pepper: it would
protect nothing a 256-bit secret does not already protect, and rotating the master key
would then invalidate every key. The ``sha256:`` prefix leaves room to change scheme.

OAuth client secrets (``flcs_<52 base32>``) use the same primitives; the client id,
looked up first, is what finds them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass

from ..exceptions import ConfigError, InvalidInput, Unauthorized

__all__ = [
    "CLIENT_SECRET_PREFIX",
    "KEY_PREFIX",
    "MAX_KEY_LENGTH",
    "KeyRecordParts",
    "ParsedKey",
    "check_usable",
    "hash_secret",
    "matches",
    "new_client_secret",
    "new_key",
    "parse",
    "rotated_expiry",
]

KEY_PREFIX = "flk"
CLIENT_SECRET_PREFIX = "flcs"  # noqa: S105 - a format marker, not a secret
#: Longer text is not a key: refused before any parsing or hashing.
MAX_KEY_LENGTH = 128
_HASH_SCHEME = "sha256:"
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9]{0,15}")
_KEY = re.compile(r"flk_([a-z][a-z0-9]{0,15})_([a-z2-7]{12})_([a-z2-7]{52})")
_CLIENT_SECRET = re.compile(r"flcs_[a-z2-7]{52}")


@dataclass(frozen=True)
class KeyRecordParts:
    """What the store keeps of a new key: never the key itself."""

    key_id: str
    environment: str
    key_hash: str

    @property
    def prefix(self) -> str:
        """The public part (``flk_prod_k7q2m4xw9c3p``): safe to list, log and show."""
        return f"{KEY_PREFIX}_{self.environment}_{self.key_id}"


@dataclass(frozen=True)
class ParsedKey:
    """A text shaped like an API key. Its secret stays in the text: compare with ``matches``."""

    environment: str
    key_id: str

    @property
    def prefix(self) -> str:
        """What to look the key up by: the ``prefix`` of the ``KeyRecordParts`` it came from."""
        return f"{KEY_PREFIX}_{self.environment}_{self.key_id}"


def new_key(environment: str) -> tuple[str, KeyRecordParts]:
    """A new API key: the plaintext to show once, and the parts to store."""
    if not isinstance(environment, str) or not _ENVIRONMENT.fullmatch(environment):
        raise InvalidInput("environment must be 1-16 lowercase letters or digits, a letter first")
    key_id = _base32(secrets.token_bytes(8))[:12]
    plaintext = f"{KEY_PREFIX}_{environment}_{key_id}_{_base32(secrets.token_bytes(32))}"
    return plaintext, KeyRecordParts(key_id, environment, hash_secret(plaintext))


def parse(text: object) -> ParsedKey | None:
    """The environment and id of a text shaped like an API key; ``None`` for anything else
    (any type, any length, surrounding whitespace, a trailing newline): never raises."""
    if not isinstance(text, str) or len(text) > MAX_KEY_LENGTH:
        return None
    found = _KEY.fullmatch(text)
    return ParsedKey(found[1], found[2]) if found else None


def new_client_secret() -> tuple[str, str]:
    """A new OAuth client secret and its hash to store."""
    plaintext = f"{CLIENT_SECRET_PREFIX}_{_base32(secrets.token_bytes(32))}"
    return plaintext, hash_secret(plaintext)


def hash_secret(text: str) -> str:
    return _HASH_SCHEME + hashlib.sha256(text.encode()).hexdigest()


def matches(text: object, stored_hash: str) -> bool:
    """Whether ``text`` is the key (or client secret) ``stored_hash`` was made from.

    Constant time in the comparison; false for any text that cannot be one of ours, and for
    a hash of a scheme we do not know (it cannot be checked, so it does not match).
    """
    if not isinstance(text, str) or len(text) > MAX_KEY_LENGTH or not text.isascii():
        return False
    if not isinstance(stored_hash, str) or not stored_hash.startswith(_HASH_SCHEME):
        return False
    return hmac.compare_digest(hash_secret(text).encode(), stored_hash.encode("ascii", "replace"))


def check_usable(*, expires_at: float | None, revoked_at: float | None, now: float) -> None:
    """Raise ``Unauthorized`` unless a stored key (or client secret) works at ``now``.

    The reason is the same for an expired and a revoked key: a caller holding one learns
    nothing from the difference, and the audit log records the real state.
    """
    if revoked_at is not None and revoked_at <= now:
        raise Unauthorized("API key expired or revoked")
    if expires_at is not None and expires_at <= now:
        raise Unauthorized("API key expired or revoked")


def rotated_expiry(expires_at: float | None, *, now: float, overlap: float) -> float:
    """When the old key of a rotation stops working: ``overlap`` seconds from ``now``, so
    its users can switch to the new key, but never later than it was due to expire."""
    if not (math.isfinite(overlap) and overlap >= 0):
        raise ConfigError("key rotation overlap must be a finite number of seconds >= 0")
    end = now + overlap
    return end if expires_at is None else min(expires_at, end)


def _base32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()
