"""The record of each training run in the inference service's table
`inference_training_runs` (on the configured database: AIFX_DATABASE_URL, or the embedded
SQLite file in var/).

The pipeline is synchronous; each call here runs its own short event loop over the
project's async engine, exactly as the services connect.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import create_engine, session_factory
from common.migrations import upgrade
from common.settings import Settings
from inference.models import TrainingRunRow

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run `work` in one session and commit, on a short-lived engine."""

    async def main() -> Any:
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def migrate(settings: Settings) -> None:
    """Bring the inference service's tables to head."""
    upgrade("inference", settings)


def start_run(
    settings: Settings,
    *,
    model_name: str,
    version: int,
    parameters: dict[str, Any],
) -> str:
    """Insert a "running" record; returns its id."""
    run_id = str(uuid.uuid4())

    async def work(session: AsyncSession) -> None:
        session.add(
            TrainingRunRow(
                id=run_id,
                model_name=model_name,
                version=version,
                started_at=datetime.now(UTC),
                status=RUNNING,
                parameters=parameters,
            )
        )

    _run(settings, work)
    return run_id


async def _recorded_run(session: AsyncSession, run_id: str) -> TrainingRunRow:
    """The run's row. The pipeline records a run before updating it, so a missing row is
    a programming error, reported by name rather than as an AttributeError on None."""
    row = await session.get(TrainingRunRow, run_id)
    if row is None:
        raise LookupError(f"training run {run_id!r} is not recorded")
    return row


def record_data(
    settings: Settings, run_id: str, source: str, first_time: int, last_time: int
) -> None:
    """Where the run's candles came from and the open times of the first and last."""

    async def work(session: AsyncSession) -> None:
        row = await _recorded_run(session, run_id)
        row.data_source = source
        row.data_start = datetime.fromtimestamp(first_time, UTC)
        row.data_end = datetime.fromtimestamp(last_time, UTC)

    _run(settings, work)


def finish_run(
    settings: Settings,
    run_id: str,
    *,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Mark the run "succeeded" (with its metrics) or, given an error, "failed"."""

    async def work(session: AsyncSession) -> None:
        row = await _recorded_run(session, run_id)
        row.finished_at = datetime.now(UTC)
        row.status = FAILED if error is not None else SUCCEEDED
        row.metrics = metrics
        row.error = error

    _run(settings, work)


def list_runs(settings: Settings, model_name: str | None = None) -> list[TrainingRunRow]:
    """Every recorded run, oldest first."""

    async def work(session: AsyncSession) -> list[TrainingRunRow]:
        query = select(TrainingRunRow).order_by(TrainingRunRow.started_at)
        if model_name is not None:
            query = query.where(TrainingRunRow.model_name == model_name)
        return list((await session.scalars(query)).all())

    return _run(settings, work)
