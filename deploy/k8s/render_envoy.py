"""Render deploy/k8s/base/envoy.yaml from the same template `make run` uses.

`edge.envoy_proxy.render(settings)` applies the settings; here the clusters then point
at the in-cluster Service DNS names (STRICT_DNS) and the descriptor at the image's path.
Run `python deploy/k8s/render_envoy.py` after changing envoy.yaml; the test checks the
committed file equals this output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from common.settings import Settings
from edge import envoy_proxy

OUT = Path(__file__).resolve().parent / "base" / "envoy.yaml"
IMAGE_DESCRIPTOR = "/app/gen/aifx_descriptor.pb"
SERVICE_HOSTS = {
    "auth_svc": "auth",
    "signal_svc": "signal",
    "position_svc": "position",
    "edge": "edge",
}


def render_k8s() -> dict[str, Any]:
    settings = Settings.load(env_file=None)
    config = envoy_proxy.render(settings)
    text = envoy_proxy.dump(config).replace(str(envoy_proxy.DESCRIPTOR), IMAGE_DESCRIPTOR)
    config = yaml.safe_load(text)
    # Reachable from the Service; the admin port stays on loopback.
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["address"] = "0.0.0.0"
    for cluster in config["static_resources"]["clusters"]:
        host = SERVICE_HOSTS.get(cluster["name"])
        if host is None:
            continue
        cluster["type"] = "STRICT_DNS"
        # A headless Service: the name resolves to every ready pod, each health-checked
        # and balanced on its own.
        for endpoint in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]:
            endpoint["endpoint"]["address"]["socket_address"]["address"] = host
    return config


def render_text() -> str:
    return envoy_proxy.dump(render_k8s())


if __name__ == "__main__":
    OUT.write_text(render_text())
    sys.stdout.write(f"wrote {OUT}\n")
