"""The model server's configuration: command-line flags named like
`tensorflow_model_server`'s, defaults from AIFX settings, and TF Serving's own
`--model_config_file` / `--batching_parameters_file` formats (so one config file works
with both servers). See the package docstring for the flag-by-flag mapping.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import text_format

from common.settings import Settings

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


# --- parsing ---------------------------------------------------------------------------


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _labels(text: str) -> dict[str, int]:
    labels: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        label, sep, version = item.partition("=")
        if not sep or not label.strip() or not version.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"version label {item!r}: expected LABEL=VERSION, e.g. stable=1,canary=2"
            )
        labels[label.strip()] = int(version)
    return labels


def _policy(text: str) -> VersionPolicy:
    try:
        return VersionPolicy.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_model_config_file(path: Path) -> tuple[ModelConfig, ...]:
    """TF Serving's `--model_config_file`: a text-format ModelServerConfig with a
    model_config_list (relative base paths are taken from the working directory)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"model config file {path}: {exc}") from exc
    if not config.HasField("model_config_list") or not config.model_config_list.config:
        raise ConfigError(f"model config file {path}: no model_config_list entries")
    models = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise ConfigError(f"model config file {path}: every model needs name and base_path")
        policy = VersionPolicy()
        which = entry.model_version_policy.WhichOneof("policy_choice")
        if which == "all":
            policy = VersionPolicy("all")
        elif which == "specific":
            policy = VersionPolicy(
                "specific", versions=frozenset(entry.model_version_policy.specific.versions)
            )
        elif which == "latest":
            policy = VersionPolicy(
                "latest", num_versions=max(1, entry.model_version_policy.latest.num_versions)
            )
        models.append(
            ModelConfig(entry.name, Path(entry.base_path), policy, dict(entry.version_labels))
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model config file {path}: model names repeat: {names}")
    return tuple(models)


_BATCHING_FIELD = re.compile(r"(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}")


def parse_batching_parameters_file(path: Path) -> dict[str, int]:
    """TF Serving's `--batching_parameters_file` (text-format BatchingParameters,
    e.g. `max_batch_size { value: 64 }`): the fields this server uses."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"batching parameters file {path}: {exc}") from exc
    values = {name: int(value) for name, value in _BATCHING_FIELD.findall(text)}
    known = ("max_batch_size", "batch_timeout_micros", "num_batch_threads")
    return {name: values[name] for name in known if name in values}


def argument_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.model_server",
        description=(
            "TensorFlow Serving gRPC API (PredictionService, ModelService) over "
            "onnxruntime. Flags follow tensorflow_model_server's; defaults come from "
            "AIFX settings (AIFX_* environment variables)."
        ),
    )
    add = parser.add_argument
    add("--port", type=int, default=settings.network.model_server_port, help="gRPC port")
    add("--host", default=settings.general.bind_host, help="address to bind (AIFX extension)")
    add(
        "--metrics_port",
        type=int,
        default=settings.network.model_server_metrics_port,
        help="Prometheus scrape port, 0 disables (AIFX extension)",
    )
    add("--model_name", default=settings.model.model_name)
    add("--model_base_path", type=Path, default=settings.model.model_base_path)
    add(
        "--model_config_file",
        type=Path,
        help="text-format ModelServerConfig; replaces --model_name/--model_base_path",
    )
    add(
        "--model_version_policy",
        type=_policy,
        default=VersionPolicy(),
        help="latest | latest:N | all | specific:V1,V2 (AIFX extension; default latest)",
    )
    add(
        "--version_labels",
        type=_labels,
        default={},
        help="LABEL=VERSION,... e.g. stable=1,canary=2 (AIFX extension)",
    )
    add(
        "--file_system_poll_wait_seconds",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="seconds between polls of the base path for versions; <= 0 polls once",
    )
    add(
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=settings.model.model_server_enable_batching,
    )
    add("--batching_parameters_file", type=Path)
    add("--max_batch_size", type=int, help="rows per merged run (AIFX extension)")
    add("--batch_timeout_micros", type=int, help="longest wait to fill a batch")
    add("--num_batch_threads", type=int, help="concurrent inference runs")
    add("--tensorflow_intra_op_parallelism", type=int, default=1)
    add("--tensorflow_inter_op_parallelism", type=int, default=1)
    return parser


def parse_args(argv: Sequence[str] | None, settings: Settings) -> ServerConfig:
    """The server configuration from command-line flags (argparse exits on bad flags;
    ConfigError for a bad config file or values)."""
    args = argument_parser(settings).parse_args(argv)
    if args.model_config_file is not None:
        models = parse_model_config_file(args.model_config_file)
    else:
        models = (
            ModelConfig(
                args.model_name,
                args.model_base_path,
                args.model_version_policy,
                args.version_labels,
            ),
        )
    from_file = (
        parse_batching_parameters_file(args.batching_parameters_file)
        if args.batching_parameters_file is not None
        else {}
    )

    def pick(name: str, default: int) -> int:
        flag = getattr(args, name)
        return flag if flag is not None else from_file.get(name, default)

    batching = BatchingConfig(
        enabled=args.enable_batching,
        max_batch_size=pick("max_batch_size", settings.model.model_server_max_batch_size),
        batch_timeout_micros=pick(
            "batch_timeout_micros", settings.model.model_server_batch_timeout_micros
        ),
        num_batch_threads=pick("num_batch_threads", DEFAULT_NUM_BATCH_THREADS),
    )
    if batching.max_batch_size < 1 or batching.batch_timeout_micros < 0:
        raise ConfigError("max_batch_size must be >= 1 and batch_timeout_micros >= 0")
    if batching.num_batch_threads < 1:
        raise ConfigError("num_batch_threads must be >= 1")
    return ServerConfig(
        models=models,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        poll_seconds=args.file_system_poll_wait_seconds,
        batching=batching,
        intra_op_threads=max(0, args.tensorflow_intra_op_parallelism),
        inter_op_threads=max(0, args.tensorflow_inter_op_parallelism),
    )
