"""Secrets at rest: values the store must keep but never hold in clear (signing keys, sink
credentials, webhook secrets), sealed with AES-256-GCM under a master key the database
never sees.

Master keys come from ``FORGELINE_MASTER_KEY`` or the file named by
``FORGELINE_MASTER_KEY_FILE``, as ``kid:base64key`` entries separated by commas, spaces or
newlines; the first seals, all open. Rotation is: put a new key first, keep the old ones,
reseal what ``needs_reseal`` names, then drop the old key. Make one with ``new_master_key``.
With neither set (a laptop, the demo), a key is generated into ``<data_dir>/master.key``
(mode 0600) with a warning: whoever can read the data directory can then read the secrets.

A sealed value is ``v1.<kid>.<nonce>.<ciphertext>`` (base64url). The caller's ``context``
(say ``b"subscription:42:sink.auth"``) is authenticated with it, so a sealed value copied
into another row or field does not open there.

Failures: a kid no configured key has is a ``ConfigError`` (the operator dropped a key that
is still in use: the fix is configuration). A value that does not open is
``InvalidInput``: it is not a value this hub sealed for this context, and nothing the
caller may retry or re-authenticate will change that (``Unauthorized`` would tell an HTTP
client to fetch new credentials, which cannot help). The store, opening its own rows,
should treat it as corruption. ``ValueError`` marks a caller's bug (an empty context).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..exceptions import ConfigError, InvalidInput

__all__ = [
    "DEV_KEY_FILE",
    "ENV_KEY",
    "ENV_KEY_FILE",
    "MasterKey",
    "SecretBox",
    "load_secretbox",
    "new_master_key",
    "parse_master_keys",
]

log = logging.getLogger(__name__)

ENV_KEY = "FORGELINE_MASTER_KEY"
ENV_KEY_FILE = "FORGELINE_MASTER_KEY_FILE"
DEV_KEY_FILE = "master.key"
_VERSION = "v1"
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_NONCE_BYTES = 12
_TAG_BYTES = 16


@dataclass(frozen=True)
class MasterKey:
    """A 256-bit AES key and its id. ``repr`` never shows the key."""

    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.fullmatch(self.kid):
            raise ConfigError(f"master key id {self.kid!r}: use 1-32 of A-Z a-z 0-9 _ -")
        if len(self.key) != 32:
            raise ConfigError(f"master key {self.kid!r} must be 32 bytes (256 bits)")


class SecretBox:
    """Seals and opens values with the master keys; the first key seals."""

    def __init__(self, keys: Sequence[MasterKey]) -> None:
        if not keys:
            raise ConfigError("no master key configured")
        self._keys: dict[str, MasterKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ConfigError(f"master key id {key.kid!r} is listed twice")
            self._keys[key.kid] = key
        self.current = keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(self.current.key).encrypt(
            nonce, plaintext, _associated_data(self.current.kid, context)
        )
        return ".".join((_VERSION, self.current.kid, _b64(nonce), _b64(sealed)))

    def open(self, token: str, *, context: bytes) -> bytes:
        kid, nonce, sealed = _split(token)
        key = self._keys.get(kid)
        if key is None:
            raise ConfigError(
                f"a secret was sealed with master key {kid!r}, which is not configured:"
                f" add it back to {ENV_KEY} (after the current key) to open it"
            )
        try:
            return AESGCM(key.key).decrypt(nonce, sealed, _associated_data(kid, context))
        except InvalidTag:
            raise InvalidInput(
                "sealed secret does not open: tampered, corrupted, or sealed for another field"
            ) from None

    def needs_reseal(self, token: str) -> bool:
        """Whether ``token`` was sealed with a key other than the current one."""
        return _split(token)[0] != self.current.kid

    def reseal(self, token: str, *, context: bytes) -> str:
        """``token`` sealed again with the current key (the same token if it already is)."""
        if not self.needs_reseal(token):
            _ = self.open(token, context=context)  # still proves it opens here
            return token
        return self.seal(self.open(token, context=context), context=context)


def _associated_data(kid: str, context: bytes) -> bytes:
    if not isinstance(context, bytes) or not context:
        # An empty context would let a sealed value be moved to any row: a caller's bug.
        raise ValueError("seal/open need a non-empty bytes context naming the row and field")
    # The version and kid are authenticated too: no part of the token can be swapped.
    return b"forgeline-secretbox\x00" + f"{_VERSION}.{kid}".encode() + b"\x00" + context


def _split(token: str) -> tuple[str, bytes, bytes]:
    parts = token.split(".") if isinstance(token, str) else []
    if (
        len(parts) != 4
        or parts[0] != _VERSION
        or not _KID.fullmatch(parts[1])
        or not all(_B64URL.fullmatch(p) for p in parts[2:])
    ):
        raise InvalidInput("not a sealed secret (expected v1.<kid>.<nonce>.<ciphertext>)")
    nonce, sealed = _unb64(parts[2]), _unb64(parts[3])
    if len(nonce) != _NONCE_BYTES or len(sealed) < _TAG_BYTES:
        raise InvalidInput("not a sealed secret (expected v1.<kid>.<nonce>.<ciphertext>)")
    return parts[1], nonce, sealed


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- where master keys come from ------------------------------------------------------------


def parse_master_keys(text: str, *, source: str = ENV_KEY) -> list[MasterKey]:
    """``kid:base64key`` entries (standard or url-safe base64), first = current.

    Errors name the entry by its kid or position, never by its key material.
    """
    entries = [e for e in re.split(r"[,\s]+", text.strip()) if e]
    if not entries:
        raise ConfigError(f"{source} holds no master key")
    keys = []
    for number, entry in enumerate(entries, 1):
        kid, sep, encoded = entry.partition(":")
        if not sep or not kid or not encoded:
            raise ConfigError(f"{source}: entry {number} is not kid:base64key")
        try:
            raw = base64.b64decode(
                encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4),
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ConfigError(f"{source}: master key {kid!r} is not base64") from None
        keys.append(MasterKey(kid, raw))
    return keys


def new_master_key(kid: str | None = None) -> str:
    """A fresh ``kid:base64key`` entry for ``FORGELINE_MASTER_KEY``."""
    key = MasterKey(kid or f"k{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256))
    return f"{key.kid}:{base64.b64encode(key.key).decode('ascii')}"


def load_secretbox(
    *, data_dir: Path, env: Mapping[str, str] | None = None, allow_dev_key: bool = True
) -> SecretBox:
    """The hub's secret box: from the environment, the key file, or the dev default.

    A variable that is set but empty is an error, not "unset": a deployment whose secret
    failed to render must not fall back to a key generated on local disk. Pass
    ``allow_dev_key=False`` when processes share a store (scale-out): each would generate a
    different key and none could open what the others sealed.
    """
    env = os.environ if env is None else env
    if ENV_KEY in env and ENV_KEY_FILE in env:
        raise ConfigError(f"set {ENV_KEY} or {ENV_KEY_FILE}, not both")
    if ENV_KEY in env:
        return SecretBox(parse_master_keys(env[ENV_KEY]))
    if ENV_KEY_FILE in env:
        path = env[ENV_KEY_FILE].strip()
        if not path:
            raise ConfigError(f"{ENV_KEY_FILE} is set but empty")
        return SecretBox(parse_master_keys(_read_key_file(Path(path)), source=path))
    if not allow_dev_key:
        raise ConfigError(
            f"set {ENV_KEY} or {ENV_KEY_FILE}: processes sharing a store must share a master key"
        )
    return SecretBox(parse_master_keys(_dev_key_file(data_dir), source=str(data_dir)))


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"master key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"master key file {path} cannot be read: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("master key file %s is readable by others than its owner: chmod 600", path)
    return text


def _dev_key_file(data_dir: Path) -> str:
    """The data directory's own master key, created on first use.

    Written whole to a temporary file, flushed to disk, then linked into place: a second
    process starting at the same moment either wins the link or reads a complete file,
    and a crash never leaves a half-written key (losing it would lose every secret).
    """
    path = data_dir / DEV_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".master.key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:  # mkstemp: mode 0600
                handle.write(new_master_key(f"dev-{secrets.token_hex(3)}") + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            else:
                _fsync_directory(data_dir)
                log.warning(
                    "no %s or %s: generated a master key in %s; anyone who can read the data"
                    " directory can read the stored secrets. Set %s in production.",
                    ENV_KEY,
                    ENV_KEY_FILE,
                    path,
                    ENV_KEY,
                )
        finally:
            os.unlink(temporary)
    return _read_key_file(path)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
