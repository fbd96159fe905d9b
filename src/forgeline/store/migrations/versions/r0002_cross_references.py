"""Cross-references: which canonical id each system's record stands for.

Revision ID: 0002
Revises: 0001

Adds the ``xrefs`` table (``forgeline.ownership``); nothing existing changes, so an upgrade
keeps every subscription and delivery as it was. Types are spelled out, as in the baseline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_epoch: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
_int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xrefs",
        sa.Column("id", _int64, primary_key=True, autoincrement=True),
        sa.Column("system", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("canonical_id", sa.Text, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.UniqueConstraint("system", "entity", "external_id", name="xrefs_external"),
        sa.UniqueConstraint("canonical_id", "entity", "system", name="xrefs_canonical"),
    )


def downgrade() -> None:
    op.drop_table("xrefs")
