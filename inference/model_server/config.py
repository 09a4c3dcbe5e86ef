"""The model server's configuration: which models and versions it serves, how it
batches, where it listens. Plain data; `flags.py` reads it from command-line flags and
TF Serving's config files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

DEFAULT_POLL_SECONDS = 1.0  # tensorflow_model_server's --file_system_poll_wait_seconds=1
DEFAULT_NUM_BATCH_THREADS = min(2, os.cpu_count() or 1)


class ConfigError(ValueError):
    """A flag or config file the server cannot run with (the message says which)."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which complete versions to serve, like TF Serving's ServableVersionPolicy:
    the newest `num_versions` (`latest`, the default with 1), `all`, or `specific`
    version numbers."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def aspired(self, complete: Sequence[int]) -> set[int]:
        """The versions to serve out of the complete ones on disk."""
        if self.kind == "all":
            return set(complete)
        if self.kind == "specific":
            return set(complete) & self.versions
        return set(sorted(complete)[-self.num_versions :])

    def describe(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(str(v) for v in sorted(self.versions))
        return "all"

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`latest`, `latest:N`, `all` or `specific:V1,V2,...`."""
        kind, _, arg = text.strip().partition(":")
        try:
            if kind == "latest":
                count = int(arg) if arg else 1
                if count < 1:
                    raise ValueError
                return cls("latest", num_versions=count)
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific" and arg:
                versions = frozenset(int(v) for v in arg.split(","))
                return cls("specific", versions=versions)
        except ValueError:
            pass
        raise ConfigError(
            f"version policy {text!r}: use latest, latest:N (N >= 1), all or specific:1,2"
        )


@dataclass(frozen=True)
class ModelConfig:
    """One served model: TF Serving's ModelConfig (name, base_path,
    model_version_policy, version_labels)."""

    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching: concurrent Predict calls on the same version are merged
    into one onnxruntime run of at most `max_batch_size` rows, dispatched when full or
    `batch_timeout_micros` after its first request arrived (0: as soon as a batch
    thread is free, taking whatever has queued meanwhile). `num_batch_threads` runs
    may execute at once (also the inference thread count without batching)."""

    enabled: bool = False
    max_batch_size: int = 64
    batch_timeout_micros: int = 0
    num_batch_threads: int = DEFAULT_NUM_BATCH_THREADS


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    host: str = "127.0.0.1"
    port: int = 8500
    metrics_port: int = 0
    poll_seconds: float = DEFAULT_POLL_SECONDS
    batching: BatchingConfig = BatchingConfig()
    # onnxruntime threads per run (TF Serving's --tensorflow_*_op_parallelism). One
    # each: a batch-1 LSTM step is too small to split, and the other core serves gRPC.
    intra_op_threads: int = 1
    inter_op_threads: int = 1

    @classmethod
    def single(cls, name: str, base_path: Path, **options: object) -> ServerConfig:
        """One model; `policy` and `labels` go to the model, the rest to the server."""
        model_options = {k: options.pop(k) for k in ("policy", "labels") if k in options}
        model = ModelConfig(name, Path(base_path), **model_options)  # type: ignore[arg-type]
        return cls(models=(model,), **options)  # type: ignore[arg-type]
