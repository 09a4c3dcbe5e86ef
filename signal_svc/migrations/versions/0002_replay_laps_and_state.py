"""signals per replay lap; where the replay is

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signal_signals") as batch:
        batch.add_column(sa.Column("replay_lap", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint("uq_signal_per_candle", type_="unique")
        batch.create_unique_constraint(
            "uq_signal_per_candle", ["pair", "timeframe", "candle_time", "replay_lap"]
        )
    op.create_table(
        "signal_replay_state",
        sa.Column("history", sa.String(64), primary_key=True),
        sa.Column("market_time", sa.Float(), nullable=False),
        sa.Column("lap", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signal_replay_state")
    with op.batch_alter_table("signal_signals") as batch:
        batch.drop_constraint("uq_signal_per_candle", type_="unique")
        batch.create_unique_constraint("uq_signal_per_candle", ["pair", "timeframe", "candle_time"])
        batch.drop_column("replay_lap")
