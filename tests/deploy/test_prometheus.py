"""The Prometheus configuration (deploy/prometheus): promtool accepts the config and the
rules and passes the rules' unit tests; every alert is tested firing and not firing;
every metric the rules name is one the code exports; the memory thresholds are the
Kubernetes limits; the target files `make run` writes name the right ports; the dev
overlay's rendered copy is up to date. promtool (Debian's `prometheus` package) is
skipped when missing, except under CI, where that fails."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from common.prometheus_targets import SCRAPED, write_targets
from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
K8S = ROOT / "deploy" / "k8s"
# Every module that defines AIFX metrics; importing them registers their collectors.
METRIC_MODULES = [
    "common.interceptors",
    "signal_svc.metrics",
    "position_svc.metrics",
    "edge.metrics",
    "notifier.metrics",
    "inference.model_server.batching",
]
# Metric names in an expression: ours, prometheus_client's process and Python ones, and
# Envoy's. (Recording rules are `aifx:...`, with colons; `up` is Prometheus' own.)
METRIC_NAME = re.compile(r"\b(?:aifx|process|python|envoy)_[a-z0-9_]+\b")
RECORDED_NAME = re.compile(r"\baifx:[a-z0-9_:]+")
UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required under CI (apt-get install prometheus)")
        pytest.skip("promtool not installed")
    return path


def run_promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def rules() -> list[dict[str, Any]]:
    config = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in config["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules() if "alert" in rule]


def exported_names() -> set[str]:
    """Every sample name the code's metrics can produce (a labelled metric with no
    children yet produces no sample, so names come from the families' types)."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = {"up"}
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_count", "_sum", "_created"],
        "summary": ["_count", "_sum", "_created"],
        "gauge": [""],
    }
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
        names.update(sample.name for sample in family.samples)
    return names


def unknown_metrics(exprs: Iterator[str] | list[str], recorded: set[str]) -> set[str]:
    known = exported_names()
    unknown = set()
    for expr in exprs:
        unknown |= {name for name in METRIC_NAME.findall(expr) if name not in known}
        unknown |= {name for name in RECORDED_NAME.findall(expr) if name not in recorded}
    return unknown


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


# --- promtool -------------------------------------------------------------------------


def test_config_is_valid() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    names = set(alert_names())
    assert names - fired == set(), "never tested firing"
    assert names - quiet == set(), "never tested not firing"
    assert len(names) >= 9


def test_alerts_have_severity_and_annotations() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


# --- names ----------------------------------------------------------------------------


def test_rules_name_only_metrics_the_code_exports() -> None:
    exprs = [rule["expr"] for rule in rules()]
    assert unknown_metrics(exprs, recorded_names()) == set()


def test_a_misspelt_metric_is_caught() -> None:
    """The check above is not vacuous."""
    exprs = ["rate(aifx_signals_stored_totl[5m])", "aifx:rpc_latency_secs:p95_5m"]
    assert unknown_metrics(exprs, recorded_names()) == {
        "aifx_signals_stored_totl",
        "aifx:rpc_latency_secs:p95_5m",
    }


# --- memory limits --------------------------------------------------------------------


def _bytes(quantity: str) -> int:
    for unit, factor in UNITS.items():
        if quantity.endswith(unit):
            return int(quantity[: -len(unit)]) * factor
    return int(quantity)


def manifest_memory_limits() -> dict[str, int]:
    """Each Deployment's first container's memory limit (deploy/k8s/base)."""
    docs = yaml.safe_load_all((K8S / "base" / "resources.yaml").read_text())
    return {
        doc["metadata"]["name"]: _bytes(
            doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        )
        for doc in docs
        if doc and doc["kind"] == "Deployment"
    }


def test_memory_thresholds_are_the_manifests_limits() -> None:
    recorded = {
        rule["labels"]["job"]: int(rule["expr"].removeprefix("vector(").removesuffix(")"))
        for rule in rules()
        if rule.get("record") == "aifx:memory_limit_bytes"
    }
    limits = manifest_memory_limits()
    # Every job Prometheus scrapes a process of (Envoy exports no process metrics).
    assert set(recorded) == {scraped.job for scraped in SCRAPED}
    assert recorded == {job: limits[job] for job in recorded}


