"""room for the close reason "replay_restarted"

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
    with op.batch_alter_table("position_positions") as batch:
        batch.alter_column(
            "close_reason", type_=sa.String(20), existing_type=sa.String(11), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("position_positions") as batch:
        batch.alter_column(
            "close_reason", type_=sa.String(11), existing_type=sa.String(20), existing_nullable=True
        )
