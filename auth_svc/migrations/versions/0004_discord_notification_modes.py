"""per-kind Discord DM modes (on, silent, off) in the preferences

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_preferences") as table:
        table.add_column(
            sa.Column("discord_modes", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_preferences") as table:
        table.drop_column("discord_modes")
