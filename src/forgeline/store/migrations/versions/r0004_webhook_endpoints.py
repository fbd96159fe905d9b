"""Outbound webhook endpoints: their URL, description, metadata, state and signing secrets.

Revision ID: 0004
Revises: 0003

Adds ``webhook_endpoints`` (one row per endpoint, tied to the subscription that routes and
retries for it, dropped with it) and ``webhook_secrets`` (sealed; dropped with their
endpoint). Nothing existing changes, so an upgrade keeps every subscription, delivery,
cross-reference and principal as it was. Types are spelled out, as in the baseline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_epoch: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
_json = (
    sa.Text().with_variant(sqlite.BLOB(), "sqlite").with_variant(postgresql.JSONB(), "postgresql")
)


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
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
        sa.Column("metadata", _json, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("updated_at", _epoch, nullable=False),
        sa.Column("disabled_at", _epoch),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("failing_since", _epoch),
        sa.UniqueConstraint("sub_id", name="webhook_endpoints_sub"),
    )
    op.create_index("webhook_endpoints_tenant", "webhook_endpoints", ["tenant", "id"])
    op.create_table(
        "webhook_secrets",
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
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("expires_at", _epoch),
    )
    op.create_index("webhook_secrets_endpoint", "webhook_secrets", ["endpoint_id", "created_at"])


def downgrade() -> None:
    op.drop_index("webhook_secrets_endpoint", "webhook_secrets")
    op.drop_table("webhook_secrets")
    op.drop_index("webhook_endpoints_tenant", "webhook_endpoints")
    op.drop_table("webhook_endpoints")
