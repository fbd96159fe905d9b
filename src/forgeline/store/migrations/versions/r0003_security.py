"""The security store: principals, credentials, signing keys, idempotency keys, the audit log.

Revision ID: 0003
Revises: 0002

Adds six tables (``forgeline.security.store``); nothing existing changes, so an upgrade keeps
every subscription, delivery and cross-reference as it was. Types are spelled out, as in the
baseline. ``audit_head`` starts empty: the first append creates its one row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_epoch: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
_int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("updated_at", _epoch, nullable=False),
        sa.Column("disabled_at", _epoch),
        sa.UniqueConstraint("tenant", "name", name="principals_name"),
    )
    op.create_index("principals_tenant", "principals", ["tenant", "id"])
    op.create_table(
        "credentials",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("principal_id", sa.Text, sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("expires_at", _epoch),
        sa.Column("revoked_at", _epoch),
        sa.Column("last_used_at", _epoch),
        sa.UniqueConstraint("prefix", name="credentials_prefix"),
    )
    op.create_index("credentials_principal", "credentials", ["principal_id", "created_at"])
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.Text, primary_key=True),
        sa.Column("alg", sa.Text, nullable=False),
        sa.Column("sealed_private", sa.Text, nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("retired_at", _epoch),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("principal", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("body", sa.LargeBinary),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("completed_at", _epoch),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])
    op.create_table(
        "audit_log",
        sa.Column("seq", _int64, primary_key=True, autoincrement=False),
        sa.Column("time", _epoch, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
    )
    op.create_index("audit_log_tenant", "audit_log", ["tenant", "seq"])
    op.create_index("audit_log_tenant_action", "audit_log", ["tenant", "action", "seq"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", _int64, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.CheckConstraint("id = 1", name="audit_head_one_row"),
    )


def downgrade() -> None:
    for index, table in (
        ("audit_log_tenant_action", "audit_log"),
        ("audit_log_tenant", "audit_log"),
        ("idempotency_keys_created", "idempotency_keys"),
        ("credentials_principal", "credentials"),
        ("principals_tenant", "principals"),
    ):
        op.drop_index(index, table)
    for table in (
        "audit_head",
        "audit_log",
        "idempotency_keys",
        "signing_keys",
        "credentials",
        "principals",
    ):
        op.drop_table(table)
