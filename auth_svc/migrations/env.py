"""Alembic environment of auth_svc (see common.migrations)."""

from auth_svc.models import Base
from common.migrations import run_env

run_env(Base.metadata)
