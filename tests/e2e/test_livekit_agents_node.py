"""LiveKit's Node agent workers (``@livekit/agents``, started with their own ``start``
command) over ``/agent``: explicit, token and automatic dispatches, and termination.

The Node SDK reports nothing of its jobs (no ``update_job``, no ``migrate_job``): a job is
RUNNING from its assignment until it is terminated (its dispatch deleted, its room
closed), as in LiveKit, where it ends when the agent leaves the room."""

from __future__ import annotations

from pathlib import Path

from livekit import api

from tests.e2e.livekit_worker import livekit_worker
from tests.e2e.test_livekit_agents import WAIT_S, Stack, _registered, stack
from tests.room_stack import join_token
from tests.stack import eventually

__all__ = ["stack"]  # the fixture
JS = api.JobStatus


async def test_node_workers_get_explicit_token_and_automatic_dispatches_and_terminations(
    stack: Stack, tmp_path: Path
) -> None:
    with (
        livekit_worker(stack.url, tmp_path, sdk="node") as named,
        livekit_worker(stack.url, tmp_path, agent_name="", sdk="node") as automatic,
    ):
        await _registered(named)
        await _registered(automatic)

        await stack.dispatch("node-explicit", "quick")
        await eventually(lambda: bool(named.started("quick")), WAIT_S, "the explicit job")
        assert named.started("quick")[0]["room"] == "node-explicit"
        assert await stack.status_is("node-explicit", JS.JS_RUNNING)

        agent = api.RoomAgentDispatch(agent_name="test-agent", metadata="from-token")
        await stack.join(join_token("node-token", "caller", agent))
        await eventually(lambda: bool(named.started("from-token")), WAIT_S, "the token's job")

        await stack.join(join_token("node-auto", "first"))
        await eventually(lambda: bool(automatic.started("")), WAIT_S, "the automatic job")
        assert automatic.started("")[0]["room"] == "node-auto"

        held = await stack.dispatch("node-held", "hold")
        await eventually(lambda: bool(named.started("hold")), WAIT_S, "the held job")
        await stack.lk.agent_dispatch.delete_dispatch(held, "node-held")
        await eventually(lambda: bool(named.ended("hold")), WAIT_S, "the termination")
        await eventually(lambda: stack.status_is("node-held", JS.JS_SUCCESS), WAIT_S, "its end")
