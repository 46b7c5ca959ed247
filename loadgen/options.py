"""The settings of one ``loadgen dispatch`` run, shared by the sender, fleet and report."""

from __future__ import annotations

from dataclasses import dataclass

CONNECTION_LIMIT = 256  # keep-alive connections to the API node


@dataclass(frozen=True, slots=True)
class DispatchOptions:
    """Everything a run needs; frozen so every stage reads the same values."""

    url: str
    api_key: str
    api_secret: str
    redis_url: str
    rate: float
    duration: float
    agents: int
    capacity: int
    hold: float
    agent_name: str
    seed: int | None = None
    result_wait_s: float = 10.0
    ready_timeout_s: float = 30.0
    max_in_flight: int = 4096
    connections: int = CONNECTION_LIMIT
    agent_procs: int = 0  # >0: ``agents`` virtual servers in this many processes

    def as_dict(self) -> dict[str, object]:
        """The run parameters for the report; the secret stays out of it."""
        return {
            "url": self.url,
            "rate": self.rate,
            "duration_s": self.duration,
            "agents": self.agents,
            "agent_procs": self.agent_procs,
            "capacity": self.capacity,
            "hold_s": self.hold,
            "agent_name": self.agent_name,
            "seed": self.seed,
        }