# --- targets --------------------------------------------------------------------------


def _targets(directory: Path, job: str) -> list[tuple[str, dict[str, str]]]:
    groups = json.loads((directory / f"{job}.json").read_text())
    return [(target, group["labels"]) for group in groups for target in group["targets"]]


def test_write_targets_one_replica(tmp_path: Path) -> None:
    settings = Settings.load(env_file=None, discord_token="x")
    paths = write_targets(settings, tmp_path / "services")
    names = {path.name for path in paths}
    assert names == {f"{s.job}.json" for s in SCRAPED} | {"envoy.json"}
    expected = {
        "auth": 9101,
        "signal": 9102,
        "position": 9103,
        "inference": 9104,
        "edge": 9105,
        "model-server": 9106,
        "notifier": 9107,
        "envoy": 9901,
    }
    for job, port in expected.items():
        assert _targets(tmp_path / "services", job) == [
            (f"127.0.0.1:{port}", {"service": job, "replica": "1"})
        ], job


def test_write_targets_two_replicas(tmp_path: Path) -> None:
    settings = Settings.load(env_file=None, discord_token="x")
    write_targets(settings, tmp_path, replicas=2)
    for job, port in {"auth": 9101, "signal": 9102, "edge": 9105, "notifier": 9107}.items():
        assert [t for t, _ in _targets(tmp_path, job)] == [
            f"127.0.0.1:{port}",
            f"127.0.0.1:{port + 100}",
        ], job
        assert [labels["replica"] for _, labels in _targets(tmp_path, job)] == ["1", "2"]
    # Not replicated by `make run`: one each.
    assert [t for t, _ in _targets(tmp_path, "inference")] == ["127.0.0.1:9104"]
    assert [t for t, _ in _targets(tmp_path, "model-server")] == ["127.0.0.1:9106"]
    assert [t for t, _ in _targets(tmp_path, "envoy")] == ["127.0.0.1:9901"]


def test_write_targets_leaves_out_what_does_not_run(tmp_path: Path) -> None:
    settings = Settings.load(env_file=None, discord_token="", auth_metrics_port=0)
    write_targets(settings, tmp_path)
    assert _targets(tmp_path, "notifier") == []  # no Discord token: no notifier
    assert _targets(tmp_path, "auth") == []  # metrics off


def test_prometheus_reads_the_written_targets(tmp_path: Path) -> None:
    """The config's file_sd paths, resolved from its own directory, are where
    write_targets puts them under the checkout's var/."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    directory = ROOT / "var" / "prometheus" / "services"
    for job in config["scrape_configs"]:
        (pattern,) = job["file_sd_configs"][0]["files"]
        assert (PROMETHEUS / pattern).resolve() == directory / f"{job['job_name']}.json"
    assert {job["job_name"] for job in config["scrape_configs"]} == {s.job for s in SCRAPED} | {
        "envoy"
    }
    envoy = next(job for job in config["scrape_configs"] if job["job_name"] == "envoy")
    assert envoy["metrics_path"] == "/stats/prometheus"


# --- the Kubernetes copy --------------------------------------------------------------


def _render_monitoring() -> Any:
    sys.path.insert(0, str(K8S))
    try:
        import render_monitoring
    finally:
        sys.path.remove(str(K8S))
    return render_monitoring


def test_k8s_monitoring_config_is_rendered() -> None:
    render = _render_monitoring()
    assert render.OUT.read_text() == render.render_text(), (
        "run: python deploy/k8s/render_monitoring.py"
    )


def test_k8s_prometheus_config_is_valid(tmp_path: Path) -> None:
    """The cluster's config, with its rules beside it. Debian's promtool is built
    without Kubernetes discovery: then the rest (relabelling included) is checked with
    a static target in its place."""
    render = _render_monitoring()
    text = render.prometheus_config()
    (tmp_path / "alerts.yml").write_text((PROMETHEUS / "alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(text)
    result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    if "kubernetes_sd_configs not found" in result.stderr + result.stdout:
        config = yaml.safe_load(text)
        for job in config["scrape_configs"]:
            job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["auth:9101"]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        result = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
