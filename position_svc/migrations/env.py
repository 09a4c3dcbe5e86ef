"""Alembic environment of position_svc (see common.migrations)."""

from common.migrations import run_env
from position_svc.models import Base

run_env(Base.metadata)
