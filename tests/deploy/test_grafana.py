"""The Grafana dashboard (deploy/grafana/aifx.json) and its provisioning: valid JSON,
unique panel ids, every panel on the provisioned Prometheus datasource with queries that
parse (promtool) and name only metrics the code exports or the rules record, the panels
the issue asks for, no panels overlapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.test_prometheus import recorded_names, run_promtool, unknown_metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "aifx.json").read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return dashboard["panels"]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def datasource_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yaml").read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "aifx"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    uid = datasource_uid()
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_queries_name_only_exported_or_recorded_metrics(dashboard: dict[str, Any]) -> None:
    assert unknown_metrics(exprs(dashboard), recorded_names()) == set()


def test_queries_parse(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs(dashboard))
    ]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = run_promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_asked_for_panels_are_there(dashboard: dict[str, Any]) -> None:
    queries = " ".join(exprs(dashboard))
    for needed in [
        "aifx:rpc_requests:rate5m",
        "aifx:rpc_latency_seconds:p95_5m",
        "aifx:rpc_error_ratio:rate5m",
        "up",
        "aifx_signals_stored_total",
        "aifx:signal_age_seconds",
        "aifx_notifier_deliveries_total",
        "aifx_notifier_deliveries_pending",
        "aifx_positions_opened_total",
        "aifx_positions_closed_total",
        "aifx_positions_open",
        "aifx_signal_subscribers",
        "aifx_edge_sockets_connected",
        "aifx:edge_delivery_seconds:p99_5m",
        "aifx_model_server_batch_rows_bucket",
        "process_resident_memory_bytes",
    ]:
        assert needed in queries, needed


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells


def test_dashboard_provider_points_at_the_dashboards() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    # Relative to Grafana's working directory: the checkout's root.
    assert (ROOT / provider["options"]["path"] / "aifx.json").is_file()
