"""positions, events and monitoring snapshots

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from position_svc.models import ExactDecimal

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _decimal(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, ExactDecimal(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "position_positions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("pair", sa.String(7), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        _decimal("lot_size"),
        _decimal("entry_price"),
        _decimal("stop_loss", nullable=True),
        _decimal("take_profit", nullable=True),
        sa.Column("status", sa.String(6), nullable=False),
        sa.Column("signal_id", sa.String(64), nullable=True),
        sa.Column("open_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("close_reason", sa.String(11), nullable=True),
        _decimal("exit_price", nullable=True),
        sa.Column("close_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(9), nullable=True),
        _decimal("pips", nullable=True),
        _decimal("realized_pnl", nullable=True),
        _decimal("realized_pnl_usd", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_position_idempotency"),
    )
    op.create_index(
        "ix_position_user_open_time", "position_positions", ["user_id", "open_time", "id"]
    )
    op.create_index("ix_position_status_pair", "position_positions", ["status", "pair"])
    op.create_index("ix_position_user_close_time", "position_positions", ["user_id", "close_time"])
    op.create_table(
        "position_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("position_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(15), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.JSON(), nullable=False),
    )
    op.create_index("ix_position_events_user_id", "position_events", ["user_id", "id"])
    op.create_table(
        "position_snapshots",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("position_id", sa.String(36), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        _decimal("price"),
        _decimal("pips"),
        _decimal("unrealized_pnl"),
    )
    op.create_index("ix_position_snapshots_position", "position_snapshots", ["position_id", "time"])
    op.create_index("ix_position_snapshots_time", "position_snapshots", ["time"])


def downgrade() -> None:
    op.drop_table("position_snapshots")
    op.drop_table("position_events")
    op.drop_table("position_positions")
