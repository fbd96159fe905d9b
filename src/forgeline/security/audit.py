"""The audit log's entries and its hash chain: what is hashed, and how a chain is verified.

Governance wraps every stage of the data path (DESIGN.md §1); this is its memory. Every admin
action, auth failure, replay, discard and key change becomes one ``AuditEntry``; the security
store (``store.py``) appends it under a lock that serialises appenders, giving it the next
``seq`` and

    hash = sha256(previous hash (32 raw bytes) || canonical JSON of the record)

where the canonical JSON is the object ``{seq, time, tenant, actor, action, target, outcome,
detail}`` with sorted keys, no whitespace, UTF-8 (not ASCII-escaped) and floats in Python's
shortest round-trip form; the first entry's previous hash is ``GENESIS`` (32 zero bytes).
The same transaction moves a one-row head to (seq, hash). So an edited entry no longer
matches its hash, a deleted one leaves a gap in ``seq``, and deleting the newest entries
leaves the head pointing past the end: ``verify`` (here, once for every backend) finds each.

What a hash chain cannot do: someone who can write the database can recompute the whole chain
and the head. Copy ``head`` somewhere they cannot write (a log shipper, a ticket) to pin it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from ..exceptions import BackendError, InvalidInput

__all__ = [
    "AUDIT_COLUMNS",
    "GENESIS",
    "MAX_DETAIL_BYTES",
    "AuditEntry",
    "AuditRecord",
    "Outcome",
    "VerifyResult",
    "audit_from_row",
    "canonical_detail",
    "chain",
    "forged",
    "verify_chain",
]

#: The "previous hash" of entry 1.
GENESIS = "0" * 64
#: An entry's detail, as canonical JSON, is at most this long: an audit entry says what was
#: done to what, it does not carry payloads.
MAX_DETAIL_BYTES = 16 * 1024

Outcome = Literal["success", "failure", "denied"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What happened, as the caller tells it; the store adds seq, time and hash.

    ``tenant`` is the tenant the action concerns (whose auditors may read it); ``actor`` the
    principal id (or ``"admin"``, ``"anonymous"``); ``action`` a dotted verb such as
    ``principal.create`` or ``auth.failed``; ``target`` the object's id, if any. ``detail``
    is a small JSON object: never put secrets or request bodies in it."""

    tenant: str
    actor: str
    action: str
    outcome: Outcome
    target: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored entry of the chain."""

    seq: int
    time: float
    tenant: str
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """The record as the API shows it (nothing in it is secret)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "tenant": self.tenant,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``ok``, or the first entry that breaks the chain (``first_bad_seq``) and why.
    ``checked`` counts the entries found intact before it."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def canonical_detail(entry: AuditEntry) -> str:
    """``entry``'s detail as canonical JSON text (what the store keeps), outcome checked.

    Raises ``InvalidInput`` for an unknown outcome, or a detail that is not a JSON object of
    finite numbers and valid text, or is over ``MAX_DETAIL_BYTES``. (The store checks the
    text fields.)"""
    if entry.outcome not in OUTCOMES:
        raise InvalidInput(
            f"outcome must be one of {', '.join(OUTCOMES)}, not {entry.outcome!r:.40}",
            errors=[{"path": "outcome", "message": f"one of {', '.join(OUTCOMES)}"}],
        )
    if not isinstance(entry.detail, Mapping):
        raise _bad_detail("it must be a JSON object")
    try:
        text = _dumps(dict(entry.detail))
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is one
        raise _bad_detail(str(exc)) from exc
    if size > MAX_DETAIL_BYTES:
        raise _bad_detail(f"{size} bytes as JSON, over {MAX_DETAIL_BYTES}")
    return text


def chain(entry: AuditEntry, detail: str, seq: int, time: float, previous_hash: str) -> AuditRecord:
    """The record ``entry`` becomes as entry ``seq`` after ``previous_hash``. Called by the
    backends inside the transaction that holds the head's lock. ``detail`` is the canonical
    text, parsed back so the record hashes exactly what a later ``verify`` will read."""
    record = AuditRecord(
        seq,
        time,
        entry.tenant,
        entry.actor,
        entry.action,
        entry.target,
        entry.outcome,
        json.loads(detail),
        hash="",
    )
    return replace(record, hash=_hash(record, previous_hash))


