"""Writing the audit log from the API: one call per admin action, auth failure, replay, discard
or key change, so every route records them alike.

``audit`` appends one entry for a caller; ``audited`` wraps an action and appends its
outcome whatever it is (success, or the failure with its problem type), then lets the error
through. The chain itself (hashing, verification) is ``audit.py``; storage is the security
store's.

Whose entry: an action on a tenant's object is that tenant's (its auditors read it at
``/v1/audit``), also when the hub operator did it; actions on the hub itself (its signing
keys) are the operator's, under the tenant ``HUB_TENANT``, which no principal can belong to.

What goes in ``detail``: the ids, names, prefixes and scopes needed to understand the action;
never a secret, a hash, a token or a request body.

Appending is part of the action: when it fails (the store is down), the request fails with
the store's 503 even though the action itself was done, rather than leave an admin change
unrecorded without anyone knowing. A failure to record a *failed* action is logged and the
original error answered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..exceptions import Forbidden, ForgelineError, NotFound, Unauthorized
from .access import Caller
from .audit import AuditEntry, AuditRecord, Outcome
from .store import SecurityStore

__all__ = ["ANONYMOUS", "HUB_TENANT", "Action", "audit", "audited"]

log = logging.getLogger(__name__)

#: The tenant of entries about the hub itself. Not a valid tenant name for a principal.
HUB_TENANT = "*"
#: The actor of an entry when nobody could be identified (a failed authentication).
ANONYMOUS = "anonymous"


class _HasSecurity(Protocol):
    @property
    def security(self) -> SecurityStore: ...


async def audit(
    hub: _HasSecurity,
    caller: Caller | None,
    action: str,
    target: str | None = None,
    outcome: Outcome = "success",
    detail: Mapping[str, Any] | None = None,
    *,
    tenant: str | None = None,
) -> AuditRecord:
    """Append one entry: ``caller`` did ``action`` (a dotted verb: ``subscription.update``,
    ``deadletter.replay``, ``auth.failed``) to ``target`` with ``outcome``.

    The entry is ``tenant``'s when given (the object's tenant), else the caller's, else the
    hub's. ``caller`` None is an anonymous caller (an authentication that failed)."""
    entry = AuditEntry(
        tenant=tenant or (caller.tenant if caller is not None else None) or HUB_TENANT,
        actor=caller.id if caller is not None else ANONYMOUS,
        action=action,
        outcome=outcome,
        target=target,
        detail=dict(detail or {}),
    )
    return await hub.security.append_audit(entry)


@dataclass
class Action:
    """What an ``audited`` block learns while it runs: its target once known (a new object's
    id), the tenant whose it is, and details worth keeping."""

    target: str | None = None
    tenant: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def audited(
    hub: _HasSecurity,
    caller: Caller | None,
    action: str,
    *,
    target: str | None = None,
    tenant: str | None = None,
) -> AsyncIterator[Action]:
    """Run the block as ``action`` and append its outcome: ``success``; ``denied`` for a
    refusal (403, 401, and 404, which is how another tenant's object answers); ``failure``
    for any other error, with its problem type in ``detail.error``. The error is re-raised."""
    done = Action(target=target, tenant=tenant)
    try:
        yield done
    except Exception as exc:
        outcome: Outcome = (
            "denied" if isinstance(exc, Forbidden | Unauthorized | NotFound) else "failure"
        )
        error = exc.problem if isinstance(exc, ForgelineError) else "internal-error"
        try:
            await audit(
                hub,
                caller,
                action,
                done.target,
                outcome,
                {**done.detail, "error": error},
                tenant=done.tenant,
            )
        except ForgelineError as failed:
            log.error("could not audit the failed %s: %s", action, failed)
        raise
    await audit(hub, caller, action, done.target, "success", done.detail, tenant=done.tenant)
