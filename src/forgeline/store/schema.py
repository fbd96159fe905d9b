"""The store's tables, defined once for SQLite and PostgreSQL (SQLAlchemy Core).

This is the schema at the head revision of ``store/migrations``; a test proves that running
the migrations on an empty database of either engine yields exactly these tables. The stores
themselves speak hand-written SQL to their drivers (sqlite3 on a writer thread, asyncpg); this
module only describes and creates tables, so SQLAlchemy never sits on a hot path.

Types differ where the engines do: times are epoch seconds (SQLite ``REAL``, PostgreSQL
``double precision``, never ``real``, which is four bytes and would round them to minutes),
positions and delivery ids are 64-bit on PostgreSQL, and a subscription's spec is ``jsonb``
there so operators can query it.

Tables by revision: ``0001`` subscriptions, cursors, deliveries, attempts; ``0002`` xrefs
(the cross-reference of ids per system and canonical ids, used by ``forgeline.ownership``);
``0003`` principals, credentials, signing_keys, idempotency_keys, audit_log, audit_head (the
security store, ``forgeline.security.store``); ``0004`` webhook_endpoints, webhook_secrets
(outbound webhook endpoints, ``forgeline.webhooks.endpoint_store``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from .migrations import VERSION_TABLE

__all__ = ["metadata", "sqlite_script"]

# States in which a delivery is still owed to its sink; partial indexes cover just these.
_OPEN = sa.text("state IN ('pending', 'retrying', 'inflight')")
_KEYED = sa.text("state IN ('pending', 'retrying', 'inflight', 'dead')")
_DEAD = sa.text("state = 'dead'")
_FINISHED = sa.text("state IN ('delivered', 'discarded')")

Epoch: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
Int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Spec = (
    sa.Text().with_variant(sqlite.BLOB(), "sqlite").with_variant(postgresql.JSONB(), "postgresql")
)

metadata = sa.MetaData()

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("spec", Spec, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("start_position", Int64, nullable=False),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("position", Int64, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    # INTEGER on SQLite makes it the rowid; BIGSERIAL on PostgreSQL.
    sa.Column("id", Int64, primary_key=True, autoincrement=True),
    sa.Column(
        "sub_id",
        sa.Text,
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", Int64, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_source", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("pkey", sa.Text),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("round_start", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("round_started_at", Epoch, nullable=False),
    sa.Column("due_at", Epoch, nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", Epoch),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("reason", sa.Text),
    sa.UniqueConstraint("sub_id", "position"),
    # Claims walk a subscription's open deliveries in log order.
    sa.Index("deliveries_open", "sub_id", "position", sqlite_where=_OPEN, postgresql_where=_OPEN),
    # Per-key ordering asks "is an earlier delivery of this key unfinished?".
    sa.Index(
        "deliveries_key",
        "sub_id",
        "pkey",
        "position",
        sqlite_where=_KEYED,
        postgresql_where=_KEYED,
    ),
    sa.Index("deliveries_dead", "sub_id", "updated_at", sqlite_where=_DEAD, postgresql_where=_DEAD),
    sa.Index(
        "deliveries_finished", "updated_at", sqlite_where=_FINISHED, postgresql_where=_FINISHED
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column(
        "delivery_id",
        Int64,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("started_at", Epoch, nullable=False),
    sa.Column("duration_ms", Epoch, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("response", sa.Text),
)

# One row per (system, entity, external id): the canonical id that system's record stands
# for. ``id`` orders rows by insertion, so an in-process cache can fetch just the new ones.
# A canonical object has at most one record per system, which is what lets ``reverse`` answer
# ``{system: external id}``; that constraint's index also serves the reverse lookup.
xrefs = sa.Table(
    "xrefs",
    metadata,
    sa.Column("id", Int64, primary_key=True, autoincrement=True),
    sa.Column("system", sa.Text, nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("canonical_id", sa.Text, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.UniqueConstraint("system", "entity", "external_id", name="xrefs_external"),
    sa.UniqueConstraint("canonical_id", "entity", "system", name="xrefs_canonical"),
)

# -- 0003: the security store (forgeline.security.store) -------------------------------------

# Who may call the API: one tenant and one environment each. Scopes are space-separated
# OAuth scope tokens (RFC 6749 §3.3 forbids spaces in them). ``id`` is ``pr_<ULID>``, so the
# per-tenant index pages principals in creation order.
principals = sa.Table(
    "principals",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("disabled_at", Epoch),
    sa.UniqueConstraint("tenant", "name", name="principals_name"),
    sa.Index("principals_tenant", "tenant", "id"),
)

# API keys and OAuth client secrets. Only the lookup prefix is in clear; the secret is a hash.
# A credential is never deleted: revoked or expired, it stays to answer "which key was that".
credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("principal_id", sa.Text, sa.ForeignKey("principals.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("expires_at", Epoch),
    sa.Column("revoked_at", Epoch),
    sa.Column("last_used_at", Epoch),
    sa.UniqueConstraint("prefix", name="credentials_prefix"),
    sa.Index("credentials_principal", "principal_id", "created_at"),
)

# The token issuer's keys. The private half is sealed (secretbox) before it gets here; the
# public JWK is JSON text. A handful of rows: no index beyond the kid.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.Text, primary_key=True),
    sa.Column("alg", sa.Text, nullable=False),
    sa.Column("sealed_private", sa.Text, nullable=False),
    sa.Column("public_jwk", sa.Text, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("retired_at", Epoch),
)

# Idempotency-Key records of the synchronous business APIs. ``status`` NULL: the first request
# is still running. Keys are per (tenant, principal): one caller can neither replay nor block
# another's. ``created_at`` is indexed for the purge of expired records.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant", sa.Text, primary_key=True),
    sa.Column("principal", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("body", sa.LargeBinary),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("completed_at", Epoch),
    sa.Index("idempotency_keys_created", "created_at"),
)

# The hash-chained audit log: ``seq`` is assigned by the appender under the head's lock (not a
# sequence, which would leave gaps on rollback and make a deletion look like a rollback).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", Int64, primary_key=True, autoincrement=False),
    sa.Column("time", Epoch, nullable=False),
    sa.Column("tenant", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Index("audit_log_tenant", "tenant", "seq"),
    sa.Index("audit_log_tenant_action", "tenant", "action", "seq"),
)

# One row (id 1): the newest entry's seq and hash. Appenders lock it, and verification compares
# it with the last entry, which is how deleting the newest entries is detected.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", Int64, nullable=False),
    sa.Column("hash", sa.Text, nullable=False),
    sa.CheckConstraint("id = 1", name="audit_head_one_row"),
)

# -- 0004: outbound webhook endpoints (forgeline.webhooks.endpoint_store) ----------------------

# An endpoint is a subscription (filter, map, policy, its deliveries) plus what a webhook
# receiver is promised: a URL, secrets, a description and metadata. One row per subscription,
# dropped with it. ``failing_since``: the first failed attempt since the last success (the
# auto-disable clock). Whether it is enabled is the subscription's ``enabled``; ``disabled_at``
# and ``disabled_reason`` say when and why it was turned off.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant", sa.Text),
    sa.Column(
        "sub_id",
        sa.Text,
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("metadata", Spec, nullable=False),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("updated_at", Epoch, nullable=False),
    sa.Column("disabled_at", Epoch),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("failing_since", Epoch),
    sa.UniqueConstraint("sub_id", name="webhook_endpoints_sub"),
    sa.Index("webhook_endpoints_tenant", "tenant", "id"),
)

# An endpoint's signing secrets: ``v1`` (an HMAC ``whsec_`` secret) or ``v1a`` (an Ed25519
# ``whsk_`` private key, its ``whpk_`` public key in clear), always sealed (secretbox). Every
# one not past ``expires_at`` signs: a rotation shortens the old one's life to the overlap.
webhook_secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "endpoint_id",
        sa.Text,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("public_key", sa.Text),
    sa.Column("created_at", Epoch, nullable=False),
    sa.Column("expires_at", Epoch),
    sa.Index("webhook_secrets_endpoint", "endpoint_id", "created_at"),
)

# Alembic's own shape for its version table, so a database created here can be upgraded by it.
_version = sa.Table(
    VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)


def sqlite_script(head: str) -> list[str]:
    """The statements that create the head schema in an empty SQLite database, version
    recorded: what ``alembic upgrade head`` would do, without loading Alembic on every start.
    """
    dialect = sqlite.dialect()
    statements: list[str] = []
    for table in [*metadata.sorted_tables, _version]:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda index: str(index.name))
        )
    # The revision id is ours (a short hex or digits), never user input.
    statements.append(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{head}')")
    return statements
