"""Alembic environment of the inference service (see common.migrations)."""

from common.migrations import run_env
from inference.models import Base

run_env(Base.metadata)
