"""The inference service's tables. Only the inference service (and its training
pipeline, `make train`) reads or writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TrainingRunRow(Base):
    """One `make train` run: written as "running" when it starts, then "succeeded" (with
    the test metrics) or "failed" (with the error) when it ends. `version` is the model
    version the run writes (models/<model_name>/<version>/); a failed run leaves no
    version folder behind."""

    __tablename__ = "inference_training_runs"
    __table_args__ = (Index("ix_inference_training_runs_model", "model_name", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # running | succeeded | failed
    status: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Where the candles came from, and the open times of the first and last one used.
    data_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    data_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    data_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
