"""servers' signal channels, and deliveries to a channel as well as to a DM

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
    op.create_table(
        "notifier_channels",
        sa.Column("guild_id", sa.String(32), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("pairs", sa.JSON(), nullable=False),
        sa.Column("min_confidence", sa.Float(), nullable=False),
        sa.Column("set_by", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("notifier_deliveries") as table:
        table.add_column(sa.Column("target", sa.String(8), nullable=False, server_default="dm"))


def downgrade() -> None:
    with op.batch_alter_table("notifier_deliveries") as table:
        table.drop_column("target")
    op.drop_table("notifier_channels")
