"""claims on deliveries, so several notifier replicas never send the same one

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifier_deliveries") as table:
        table.add_column(sa.Column("claimed_by", sa.String(36), nullable=True))
        table.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifier_deliveries") as table:
        table.drop_column("claimed_until")
        table.drop_column("claimed_by")
