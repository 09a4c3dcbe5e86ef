"""Discord account links and link codes

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
        "auth_discord_links",
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("discord_user_id", sa.String(32), nullable=False, unique=True),
        sa.Column("discord_username", sa.String(64), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dm_reachable", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "auth_discord_link_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(36),
            sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_auth_discord_link_codes_user", "auth_discord_link_codes", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_auth_discord_link_codes_user", "auth_discord_link_codes")
    op.drop_table("auth_discord_link_codes")
    op.drop_table("auth_discord_links")
