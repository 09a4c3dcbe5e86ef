"""Alembic environment of signal_svc (see common.migrations)."""

from common.migrations import run_env
from signal_svc.models import Base

run_env(Base.metadata)
