"""Where webhook endpoints live: a row beside the subscription that routes and retries for
each, and the endpoint's sealed signing secrets (migration ``0004``, in the store's database).

An endpoint *is* a subscription (``WebhookSink``): its deliveries, attempts, dead letters and
replays are the store's, unchanged. What the endpoint adds is what a receiver is promised -
a URL, secrets, a description, metadata - and its health: ``failing_since`` (first failure
since the last success) and, when it was turned off, ``disabled_at`` and why. Whether it is
enabled is the subscription's ``enabled``, the one flag the router and the dispatcher read.

That is why this store writes the subscription's row itself, in the same transaction as the
endpoint's: creating an endpoint, changing it, or disabling it after a 410 never leaves a
subscription without its endpoint, nor an endpoint whose state disagrees with its routing.
Deleting the subscription (the hub's ``delete_subscription``) drops the endpoint and its
secrets with it (foreign keys, ``ON DELETE CASCADE``).

Backends, by the store URL as the security store does: ``_endpoint_sqlite.py`` (a
``Database`` of its own on the store file) and ``_endpoint_postgres.py``. Secrets arrive
sealed (``secretbox``); nothing here ever holds one in clear.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .._lifecycle import AsyncResource
from ..exceptions import ConfigError
from ..route.subscription import SubscriptionSpec
from ..store import Delivery, Subscription

__all__ = [
    "Endpoint",
    "EndpointSecret",
    "EndpointStore",
    "SigningKind",
    "open_endpoint_store",
    "secret_context",
]

SigningKind = Literal["v1", "v1a"]


def secret_context(endpoint_id: str, secret_id: str) -> bytes:
    """What a sealed secret is bound to: a copy in another row or endpoint does not open."""
    return f"webhook-secret:{endpoint_id}:{secret_id}".encode()


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    """One signing secret of an endpoint: ``sealed`` is the ``whsec_`` secret (``v1``) or the
    ``whsk_`` private key (``v1a``, whose ``whpk_`` public key is kept in clear)."""

    id: str
    endpoint_id: str
    kind: SigningKind
    sealed: str = field(repr=False)
    public_key: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None

    def signs(self, now: float) -> bool:
        """Still signing at ``now``: rotation shortens the old secret's life, never more."""
        return self.expires_at is None or self.expires_at > now

    def context(self) -> bytes:
        return secret_context(self.endpoint_id, self.id)

    def public(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }
        if self.public_key is not None:
            shown["public_key"] = self.public_key
        return shown


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint with its subscription (filter, map, policy, enabled) and its secrets,
    oldest first."""

    id: str
    tenant: str | None
    subscription: Subscription
    url: str
    description: str
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    disabled_at: float | None = None
    disabled_reason: str | None = None
    failing_since: float | None = None
    secrets: tuple[EndpointSecret, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.subscription.spec.enabled

    def signing(self, now: float) -> list[EndpointSecret]:
        """The secrets that sign a message sent at ``now``."""
        return [secret for secret in self.secrets if secret.signs(now)]


# -- the store ---------------------------------------------------------------------------------


class EndpointStore(AsyncResource, ABC):
    """Webhook endpoints and their secrets, beside the subscriptions in the store."""

    @abstractmethod
    async def create(
        self, endpoint: Endpoint, secret: EndpointSecret, subscription: Subscription
    ) -> None:
        """Insert the subscription, the endpoint and its first secret, in one transaction.
        ``Conflict`` when the subscription's name is taken."""

    @abstractmethod
    async def get(self, id: str) -> Endpoint | None:
        """The endpoint with its subscription and secrets; None when unknown."""

    @abstractmethod
    async def page(self, tenant: str | None, after: str, limit: int) -> list[Endpoint]:
        """Up to ``limit`` endpoints with ``id > after`` by id: ``tenant``'s, or every
        tenant's when None."""

    @abstractmethod
    async def save(
        self,
        id: str,
        *,
        url: str,
        description: str,
        metadata: dict[str, Any],
        spec: SubscriptionSpec,
        enabled: bool | None,
        reason: str | None,
        now: float,
    ) -> Endpoint | None:
        """Write the endpoint's editable fields and its subscription's spec in one
        transaction. ``enabled`` None keeps the stored flag (the dispatcher may have
        disabled it meanwhile); True clears ``disabled_*`` and ``failing_since``; False
        records ``reason``. None when the endpoint is unknown."""

    @abstractmethod
    async def set_enabled(
        self, id: str, enabled: bool, reason: str | None, now: float
    ) -> Endpoint | None:
        """Turn the endpoint on or off (its subscription's ``enabled`` and the endpoint's
        ``disabled_*``/``failing_since``), atomically; the endpoint if this changed it, None
        if it already was so (or is unknown): whoever gets it announces the change, once."""

    @abstractmethod
    async def rotate(self, id: str, secret: EndpointSecret, overlap_until: float) -> bool:
        """Add ``secret``; every secret still signing now expires at ``overlap_until`` at
        the latest (never later than it would have); secrets already expired are dropped.
        False when the endpoint is unknown."""

    @abstractmethod
    async def mark_failing(self, id: str, at: float) -> float | None:
        """Start the failing streak at ``at`` unless one is running; the streak's start (None
        for an unknown endpoint)."""

    @abstractmethod
    async def mark_healthy(self, id: str) -> None:
        """End the failing streak (a success)."""

    @abstractmethod
    async def messages(
        self, subscription_id: str, *, before: int, limit: int, state: str | None
    ) -> list[Delivery]:
        """The endpoint's deliveries (one per message), newest first (``id < before``), each
        with its attempt history (a first-try success has none: its delivery row says it)."""


