"""The rendered Kubernetes manifests, as the checks and the parity test read them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# Every kustomization a user applies, with the components each may take.
OVERLAYS = {
    "base": (),
    "overlays/dev": ("components/keda",),
    "overlays/redis-cluster": ("components/keda-cluster",),
}
JOBS = ("jobs/loadgen",)  # applied to a running deployment (its ConfigMap and Secret)
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
Obj = dict[str, Any]


def kubectl() -> str:
    """The venv's kubectl (a dev dependency, one version everywhere), else the PATH's."""
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: run scripts/setup.sh")
    return found


@cache
def render(path: str, components: tuple[str, ...] = ()) -> tuple[Obj, ...]:
    """``kubectl kustomize`` of ``k8s/<path>``, with ``components`` added to it."""
    target = K8S / path
    if components:
        target = _with_components(path, components)
    done = subprocess.run([kubectl(), "kustomize", str(target)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"kubectl kustomize k8s/{path} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


_SCRATCH = tempfile.TemporaryDirectory(prefix="k8s-render-")  # removed at exit


def _with_components(path: str, components: tuple[str, ...]) -> Path:
    """A scratch kustomization that takes ``path`` plus ``components``."""
    folder = Path(_SCRATCH.name) / "-".join((path, *components)).replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath
    text = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel(K8S / path, folder)],
        "components": [rel(K8S / c, folder) for c in components],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(text))
    return folder


def every_render() -> Iterator[tuple[str, tuple[Obj, ...]]]:
    for path, components in OVERLAYS.items():
        yield path, render(path)
        if components:
            yield f"{path} + {', '.join(components)}", render(path, components)
    for job in JOBS:
        yield f"overlays/dev + {job}", render("overlays/dev") + render(job)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    return next(o for o in of_kind(objects, kind) if o["metadata"]["name"] == name)


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


@dataclass(frozen=True)
class Container:
    workload: str
    spec: Obj
    pod: Obj
    pod_annotations: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> str:
        image: str = self.spec["image"]
        return image

    @property
    def is_ours(self) -> bool:
        """Our image (every role), not Redis's."""
        return not self.image.startswith("redis:")

    @property
    def role(self) -> str:
        """``api``, ``scheduler``, ``agent`` or ``loadgen``: the command's first word."""
        command = self.spec.get("command", [])
        return "loadgen" if "loadgen" in command else str(self.spec["args"][0])

    def port(self, name_or_number: str | int) -> int:
        for port in self.spec.get("ports", []):
            if name_or_number in (port.get("name"), port["containerPort"]):
                return int(port["containerPort"])
        raise KeyError(f"{self.workload}: no container port {name_or_number!r}")


def containers(objects: tuple[Obj, ...]) -> list[Container]:
    return [
        Container(
            w["metadata"]["name"],
            c,
            pod_spec(w),
            w["spec"]["template"]["metadata"].get("annotations", {}),
        )
        for w in objects
        if w["kind"] in WORKLOADS
        for c in pod_spec(w)["containers"]
    ]


def environment(container: Container, objects: tuple[Obj, ...]) -> dict[str, str]:
    """The container's variables: its envFrom ConfigMaps and Secrets, then its env."""
    env: dict[str, str] = {}
    for source in container.spec.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            secret = named(objects, "Secret", source["secretRef"]["name"])
            env.update(secret.get("stringData", {}))
    for variable in container.spec.get("env", []):
        env[variable["name"]] = str(variable.get("value", "<from field>"))
    return env


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
