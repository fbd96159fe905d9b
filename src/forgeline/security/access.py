"""Who is calling and what they may do: the caller of one request, and the scope vocabulary.

A scope is ``<resource>:<action>``, optionally narrowed by an event type pattern for the event
routes: ``events:publish:production.*`` may publish ``production.completed.v1`` and nothing
else; ``events:read`` reads every type. ``*`` grants everything (the hub operator's bootstrap
key). The routes say which scope they need (``api/auth.py``); the scopes a principal holds are
checked against :data:`SCOPES` when it is created, so a typo is refused then.

Function-level authorization: the administrative scopes (:data:`ADMIN_SCOPES`) can be
granted only to people and service accounts. A plant application or a partner can never hold
them - refused when the principal is created, and checked again on every request, so a row
edited behind the API's back does not open an admin route either.

Tenancy: every caller belongs to one tenant, except the operator (``tenant`` None), who sees
all of them. Objects of another tenant are answered as missing (404), never as forbidden,
so their ids cannot be probed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from ..exceptions import InvalidInput

__all__ = [
    "ADMIN_SCOPES",
    "OPERATOR",
    "SCOPES",
    "Caller",
    "check_scopes",
]

#: Every scope a principal may hold, with what it opens.
SCOPES: Final[dict[str, str]] = {
    "events:publish": "publish events (narrow with a type pattern: events:publish:production.*)",
    "events:read": "read events (narrow with a type pattern: events:read:lot.*)",
    "catalog:read": "read the event catalog",
    "subscriptions:read": "list and read subscriptions",
    "subscriptions:write": "create, change and delete subscriptions, replay a log range",
    "deadletters:read": "list and inspect dead letters",
    "deadletters:write": "replay and discard dead letters",
    "webhooks:read": "list webhook endpoints and their attempts",
    "webhooks:write": "manage webhook endpoints",
    "inventory:read": "stock availability",
    "purchase-requests:write": "create purchase requests",
    "customers:read": "customer validation for order entry",
    "transactions:write": "post confirmed transactions",
    "transactions:read": "read the status of posted transactions",
    "principals:admin": "manage the tenant's principals and their keys",
    "audit:read": "read the tenant's audit log",
}
#: Scopes only users and service accounts may hold.
ADMIN_SCOPES: Final = frozenset(
    {"subscriptions:write", "deadletters:write", "webhooks:write", "principals:admin", "audit:read"}
)
_PATTERNED: Final = frozenset({"events:publish", "events:read"})
_TYPE_PATTERN = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*")

Kind = Literal["user", "service", "plant", "partner", "operator"]
_MAY_ADMIN: Final = frozenset({"user", "service", "operator"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    id: str  # the principal's id ("operator" for the bootstrap key)
    kind: Kind
    tenant: str | None  # None: the operator, across tenants
    scopes: frozenset[str]
    environment: str | None = None
    via: Literal["operator-key", "api-key", "token"] = "operator-key"

    def allows(self, scope: str) -> bool:
        """Whether the caller holds ``scope`` (exactly, or any narrowing of it for the event
        routes is checked by :meth:`may`)."""
        if scope in ADMIN_SCOPES and self.kind not in _MAY_ADMIN:
            return False
        return "*" in self.scopes or scope in self.scopes or _any_narrowed(self.scopes, scope)

    def may(self, scope: str, event_type: str) -> bool:
        """Whether the caller may ``scope`` (events:publish / events:read) this event type."""
        if "*" in self.scopes or scope in self.scopes:
            return True
        return any(
            _glob(pattern).fullmatch(event_type) is not None
            for pattern in _patterns(self.scopes, scope)
        )

    def sees(self, tenant: str | None) -> bool:
        """Whether an object of ``tenant`` is this caller's to see."""
        return self.tenant is None or tenant == self.tenant


OPERATOR = Caller(id="operator", kind="operator", tenant=None, scopes=frozenset({"*"}))


def check_scopes(kind: str, scopes: Iterable[str]) -> list[str]:
    """``scopes`` checked for a principal of ``kind``: every one known and allowed for the
    kind; ``InvalidInput`` naming each problem otherwise. Answers them sorted, deduplicated."""
    problems: list[str] = []
    for scope in scopes:
        base, _, pattern = _split(scope)
        if base not in SCOPES:
            problems.append(f"{scope!r} is not a scope ({', '.join(sorted(SCOPES))})")
        elif pattern and base not in _PATTERNED:
            problems.append(f"{scope!r}: only events:publish and events:read take a type pattern")
        elif pattern and not _TYPE_PATTERN.fullmatch(pattern):
            problems.append(f"{scope!r}: {pattern!r} is not a type pattern such as production.*")
        elif base in ADMIN_SCOPES and kind not in _MAY_ADMIN:
            problems.append(f"{scope!r} is an administrative scope: not for a {kind} principal")
    if problems:
        raise InvalidInput("; ".join(problems))
    return sorted(set(scopes))


def _split(scope: str) -> tuple[str, str, str]:
    """``events:publish:production.*`` -> ("events:publish", ":", "production.*")."""
    resource, _, rest = scope.partition(":")
    action, separator, pattern = rest.partition(":")
    return f"{resource}:{action}", separator, pattern


def _patterns(scopes: frozenset[str], base: str) -> list[str]:
    prefix = base + ":"
    return [scope[len(prefix) :] for scope in scopes if scope.startswith(prefix)]


def _any_narrowed(scopes: frozenset[str], base: str) -> bool:
    return base in _PATTERNED and bool(_patterns(scopes, base))


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
