"""The benchmark's peers (Taskiq, Celery, arq) in both variants against a real redis-server:
a short open-loop step must start every accepted job exactly once. No timings asserted."""

from __future__ import annotations

import pytest

from loadgen.peers import PEERS, VARIANTS, run_peer_step
from tests.redis_servers import RedisTarget

RATE, DURATION_S = 50.0, 1.0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("peer", PEERS)
async def test_every_accepted_job_starts_exactly_once(
    peer: str, variant: str, redis_single_target: RedisTarget
) -> None:
    result = await run_peer_step(
        peer, variant, redis_url=redis_single_target.url, rate=RATE, duration_s=DURATION_S
    )

    assert result.system == f"{peer} ({variant})"
    assert result.errors == {}
    assert result.lost == 0
    assert result.duplicates == 0
    assert len(result.latencies_ns) == result.accepted == result.sent == result.planned == 50
    assert result.cpu_s > 0
    assert result.redis_usec > 0


async def test_unknown_peer_or_variant_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="unknown peer"):
        await run_peer_step("rq", "defaults", redis_url="redis://unused", rate=1, duration_s=1)
    with pytest.raises(ValueError, match="unknown variant"):
        await run_peer_step("arq", "fast", redis_url="redis://unused", rate=1, duration_s=1)
