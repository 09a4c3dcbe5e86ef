"""`make run` under supervisord, with and without replicas: what it starts, what it
refuses, the one log stream, and a killed process restarted while the rest — through
Envoy's health checks and retries on the other replica — keep answering."""

from __future__ import annotations

import configparser
import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from common.settings import REPO_ROOT, Settings
from stack import supervisor_config
from stack.programs import programs
from tests.infra import REDIS_URL
from tests.supervised_stack import SupervisedStack, supervised_replicas

pytestmark = pytest.mark.timeout(600)


def test_replicas_without_redis_and_postgresql_are_refused_naming_both(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFX_")}
    env |= {"AIFX_REPLICAS": "2", "AIFX_VAR_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "stack"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "AIFX_REPLICAS=2 needs" in done.stderr
    assert "AIFX_REDIS_URL" in done.stderr and "AIFX_DATABASE_URL" in done.stderr
    assert not (tmp_path / "supervisord.conf").exists()  # nothing started


def test_replicas_out_of_range_are_refused():
    with pytest.raises(ValueError, match="replicas"):
        Settings.load(env_file=None, replicas=10)


def two_replicas() -> Settings:
    return Settings.load(
        env_file=None,
        replicas=2,
        redis_url=REDIS_URL,
        database_url="postgresql+asyncpg://db/aifx",
        discord_token="a-token",
    )


def test_each_replica_gets_its_own_ports_and_callers_reach_every_replica():
    found = {program.name: program for program in programs(two_replicas())}
    assert set(found) == {
        "model_server", "inference", "envoy", "ready",
        "auth-1", "auth-2", "signal-1", "signal-2", "position-1", "position-2",
        "edge-1", "edge-2", "notifier-1", "notifier-2",
    }  # fmt: skip
    assert found["signal-2"].environment["AIFX_SIGNAL_PORT"] == "50152"
    assert found["signal-2"].environment["AIFX_SIGNAL_METRICS_PORT"] == "9202"
    assert found["edge-2"].environment["AIFX_EDGE_PORT"] == "8181"
    assert found["notifier-2"].environment["AIFX_DISCORD_SHARD_ID"] == "1"
    assert found["notifier-2"].environment["AIFX_DISCORD_SHARD_COUNT"] == "2"
    for program in found.values():
        assert program.environment["AIFX_SIGNAL_TARGET"] == ("ipv4:127.0.0.1:50052,127.0.0.1:50152")
        assert program.environment["AIFX_PROCESS_NAME"] == program.name
    assert not found["ready"].keep_running and found["envoy"].keep_running


def test_one_replica_keeps_the_plain_names_and_the_configured_targets():
    names = [p.name for p in programs(Settings.load(env_file=None, discord_token=""))]
    assert names == [
        "model_server", "inference", "auth", "signal", "position", "edge", "envoy", "ready"
    ]  # fmt: skip
    assert all("AIFX_SIGNAL_TARGET" not in p.environment for p in programs(Settings.load()))


def test_the_supervisor_config_restarts_with_backoff_and_locks_its_control_socket(tmp_path):
    path = supervisor_config.write(programs(two_replicas()), tmp_path, REPO_ROOT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the password
    config = configparser.RawConfigParser()
    config.read(path)
    assert config["unix_http_server"]["chmod"] == "0700"
    assert config["unix_http_server"]["password"] == config["supervisorctl"]["password"]
    signal = config["program:signal-2"]
    assert signal["autorestart"] == "true" and int(signal["startretries"]) >= 3
    assert signal["stdout_logfile"] == "/dev/stdout"
    assert 'AIFX_SIGNAL_PORT="50152"' in signal["environment"]
    assert config["program:ready"]["autorestart"] == "false"
    # A new password each run.
    again = supervisor_config.render(programs(two_replicas()), tmp_path, REPO_ROOT)
    assert config["supervisorctl"]["password"] not in again


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupervisedStack]:
    with supervised_replicas(tmp_path_factory.mktemp("supervised")) as running:
        yield running


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def healthy_endpoints(stack: SupervisedStack, cluster: str) -> int:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.ports['envoy_admin_port']}/clusters?format=json", timeout=5
    ) as response:
        clusters = json.load(response)["cluster_statuses"]
    [found] = [c for c in clusters if c["name"] == cluster]
    return sum(
        1
        for host in found.get("host_statuses", [])
        if host["health_status"].get("eds_health_status") == "HEALTHY"
        and not host["health_status"].get("failed_active_health_check")
        and not host["health_status"].get("failed_outlier_check")
    )


def test_every_replica_runs_logs_as_itself_and_is_behind_envoy(stack: SupervisedStack):
    status = stack.ctl("status")
    # RUNNING once a program has stayed up startsecs (5 s), which may be after the banner.
    for name in ("auth-1", "auth-2", "signal-1", "signal-2", "position-2", "edge-2", "envoy"):
        stack.wait_until(lambda: stack.running(name), f"{name} RUNNING")  # noqa: B023
    assert "notifier" not in status  # no Discord token
    lines = [json.loads(line) for line in stack.log(1_000_000).splitlines() if line[:1] == "{"]
    assert {"signal-1", "signal-2", "edge-1", "edge-2"} <= {line.get("process") for line in lines}
    # Envoy's own health checks (every 2 s) may pass a moment after the ready banner.
    for cluster in ("auth_svc", "signal_svc", "position_svc", "edge"):
        stack.wait_until(lambda: healthy_endpoints(stack, cluster) == 2, f"{cluster}: 2 in")  # noqa: B023


def test_a_killed_replica_is_restarted_and_reads_keep_answering(stack: SupervisedStack):
    jwks = f"{stack.url}/api/v1/auth/jwks"
    stack.wait_until(lambda: healthy_endpoints(stack, "auth_svc") == 2, "both auth replicas in")
    old = stack.kill("auth-1")
    # Known gap (closing note of issue 13): a few reads right after the kill may be
    # answered 503 instead of retried on auth-2, so only what follows is asserted.
    stack.wait_until(
        lambda: stack.running("auth-1") and stack.pid("auth-1") != old, "auth-1 restarted"
    )
    supervisor_log = (stack.var_dir / "supervisord.log").read_text()
    assert "exited: auth-1 (terminated by SIGKILL; not expected)" in supervisor_log
    stack.wait_until(lambda: healthy_endpoints(stack, "auth_svc") == 2, "auth-1 back in")
    assert [get(jwks) for _ in range(50)] == [200] * 50
