"""Settings per role: frozen Structs filled from ``DISPATCHER_*`` environment variables.

Every ``DISPATCHER_*`` variable must name a field of some role, so a misspelt variable stops
the process at start instead of silently leaving a default in place.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import msgspec

from dispatcher.errors import ConfigError
from dispatcher.partitions import DEFAULT_PARTITIONS
from dispatcher.store.replication import Replication

PREFIX = "DISPATCHER_"
DEFAULT_POOL_SHARDS = 12
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secretsecretsecretsecretsecret12"


class RedisSettings(msgspec.Struct, kw_only=True, frozen=True):
    redis_url: str = "redis://127.0.0.1:6379"
    partitions: int = DEFAULT_PARTITIONS
    # Shards per agent-server pool: each is its own cluster slot, so a pool's heartbeats,
    # reservations and inboxes spread over the masters. 12 divides evenly over 1, 2, 3, 4
    # and 6 masters. Stored at first start like the partition count.
    pool_shards: int = DEFAULT_POOL_SHARDS
    room_retention_s: int = 3600  # how long a closed room's dispatch records stay listable
    # Writes that must survive a failover wait until this many replicas have them (0: no
    # wait); one not replicated within the timeout fails as unavailable.
    replica_acks: int = 0
    replica_ack_timeout_ms: int = 500

    def replication(self) -> Replication:
        return Replication(self.replica_acks, self.replica_ack_timeout_ms)


class ApiSettings(RedisSettings, kw_only=True, frozen=True):
    host: str = "0.0.0.0"
    port: int = 7880
    # "key:secret,key2:secret2"; LIVEKIT_API_KEY/LIVEKIT_API_SECRET are added when set.
    api_keys: str = ""
    token_leeway_s: float = 60.0
    max_metadata_bytes: int = 512 * 1024
    # 1 MiB holds any request within the field limits but a CreateRoom with several agents
    # of maximal metadata; parsing the worst 1 MiB protobuf took 59 ms, 10 MiB seconds.
    max_body_bytes: int = 1024 * 1024
    # What one client may cost the node (SECURITY.md explains each).
    max_connections: int = 50_000  # fewer if the file-descriptor limit cannot be raised
    max_head_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    max_dispatches_per_room: int = 100
    max_list_bytes: int = 4 * 1024 * 1024  # the records one ListDispatch/ListRooms returns
    max_list_rooms: int = 10_000
    idempotency_ttl_s: int = 600
    # On SIGTERM readiness fails at once; requests are still served this long (a load
    # balancer's time to notice, e.g. 5 s on Kubernetes), then in-flight ones finish.
    drain_delay_s: float = 0.0
    # A join token's roomConfig agents on a room that already exists: "ignore" them (as the
    # reference, and say so), or "ensure" each agent the room has no live dispatch of.
    token_agents: Literal["ignore", "ensure"] = "ignore"
    # LiveKit agent workers on GET /agent: the jobs one is offered at most at once (it also
    # says itself when it is full), how long its server outlives its socket (the time it
    # has to reconnect and take its running jobs along), and the media server's URL that
    # assignments carry ("": the worker's own LIVEKIT_URL).
    gateway_capacity: int = 16
    gateway_heartbeat_ttl_ms: int = 10_000
    media_url: str = ""
    # Prometheus /metrics (dispatcher/metrics/) on a port of its own; 0: none. Off unless
    # set, so several roles on one host never collide (k8s/ sets 9180 in every pod).
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 0


class SchedulerSettings(RedisSettings, kw_only=True, frozen=True):
    node_id: str = ""
    # A dead scheduler's partitions move after about the TTL plus one heartbeat. Under
    # overload (2,500/s in dev mode, past the knee) renewals came at most 69 ms late
    # (BENCHMARKS.md, "Lease renewals"): a 2 s TTL keeps a 3.5x margin over the longest gap.
    heartbeat_interval_s: float = 0.5
    membership_ttl_ms: int = 2000
    lease_ttl_ms: int = 2000
    batch_size: int = 512
    block_ms: int = 100  # read timeout of a partition with jobs: the timer resolution
    idle_block_ms: int = 1000  # read timeout of a partition without jobs
    assign_timeout_ms: int = 5000
    terminate_grace_ms: int = 20000
    # How long a job may wait for a free slot before it fails (NO_CAPACITY); 0: for ever.
    capacity_wait_s: float = 600.0
    # Added to an agent server's expiry before it counts as lost; the server fences itself
    # a third of its TTL before the expiry, so this only widens the gap.
    loss_margin_ms: int = 500
    load_threshold: float = 0.7
    snapshot_interval_s: float = 0.25
    reap_after_ms: int = 60000
    # /healthz and /readyz (dispatcher/health.py) on this port; 0: none.
    health_host: str = "0.0.0.0"
    health_port: int = 0
    # Webhooks (dispatcher/webhooks): POSTed to each of these comma-separated URLs ("":
    # none, and nothing is queued), signed with this key and secret (default:
    # LIVEKIT_API_KEY/LIVEKIT_API_SECRET); an event not delivered within the retry time
    # after it happened is dropped (logged, counted, and said in the next one's numDropped).
    webhook_urls: str = ""
    webhook_api_key: str = ""
    webhook_api_secret: str = ""
    webhook_retry_s: float = 600.0
    # Prometheus /metrics (dispatcher/metrics/) on this port; 0: none.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 0
    # What targeted dispatches match (when the AgentServer is not given its own):
    # "key=value,key2=value2" and a version string.
    agent_labels: str = ""
    agent_version: str = ""


class AgentSettings(RedisSettings, kw_only=True, frozen=True):
    heartbeat_interval_s: float = 1.0
    heartbeat_ttl_ms: int = 3000
    # How long before its heartbeat expires an agent server that cannot renew it stops its
    # jobs (fences itself); 0: a third of the TTL.
    fence_margin_ms: int = 0
    drain_timeout_s: float = 600.0
    # /healthz and /readyz (dispatcher/health.py) on this port; 0: none.
    health_host: str = "0.0.0.0"
    health_port: int = 0
    # Prometheus /metrics (dispatcher/metrics/) on this port; 0: none.
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 0
    # What targeted dispatches match (when the AgentServer is not given its own):
    # "key=value,key2=value2" and a version string.
    agent_labels: str = ""
    agent_version: str = ""


ROLES: tuple[type[RedisSettings], ...] = (ApiSettings, SchedulerSettings, AgentSettings)
S = TypeVar("S", bound=RedisSettings)


# Read by the ``dispatcher`` command itself, before any role's settings.
COMMAND_NAMES = frozenset({"DISPATCHER_LOG_LEVEL"})


def _known_names() -> set[str]:
    return {PREFIX + f.upper() for role in ROLES for f in role.__struct_fields__} | COMMAND_NAMES


def check_environment(environ: Mapping[str, str]) -> None:
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in _known_names())
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")


def load(
    role: type[S],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Build ``role`` from the environment, then from explicit ``overrides`` (CLI options)."""
    env = os.environ if environ is None else environ
    check_environment(env)
    values: dict[str, Any] = {}
    for name in role.__struct_fields__:
        if (raw := env.get(PREFIX + name.upper())) is not None:
            values[name] = raw
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return msgspec.convert(values, role, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc


def api_key_pairs(
    settings: ApiSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """API key -> secret, from ``api_keys`` plus ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``."""
    env = os.environ if environ is None else environ
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in settings.api_keys.split(","))):
        key, sep, secret = item.partition(":")
        if not sep or not key or not secret:
            raise ConfigError(f"api_keys entry {item!r} is not 'key:secret'")
        pairs[key] = secret
    if env.get("LIVEKIT_API_KEY") and env.get("LIVEKIT_API_SECRET"):
        pairs[env["LIVEKIT_API_KEY"]] = env["LIVEKIT_API_SECRET"]
    if not pairs:
        raise ConfigError("no API key configured: set DISPATCHER_API_KEYS or LIVEKIT_API_KEY")
    return pairs


def default_node_id() -> str:
    """The pod name in a StatefulSet (stable across restarts), else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


T = TypeVar("T")


def given(value: T | None, default: T) -> T:
    """A setting passed in code, else ``default`` (typically the environment's)."""
    return default if value is None else value