def open_endpoint_store(url: str) -> EndpointStore:
    """The endpoint store in the store at ``url`` (the store's own URL), not yet opened."""
    if url.startswith("sqlite:"):
        from ._endpoint_sqlite import SqliteEndpointStore

        return SqliteEndpointStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from ._endpoint_postgres import PostgresEndpointStore
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs extra packages ({exc.name} is missing):"
                " pip install 'forgeline[postgres]'"
            ) from exc
        return PostgresEndpointStore(url)
    raise ConfigError(
        f"no store backend for {url!r}; use sqlite:///PATH or postgresql://HOST/DB?schema=NAME"
    )


# -- rows, shared by the backends --------------------------------------------------------------

#: ``webhook_endpoints`` columns, in the order ``endpoint_row`` gives them.
ENDPOINT_COLUMNS = (
    "id, tenant, sub_id, url, description, metadata, created_at, updated_at, disabled_at,"
    " disabled_reason, failing_since"
)
SECRET_COLUMNS = "id, endpoint_id, kind, sealed, public_key, created_at, expires_at"  # noqa: S105
SUBSCRIPTION_COLUMNS = "id, spec, created_at, updated_at, start_position"
DELIVERY_COLUMNS = (
    "id, sub_id, position, event_id, event_source, event_type, pkey, state, attempts, due_at,"
    " created_at, updated_at, last_status, last_error, reason"
)
ATTEMPT_COLUMNS = "delivery_id, attempt, started_at, duration_ms, outcome, status, error, response"


def qualified(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


def dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def endpoint_row(endpoint: Endpoint) -> tuple[Any, ...]:
    return (
        endpoint.id,
        endpoint.tenant,
        endpoint.subscription.id,
        endpoint.url,
        endpoint.description,
        dump_json(endpoint.metadata),
        endpoint.created_at,
        endpoint.updated_at,
        endpoint.disabled_at,
        endpoint.disabled_reason,
        endpoint.failing_since,
    )


def secret_row(secret: EndpointSecret) -> tuple[Any, ...]:
    return (
        secret.id,
        secret.endpoint_id,
        secret.kind,
        secret.sealed,
        secret.public_key,
        secret.created_at,
        secret.expires_at,
    )


def subscription_row(sub: Subscription) -> tuple[Any, ...]:
    return (sub.id, sub.spec.model_dump_json(), sub.created_at, sub.updated_at, sub.start_position)


def subscription_from_row(row: Sequence[Any]) -> Subscription:
    id_, spec, created_at, updated_at, start = row
    return Subscription(
        id_, SubscriptionSpec.model_validate_json(spec), created_at, updated_at, start
    )


def endpoint_from_row(row: Sequence[Any], secrets: Sequence[EndpointSecret] = ()) -> Endpoint:
    """A row of ``ENDPOINT_COLUMNS`` then ``SUBSCRIPTION_COLUMNS`` (a join)."""
    (id_, tenant, _sub, url, description, metadata, created, updated, disabled_at, reason,
     failing) = row[:11]  # fmt: skip
    return Endpoint(
        id=id_,
        tenant=tenant,
        subscription=subscription_from_row(row[11:16]),
        url=url,
        description=description,
        metadata=orjson.loads(metadata),
        created_at=created,
        updated_at=updated,
        disabled_at=disabled_at,
        disabled_reason=reason,
        failing_since=failing,
        secrets=tuple(secrets),
    )


def secret_from_row(row: Sequence[Any]) -> EndpointSecret:
    return EndpointSecret(*row)


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


def with_enabled(spec_json: str | bytes, enabled: bool, new: SubscriptionSpec | None) -> str:
    """The spec to store: ``new`` (or the stored one) with ``enabled`` set."""
    spec = new if new is not None else SubscriptionSpec.model_validate_json(spec_json)
    return spec.model_copy(update={"enabled": enabled}).model_dump_json()


def stored_enabled(spec_json: str | bytes) -> bool:
    return bool(orjson.loads(spec_json).get("enabled", True))
