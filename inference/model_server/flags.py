"""The model server's command line: flags named like `tensorflow_model_server`'s,
defaults from AIFX settings, and TF Serving's own `--model_config_file` /
`--batching_parameters_file` formats (so one config file works with both servers). See
the package docstring for the flag-by-flag mapping. Reads protobuf text format with TF
Serving's generated config messages: wiring, like server.py.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import text_format

from common.settings import Settings
from inference.model_server.config import (
    DEFAULT_NUM_BATCH_THREADS,
    DEFAULT_POLL_SECONDS,
    BatchingConfig,
    ConfigError,
    ModelConfig,
    ServerConfig,
    VersionPolicy,
)


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


def configured_models(
    settings: Settings,
    policy: VersionPolicy | None = None,
    labels: dict[str, int] | None = None,
) -> tuple[ModelConfig, ...]:
    """The models the settings name: every entry of AIFX_MODEL_CONFIG_FILE, or the one
    model AIFX_MODEL_NAME / AIFX_MODEL_BASE_PATH (with `policy` and `labels`). The model
    server serves them and the inference service routes between them."""
    model = settings.model
    if model.model_config_file is not None:
        return parse_model_config_file(model.model_config_file)
    return (
        ModelConfig(
            model.model_name, model.model_base_path, policy or VersionPolicy(), labels or {}
        ),
    )


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
    add("--model_name", help="one model to serve (default AIFX_MODEL_NAME, lstm)")
    add("--model_base_path", type=Path, help="its versions' folder (AIFX_MODEL_BASE_PATH)")
    add(
        "--model_config_file",
        type=Path,
        help="text-format ModelServerConfig; replaces --model_name/--model_base_path "
        "(default AIFX_MODEL_CONFIG_FILE, models/models.config, unless those are given)",
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
    elif args.model_name is None and args.model_base_path is None:
        models = configured_models(settings, args.model_version_policy, args.version_labels)
    else:
        models = (
            ModelConfig(
                args.model_name or settings.model.model_name,
                args.model_base_path or settings.model.model_base_path,
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
