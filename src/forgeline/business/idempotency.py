"""``Idempotency-Key`` for the business APIs' writes: one effect, one answer, per key.

The first request with a key claims it in the security store (atomic across processes) and
runs; its answer is stored and every later request with the same key and the same body gets
that answer again (same status, same body, ``Idempotent-Replayed: true``). The same key with
another body is a client bug (422); a second request while the first still runs is refused
(409) rather than run twice. A request that fails before it has an answer worth keeping (Odoo
down, a bad reference) releases the key, so the client's retry runs for real.

Keys are scoped per tenant and principal: one caller can neither replay nor block another's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

from ..security.access import Caller
from ..security.store import SecurityStore
from .errors import IdempotencyKeyRequired, IdempotencyKeyReused, RequestInProgress

__all__ = ["IdempotentRequest", "Replay", "check_key", "request_digest"]

#: Printable ASCII, as the IETF draft's examples (UUIDs, ULIDs) are; 255 fits the store.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: The operator (tenant None) has no tenant; principals' ids are unique across tenants anyway.
_NO_TENANT = "*"


def check_key(key: str | None) -> str:
    """The ``Idempotency-Key`` header's value, or the 400 that says what it must be."""
    if key is None:
        raise IdempotencyKeyRequired(
            "this request needs an Idempotency-Key header (a unique value per operation, such"
            " as a UUID): send it again with the same key to retry safely",
            errors=[{"path": "header.Idempotency-Key", "message": "required"}],
        )
    if not _KEY.fullmatch(key):
        raise IdempotencyKeyRequired(
            "Idempotency-Key must be 1-255 visible ASCII characters",
            errors=[{"path": "header.Idempotency-Key", "message": "1-255 visible ASCII"}],
        )
    return key


def request_digest(method: str, path: str, document: object) -> str:
    """What "the same request" means: method, path and the body's JSON with sorted keys (so
    key order and whitespace do not make two requests differ)."""
    body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of the first request with this key."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A claimed key: ``complete`` it with the answer, or ``release`` it if the request failed
    and may be retried."""

    store: SecurityStore
    tenant: str
    principal: str
    key: str
    digest: str

    @classmethod
    async def claim(
        cls, store: SecurityStore, caller: Caller, key: str, digest: str
    ) -> IdempotentRequest | Replay:
        """This request's claim on ``key``, or the first answer to replay; ``RequestInProgress``
        or ``IdempotencyKeyReused`` when neither may happen."""
        tenant = caller.tenant if caller.tenant is not None else _NO_TENANT
        found = await store.remember_request(tenant, caller.id, key, digest)
        if found is None:
            return cls(store, tenant, caller.id, key, digest)
        if not found.same_request(digest):
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was used for a different request: use a new key for"
                " a new operation",
                errors=[{"path": "header.Idempotency-Key", "message": "used for another body"}],
            )
        if found.in_progress or found.status is None or found.body is None:
            raise RequestInProgress(
                f"the first request with Idempotency-Key {key!r} is still running: retry later"
            )
        return Replay(found.status, found.body)

    async def complete(self, status: int, body: bytes) -> None:
        await self.store.complete_request(
            self.tenant, self.principal, self.key, self.digest, status, body
        )

    async def release(self) -> None:
        await self.store.release_request(self.tenant, self.principal, self.key, self.digest)
