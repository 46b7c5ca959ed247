"""Every rendered object validated strictly against its schema: Kubernetes's own for the
built-in kinds (at each of ``KUBERNETES_VERSIONS``), KEDA's for the ScaledObject; and the
Dockerfile linted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from tests.k8s.manifests import ROOT, Obj, every_render

KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")  # the oldest supported and the newest known
CUSTOM_KINDS = {"ScaledObject"}
RENDERS = dict(every_render())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("objects", RENDERS.values(), ids=RENDERS.keys())
def test_every_built_in_object_validates_strictly(objects: tuple[Obj, ...], version: str) -> None:
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary is not None, "hadolint not found: run scripts/setup.sh"
    result = subprocess.run(
        [binary, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "objects", [RENDERS[k] for k in RENDERS if "keda" in k], ids=[k for k in RENDERS if "keda" in k]
)
def test_the_scaled_object_keeps_every_field_through_kedas_schema(objects: tuple[Obj, ...]) -> None:
    """KEDA's CRD as typed models: a field its schema lacks would be dropped on the way
    through (as the API server prunes unknown fields), a wrong type refused."""
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    [scaled] = [o for o in objects if o["kind"] == "ScaledObject"]
    model = ScaledObject.model_validate(scaled)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == scaled
