"""Flags named like tensorflow_model_server's, TF Serving's config file formats, and
the version policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.model_server.config import DEFAULT_POLL_SECONDS, ConfigError, VersionPolicy
from inference.model_server.flags import parse_args
from tests.infra import make_settings


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


def test_defaults_serve_the_committed_model_config_file(settings):
    config = parse_args([], settings)
    assert [(m.name, m.base_path) for m in config.models] == [
        ("lstm", Path("models/lstm")),
        ("lstm_daily", Path("models/lstm_daily")),
    ]


def test_one_named_model_replaces_the_config_file(tmp_path):
    """AIFX_MODEL_BASE_PATH (or --model_base_path) alone means that one model, as
    tensorflow_model_server's single-model flags do."""
    settings = make_settings(tmp_path, model_base_path=tmp_path / "fx")
    assert settings.model.model_config_file is None
    [model] = parse_args([], settings).models
    assert (model.name, model.base_path) == ("lstm", tmp_path / "fx")
    [flagged] = parse_args([f"--model_base_path={tmp_path}"], make_settings(tmp_path)).models
    assert (flagged.name, flagged.base_path) == ("lstm", tmp_path)


def test_defaults_come_from_settings(settings):
    config = parse_args([], settings)
    for model in config.models:
        assert model.policy == VersionPolicy("latest", 1)
        assert model.labels == {}
    assert config.port == settings.network.model_server_port
    assert config.poll_seconds == DEFAULT_POLL_SECONDS == 1.0
    assert config.batching.enabled is settings.model.model_server_enable_batching is False
    assert config.batching.max_batch_size == settings.model.model_server_max_batch_size


def test_tensorflow_model_server_style_flags(settings, tmp_path):
    config = parse_args(
        [
            "--port=8600",
            "--model_name=fx",
            f"--model_base_path={tmp_path}",
            "--file_system_poll_wait_seconds=0.5",
            "--enable_batching=true",
            "--max_batch_size=32",
            "--batch_timeout_micros",
            "500",
            "--num_batch_threads=1",
            "--version_labels=stable=1,canary=2",
            "--model_version_policy=all",
        ],
        settings,
    )
    [model] = config.models
    assert (model.name, model.base_path, model.labels) == (
        "fx",
        tmp_path,
        {"stable": 1, "canary": 2},
    )
    assert model.policy.kind == "all"
    assert (config.port, config.poll_seconds) == (8600, 0.5)
    b = config.batching
    assert (b.enabled, b.max_batch_size, b.batch_timeout_micros, b.num_batch_threads) == (
        True,
        32,
        500,
        1,
    )
    assert parse_args(["--enable_batching"], settings).batching.enabled is True
    assert parse_args(["--enable_batching=false"], settings).batching.enabled is False


def test_model_config_file_as_tf_serving_reads_it(settings, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(
        """
        model_config_list {
          config {
            name: 'lstm'
            base_path: '/models/lstm'
            model_platform: 'tensorflow'
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: 'stable' value: 1 }
            version_labels { key: 'canary' value: 2 }
          }
          config { name: 'gru' base_path: 'models/gru' model_version_policy { all {} } }
        }
        """
    )
    config = parse_args([f"--model_config_file={path}", "--model_name=ignored"], settings)
    lstm, gru = config.models
    assert lstm.name == "lstm" and lstm.base_path == Path("/models/lstm")
    assert lstm.policy == VersionPolicy("specific", versions=frozenset({1, 2}))
    assert lstm.labels == {"stable": 1, "canary": 2}
    assert gru.policy.kind == "all"


def test_bad_model_config_file(settings, tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: 'x' base_path: ")
    with pytest.raises(ConfigError, match=r"models\.config"):
        parse_args([f"--model_config_file={path}"], settings)


def test_batching_parameters_file_and_flag_precedence(settings, tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 1000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n"
    )
    config = parse_args(
        ["--enable_batching", f"--batching_parameters_file={path}", "--max_batch_size=16"],
        settings,
    )
    assert config.batching.max_batch_size == 16  # the flag beats the file
    assert config.batching.batch_timeout_micros == 1000
    assert config.batching.num_batch_threads == 1


@pytest.mark.parametrize(
    ("text", "aspired"),
    [
        ("latest", {5}),
        ("latest:2", {3, 5}),
        ("all", {1, 3, 5}),
        ("specific:1,4", {1}),
    ],
)
def test_version_policy(text, aspired):
    assert VersionPolicy.parse(text).aspired([1, 3, 5]) == aspired


@pytest.mark.parametrize("text", ["newest", "latest:0", "specific:", "all:2", "latest:x"])
def test_bad_version_policy(text):
    with pytest.raises(ConfigError):
        VersionPolicy.parse(text)


@pytest.mark.parametrize(
    "argv", [["--version_labels=stable"], ["--model_version_policy=newest"], ["--port=x"]]
)
def test_bad_flags_exit_with_usage(settings, argv):
    with pytest.raises(SystemExit):
        parse_args(argv, settings)
