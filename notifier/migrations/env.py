"""Alembic environment of the notifier (see common.migrations)."""

from common.migrations import run_env
from notifier.models import Base

run_env(Base.metadata)