def _hash(record: AuditRecord, previous_hash: str) -> str:
    body = _dumps(
        {
            "seq": record.seq,
            "time": record.time,
            "tenant": record.tenant,
            "actor": record.actor,
            "action": record.action,
            "target": record.target,
            "outcome": record.outcome,
            "detail": record.detail,
        }
    ).encode("utf-8")
    return hashlib.sha256(bytes.fromhex(previous_hash) + body).hexdigest()


def _dumps(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


# -- rows, for the backends ----------------------------------------------------------------------

#: The ``audit_log`` columns, in ``AuditRecord`` order.
AUDIT_COLUMNS = "seq, time, tenant, actor, action, target, outcome, detail, hash"


def audit_from_row(row: Sequence[Any]) -> AuditRecord:
    seq, at, tenant, actor, action, target, outcome, detail, hash_ = row
    try:
        parsed = json.loads(detail)
    except ValueError:
        # Only an edit by hand stores broken JSON; keep the text so the hash check names it.
        parsed = {"$unparsable": detail}
    return AuditRecord(seq, at, tenant, actor, action, target, outcome, parsed, hash_)


def forged(seq: int) -> BackendError:
    """The error of an append that finds its seq taken: a row was added behind our back."""
    return BackendError(
        f"audit entry {seq} exists but the head does not record it: the log was changed"
        " outside Forgeline; run `forgeline audit verify`"
    )


# -- verification ------------------------------------------------------------------------------

#: (seq, hash) of the head row, or None before the first append.
Head = tuple[int, str] | None
#: (lowest seq, highest seq) in the log, or None when it is empty.
Extent = tuple[int, int] | None


async def verify_chain(
    head: Callable[[], Awaitable[Head]],
    page: Callable[[int, int, int], Awaitable[list[AuditRecord]]],
    extent: Callable[[], Awaitable[Extent]],
    *,
    page_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Walk the chain from seq 1 to the head, ``page_size`` entries at a time.

    ``page(after, upto, limit)`` answers entries with ``after < seq <= upto`` in seq order.
    Appenders may run meanwhile: the walk stops at the head read first, and the closing check
    reads the highest seq before the head again, so a concurrent append (which moves both in
    one transaction) never looks like tampering."""
    start = await head()
    top, top_hash = start if start is not None else (0, GENESIS)
    expected, previous, checked = 1, GENESIS, 0
    while expected <= top:
        rows = await page(expected - 1, top, page_size)
        if not rows:
            break
        for row in rows:
            if row.seq != expected:
                return _bad(checked, expected, f"entry {expected} is missing (deleted)")
            if _hash(row, previous) != row.hash:
                return _bad(checked, row.seq, f"entry {row.seq} does not match its hash (edited)")
            expected, previous, checked = row.seq + 1, row.hash, checked + 1
        if progress is not None:
            progress(checked)
    if expected <= top:
        return _bad(
            checked,
            expected,
            f"entries {expected}-{top} are missing: the head records {top} entries",
        )
    if previous != top_hash:
        return _bad(checked, top, f"entry {top} is not the one the head records")
    found = await extent()
    now = await head()
    now_top = now[0] if now is not None else 0
    if found is not None:
        low, high = found
        if now is None:
            return _bad(checked, low, "the audit head is missing: the log cannot be vouched for")
        if low < 1:
            return _bad(checked, low, f"entry {low} has a seq no append gives")
        if high > now_top:
            return _bad(
                checked,
                now_top + 1,
                f"entries after {now_top} were not appended through the store"
                " (the head does not record them)",
            )
    return VerifyResult(ok=True, checked=checked)


def _bad(checked: int, seq: int, reason: str) -> VerifyResult:
    return VerifyResult(ok=False, checked=checked, first_bad_seq=seq, reason=reason)


def _bad_detail(why: str) -> InvalidInput:
    return InvalidInput(
        f"audit detail cannot be stored: {why}",
        errors=[{"path": "detail", "message": why}],
    )
