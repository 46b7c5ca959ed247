"""Checks of k8s/ that need no cluster: every overlay renders, and what no schema covers
holds (selectors, probes, grace periods, the autoscaler's bounds, one image, settings)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from dispatcher import settings as config
from dispatcher.api.app import longest_drain_s as api_drain_s
from dispatcher.health import LIVENESS, READINESS
from dispatcher.metrics import PATH as METRICS_PATH
from dispatcher.scheduler.node import longest_drain_s as scheduler_drain_s
from dispatcher.store.keys import CONSUMER_GROUP, partition_keys
from dispatcher.webhooks.config import webhook_config
from tests.k8s.manifests import (
    K8S,
    ROOT,
    WORKLOADS,
    Container,
    Obj,
    containers,
    environment,
    every_render,
    named,
    of_kind,
    pod_labels,
    render,
    selects,
)

RENDERS = dict(every_render())
GRACE_MARGIN_S = 5.0  # beyond a role's longest drain, for the process to exit


def renders() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("objects", RENDERS.values(), ids=RENDERS.keys())


@renders()
def test_every_workload_selects_its_own_pods(objects: tuple[Obj, ...]) -> None:
    for workload in (o for o in objects if o["kind"] in WORKLOADS - {"Job"}):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(workload)), workload["metadata"]["name"]


@renders()
def test_services_and_budgets_select_pods_that_exist(objects: tuple[Obj, ...]) -> None:
    pods = [pod_labels(w) for w in objects if w["kind"] in WORKLOADS]
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        assert any(selects(selector, labels) for labels in pods), service["metadata"]["name"]
    for budget in of_kind(objects, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selects(selector, labels) for labels in pods), budget["metadata"]["name"]


@renders()
def test_service_ports_reach_a_named_container_port(objects: tuple[Obj, ...]) -> None:
    for service in of_kind(objects, "Service"):
        selected = [
            c
            for c in containers(objects)
            for w in objects
            if w["kind"] in WORKLOADS and w["metadata"]["name"] == c.workload
            if selects(service["spec"]["selector"], pod_labels(w))
        ]
        for port in service["spec"]["ports"]:
            assert any(_has_port(c, port["targetPort"]) for c in selected), port


def _has_port(container: Container, port: str | int) -> bool:
    try:
        container.port(port)
    except KeyError:
        return False
    return True


@renders()
def test_autoscalers_and_statefulsets_name_what_exists(objects: tuple[Obj, ...]) -> None:
    for scaler in [*of_kind(objects, "HorizontalPodAutoscaler"), *of_kind(objects, "ScaledObject")]:
        target = scaler["spec"]["scaleTargetRef"]
        named(objects, target["kind"], target["name"])
    for stateful in of_kind(objects, "StatefulSet"):
        named(objects, "Service", stateful["spec"]["serviceName"])


@renders()
def test_one_image_runs_every_role(objects: tuple[Obj, ...]) -> None:
    ours = {c.image for c in containers(objects) if c.is_ours}
    assert len(ours) == 1, ours
    assert next(iter(ours)).startswith("agent-dispatcher:")


@renders()
def test_every_container_is_locked_down_and_sized(objects: tuple[Obj, ...]) -> None:
    for container in containers(objects):
        pod, spec = container.pod["securityContext"], container.spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["readOnlyRootFilesystem"] is True, container.workload
        assert spec["allowPrivilegeEscalation"] is False, container.workload
        assert spec["capabilities"]["drop"] == ["ALL"], container.workload
        resources = container.spec["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), (container.workload, kind)


@renders()
def test_every_dispatcher_variable_is_a_real_setting_of_its_role(objects: tuple[Obj, ...]) -> None:
    for container in (c for c in containers(objects) if c.is_ours):
        env = environment(container, objects)
        config.check_environment(env)  # raises, naming any variable no role knows
        config.load(_settings_of(container), environ=env)  # and each value parses


@renders()
def test_schedulers_can_sign_webhooks_once_a_url_is_set(objects: tuple[Obj, ...]) -> None:
    """Setting DISPATCHER_WEBHOOK_URLS in the ConfigMap is all it takes: the schedulers
    have the key pair that signs them."""
    for container in (c for c in containers(objects) if c.is_ours and c.role == "scheduler"):
        env = environment(container, objects)
        env["DISPATCHER_WEBHOOK_URLS"] = "https://hooks.example/livekit"
        settings = config.load(config.SchedulerSettings, environ=env)
        assert webhook_config(settings, env) is not None  # raises without a key and secret


ROLE_SETTINGS: dict[str, type[config.RedisSettings]] = {
    "api": config.ApiSettings,
    "scheduler": config.SchedulerSettings,
    "agent": config.AgentSettings,
    "loadgen": config.AgentSettings,  # its agent servers read these
}


def _settings_of(container: Container) -> type[config.RedisSettings]:
    return ROLE_SETTINGS[container.role]


@renders()
def test_probes_hit_the_port_and_paths_each_role_serves(objects: tuple[Obj, ...]) -> None:
    for container in (c for c in containers(objects) if c.is_ours and c.role != "loadgen"):
        env = environment(container, objects)
        served = _probe_port(config.load(_settings_of(container), environ=env))
        assert served, f"{container.workload}: no probe port set"
        for probe, path in (("livenessProbe", LIVENESS), ("readinessProbe", READINESS)):
            get = container.spec[probe]["httpGet"]
            assert get["path"] == path, (container.workload, probe)
            assert container.port(get["port"]) == served, (container.workload, probe)


def _probe_port(settings: config.RedisSettings) -> int:
    if isinstance(settings, config.ApiSettings):
        return settings.port
    assert isinstance(settings, config.SchedulerSettings | config.AgentSettings)
    return settings.health_port


@renders()
def test_every_role_serves_metrics_where_its_pod_says(objects: tuple[Obj, ...]) -> None:
    for container in (c for c in containers(objects) if c.is_ours and c.role != "loadgen"):
        settings = config.load(_settings_of(container), environ=environment(container, objects))
        assert isinstance(settings, config.ROLES)
        port = getattr(settings, "metrics_port", 0)
        assert port, f"{container.workload}: no metrics port set"
        assert container.port("metrics") == port, container.workload
        annotations = container.pod_annotations
        assert annotations["prometheus.io/scrape"] == "true", container.workload
        assert annotations["prometheus.io/port"] == str(port), container.workload
        assert annotations["prometheus.io/path"] == METRICS_PATH, container.workload


@renders()
def test_grace_periods_cover_each_roles_drain(objects: tuple[Obj, ...]) -> None:
    for container in (c for c in containers(objects) if c.is_ours and c.role != "loadgen"):
        settings = config.load(_settings_of(container), environ=environment(container, objects))
        grace = container.pod["terminationGracePeriodSeconds"]
        assert grace >= _longest_drain_s(settings) + GRACE_MARGIN_S, container.workload


def _longest_drain_s(settings: config.RedisSettings) -> float:
    if isinstance(settings, config.ApiSettings):
        return api_drain_s(settings)
    if isinstance(settings, config.SchedulerSettings):
        return scheduler_drain_s(settings)
    assert isinstance(settings, config.AgentSettings)
    from workers.server import AgentServer

    server = AgentServer(drain_timeout_s=settings.drain_timeout_s)
    return server.longest_drain_s


def _keda_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("keda", ROOT / "scripts/keda_scaledobject.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("overlay", "component", "cluster"),
    [("overlays/dev", "keda", False), ("overlays/redis-cluster", "keda-cluster", True)],
)
def test_keda_scales_schedulers_on_every_partitions_lag_within_the_partition_count(
    overlay: str, component: str, cluster: bool
) -> None:
    objects = render(overlay, (f"components/{component}",))
    partitions = int(
        named(objects, "ConfigMap", "dispatcher-config")["data"]["DISPATCHER_PARTITIONS"]
    )
    scaled = of_kind(objects, "ScaledObject")[0]["spec"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions
    streams = {t["metadata"]["stream"] for t in scaled["triggers"]}
    assert streams == {partition_keys(p).events for p in range(partitions)}
    for trigger in scaled["triggers"]:
        assert trigger["type"] == ("redis-cluster-streams" if cluster else "redis-streams")
        assert trigger["metadata"]["consumerGroup"] == CONSUMER_GROUP
        assert int(trigger["metadata"]["lagCount"]) > 0
    committed = (K8S / "components" / component / "scaledobject.yaml").read_text()
    assert committed == _keda_script().render(partitions, cluster), "regenerate it"
