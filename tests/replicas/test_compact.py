"""`make run` with AIFX_COMPACT: signal_svc, the inference service, auth_svc and
position_svc in one `core` process (stack/core.py) — what it starts, what it refuses,
where its metrics are, and the whole product working through Envoy on it, restarted by
supervisord when it dies."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import replicas
from common.prometheus_targets import target_groups
from common.settings import Settings
from edge.readiness import metrics_line, processes_line
from stack.programs import programs
from tests.envoy import PASSWORD
from tests.supervised_stack import SupervisedStack

pytestmark = pytest.mark.timeout(300)


def compact(**values: object) -> Settings:
    return Settings.load(env_file=None, compact=True, **values)


def test_the_core_replaces_its_four_services_and_starts_where_they_did() -> None:
    names = [program.name for program in programs(compact())]
    assert names == ["model_server", "core", "edge", "envoy", "ready"]
    [core] = [program for program in programs(compact()) if program.name == "core"]
    assert core.command[-2:] == ["-m", "stack.core"]


def test_compact_replicas_are_refused() -> None:
    refused = replicas.missing_requirements(
        compact(replicas=2, redis_url="redis://r", database_url="postgresql+asyncpg://db/a")
    )
    assert refused == ["AIFX_COMPACT off: the compact core is one process, never replicated"]


def test_prometheus_scrapes_the_core_once_on_the_signal_metrics_port() -> None:
    settings = compact(signal_metrics_port=9300)
    groups = target_groups(settings)
    assert groups["auth"] == groups["position"] == groups["inference"] == []
    assert groups["signal"][0]["targets"] == ["127.0.0.1:9300"]
    assert groups["edge"] and groups["model-server"]


def test_the_ready_banner_names_the_core_and_its_one_metrics_port() -> None:
    settings = compact(signal_metrics_port=9300, auth_metrics_port=9301)
    line = metrics_line(settings, "127.0.0.1", bot_on=False)
    assert line.startswith("http://127.0.0.1:9300/metrics (core: signal, inference, auth")
    assert "9301" not in line and "(auth)" not in line
    assert "one core process (AIFX_COMPACT)" in processes_line(settings)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupervisedStack]:
    workdir: Path = tmp_path_factory.mktemp("compact")
    with SupervisedStack(workdir, compact=True, replay_speed=3600, bcrypt_rounds=4) as running:
        yield running


def sign_up(url: str) -> httpx.Client:
    tag = f"compact-{time.time_ns() % 10**9}"
    client = httpx.Client(base_url=url, timeout=10)
    answer = client.post(
        "/api/v1/auth/register",
        json={"email": f"{tag}@example.com", "username": tag, "password": PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['tokens']['accessToken']}"
    return client


def test_one_core_process_serves_every_service_through_envoy(stack: SupervisedStack) -> None:
    stack.wait_until(lambda: stack.running("core"), "core RUNNING")
    assert "one core process (AIFX_COMPACT)" in stack.log(1_000_000)  # the ready banner
    status = stack.ctl("status")
    for gone in ("auth", "signal", "position", "inference"):
        assert f"\n{gone} " not in f"\n{status}", status
    client = sign_up(stack.url)
    assert client.get("/api/v1/auth/me").status_code == 200  # auth_svc
    # signal_svc, its model signal from the inference service in the same process
    stack.wait_until(
        lambda: (
            client.get("/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1").status_code == 200
        ),
        "the first EUR/USD signal",
    )
    signal = client.get("/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1").json()["signal"]
    assert signal["source"] == "SIGNAL_SOURCE_MODEL"
    assert client.get("/api/v1/positions").status_code == 200  # position_svc
    # One metrics endpoint for the four: the signal service's port.
    url = f"http://127.0.0.1:{stack.port('signal_metrics_port')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        metrics = response.read().decode()
    for method in (
        "AuthService/Register",
        "SignalService/GetSignal",
        "PositionService/ListPositions",
    ):
        assert method in metrics, method


def test_a_killed_core_is_restarted_with_all_four_services(stack: SupervisedStack) -> None:
    client = sign_up(stack.url)
    old = stack.kill("core")
    stack.wait_until(lambda: stack.running("core") and stack.pid("core") != old, "core back")
    supervisor_log = (stack.var_dir / "supervisord.log").read_text()
    assert "exited: core (terminated by SIGKILL; not expected)" in supervisor_log
    stack.wait_until(
        lambda: (
            client.get("/api/v1/auth/me").status_code == 200
            and client.get("/api/v1/trading/signal/EURUSD?timeframe=TIMEFRAME_H1").status_code
            == 200
            and client.get("/api/v1/positions").status_code == 200
        ),
        "every service answering again",
    )
