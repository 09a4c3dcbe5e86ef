"""candles and signals

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "signal_candles",
        sa.Column("pair", sa.String(7), primary_key=True),
        sa.Column("timeframe", sa.String(3), primary_key=True),
        sa.Column("open_time", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
    )
    op.create_table(
        "signal_signals",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(7), nullable=False),
        sa.Column("timeframe", sa.String(3), nullable=False),
        sa.Column("candle_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(4), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("strength", sa.String(12), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("stop_loss", sa.Float(), nullable=True),
        sa.Column("take_profit", sa.Float(), nullable=True),
        sa.Column("risk_reward_ratio", sa.Float(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("indicators", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("model_name", sa.String(40), nullable=False),
        sa.Column("model_version", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("pair", "timeframe", "candle_time", name="uq_signal_per_candle"),
    )
    op.create_index("ix_signal_signals_pair_tf_id", "signal_signals", ["pair", "timeframe", "id"])
    op.create_index("ix_signal_signals_created_at", "signal_signals", ["created_at"])


def downgrade() -> None:
    op.drop_table("signal_signals")
    op.drop_table("signal_candles")
