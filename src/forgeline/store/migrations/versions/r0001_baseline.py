"""Baseline: the store as Forgeline 0.1 created it before migrations existed.

Revision ID: 0001
Revises: (none)

A SQLite ``state.db`` from before this revision has exactly these tables but no version
table; opening it stamps it at this revision instead of creating anything. The types are
spelled out here, not imported from ``schema.py``: a revision must keep meaning what it meant
when it was written, whatever the head schema becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_epoch: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
_int64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_spec = (
    sa.Text().with_variant(sqlite.BLOB(), "sqlite").with_variant(postgresql.JSONB(), "postgresql")
)


def _partial_index(name: str, columns: list[str], states: str) -> None:
    where = sa.text(f"state IN ({states})")
    op.create_index(name, "deliveries", columns, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("spec", _spec, nullable=False),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("updated_at", _epoch, nullable=False),
        sa.Column("start_position", _int64, nullable=False),
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("position", _int64, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _int64, primary_key=True, autoincrement=True),
        sa.Column(
            "sub_id", sa.Text, sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("position", _int64, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("pkey", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("round_start", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("round_started_at", _epoch, nullable=False),
        sa.Column("due_at", _epoch, nullable=False),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_until", _epoch),
        sa.Column("created_at", _epoch, nullable=False),
        sa.Column("updated_at", _epoch, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("reason", sa.Text),
        sa.UniqueConstraint("sub_id", "position"),
    )
    open_states = "'pending', 'retrying', 'inflight'"
    _partial_index("deliveries_open", ["sub_id", "position"], open_states)
    _partial_index("deliveries_key", ["sub_id", "pkey", "position"], f"{open_states}, 'dead'")
    _partial_index("deliveries_dead", ["sub_id", "updated_at"], "'dead'")
    _partial_index("deliveries_finished", ["updated_at"], "'delivered', 'discarded'")
    op.create_table(
        "attempts",
        sa.Column(
            "delivery_id",
            _int64,
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("started_at", _epoch, nullable=False),
        sa.Column("duration_ms", _epoch, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("response", sa.Text),
    )


def downgrade() -> None:
    for table in ("attempts", "deliveries", "cursors", "subscriptions"):
        op.drop_table(table)
