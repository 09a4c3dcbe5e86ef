"""signal interests: each user's (pair, timeframe) rows, indexed, filled from their
preferences

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    interests = op.create_table(
        "auth_signal_interests",
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pair", sa.String(7), primary_key=True),
        sa.Column("timeframe", sa.String(3), primary_key=True),
    )
    op.create_index(
        "ix_auth_signal_interests_series", "auth_signal_interests", ["pair", "timeframe"]
    )
    rows = op.get_bind().execute(sa.text("SELECT user_id, pairs, timeframes FROM auth_preferences"))
    filled = []
    for user_id, pairs, timeframes in rows:
        pairs = json.loads(pairs) if isinstance(pairs, str) else pairs
        timeframes = json.loads(timeframes) if isinstance(timeframes, str) else timeframes
        filled += [
            {"user_id": user_id, "pair": pair, "timeframe": timeframe}
            for pair in pairs
            for timeframe in timeframes
        ]
    if filled:
        op.bulk_insert(interests, filled)


def downgrade() -> None:
    op.drop_index("ix_auth_signal_interests_series", "auth_signal_interests")
    op.drop_table("auth_signal_interests")
