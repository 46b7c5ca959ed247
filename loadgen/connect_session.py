"""A ``loadgen connect`` session: a dispatch session whose steps are participants joining.

Fleet, warm-up, result reader and the measurement around each step are the dispatch
session's. A step first waits until the system is idle (as the peers suite does), so a
step that overloaded it (work still queued in its streams) does not weigh on the next one.
It then plans its joins, creates the rooms open at the schedule's start (see
``loadgen.join_plan``), mints every token, waits until 50 ms before the first join is due
(a dispatch step also starts its schedule 50 ms after it begins measuring) and runs the
schedule. With agents, the dispatches of their agent are the accepted jobs the step waits
for; without, no job is expected.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping

from loadgen.bench.targets import settle
from loadgen.join_plan import JoinShape, PlannedJoin, plan_joins
from loadgen.join_progress import JoinProgress
from loadgen.join_sender import JoinSender, JoinStats, join
from loadgen.join_tokens import Minted, mint_tokens
from loadgen.options import DispatchOptions
from loadgen.results import wait_for_results
from loadgen.run import DispatchSession, RunError, StepData
from loadgen.sender import planned_count

_SCHEDULE_LEAD_S = 0.05  # measuring starts this long before the first join is due
_MINT_ALLOWANCE_S = 20e-6  # per token: about three times what minting one costs


class ConnectSession(DispatchSession):
    def __init__(
        self,
        options: DispatchOptions,
        shape: JoinShape,
        *,
        system_pids: Mapping[str, int] | None = None,
        progress_write: Callable[[str], object] | None = None,
        progress_tty: bool = False,
    ) -> None:
        super().__init__(
            options,
            system_pids=system_pids,
            progress_write=progress_write,
            progress_tty=progress_tty,
        )
        self.shape = shape

    async def step(self, rate: float, duration: float) -> StepData:
        """Participants join at ``rate`` for ``duration`` seconds."""
        assert self._http is not None and self._client is not None
        await settle(self._client, self._system_and_agent_pids())
        options, prefix = self._next_step(rate, duration)
        plan = plan_joins(prefix, planned_count(rate, duration), rate, self.shape, options.seed)
        await self._open_rooms(plan.openers, options)
        first_send_ns = time.time_ns() + int(
            (_SCHEDULE_LEAD_S + len(plan.joins) * _MINT_ALLOWANCE_S) * 1e9
        )
        minted = self._mint(plan.joins, options, first_send_ns)
        stats = JoinStats(
            planned=len(plan.joins),
            shape=self.shape,
            tracked_agent=options.agent_name if options.agents else None,
            rooms_opened=len(plan.openers),
            rooms_planned=sum(join.creates_room for join in plan.joins),
            mint_cpu_s=minted.cpu_s,
        )
        progress = JoinProgress(rate)
        sender = JoinSender(self._http, options, plan.joins, minted.tokens, stats, progress)
        await _sleep_until(first_send_ns - int(_SCHEDULE_LEAD_S * 1e9))
        return await self._measure(options, progress, lambda: _send(sender, first_send_ns))

    async def _open_rooms(self, openers: list[PlannedJoin], options: DispatchOptions) -> None:
        """Create the rooms open when the schedule starts; with agents, wait for their jobs
        (whose results the step then discards)."""
        assert self._http is not None and self._reader is not None
        http, tokens = self._http, self._mint(openers, options, time.time_ns()).tokens
        answers = await asyncio.gather(*(join(http, token) for token in tokens))
        failed = Counter(a.code for a in answers if a.reply is None)
        if failed:
            raise RunError(f"opening the step's first rooms failed: {dict(failed)}")
        if options.agents:
            ids = [d.id for a in answers if a.reply for d in a.reply.dispatches]
            if not await wait_for_results(self._reader, ids, options.ready_timeout_s):
                raise RunError("the jobs of the step's first rooms did not start")

    @staticmethod
    def _mint(joins: list[PlannedJoin], options: DispatchOptions, first_send_ns: int) -> Minted:
        return mint_tokens(
            joins,
            options.api_key,
            options.api_secret,
            options.agent_name,
            first_send_ns=first_send_ns,
            rate=options.rate,
        )

    def _system_and_agent_pids(self) -> list[int]:
        """The processes that do the system's work; Redis is measured by ``settle`` itself."""
        system = [pid for role, pid in self._system_pids.items() if role != "redis"]
        return [*system, *self.agent_pids]


async def _sleep_until(unix_ns: int) -> None:
    await asyncio.sleep(max(0.0, (unix_ns - time.time_ns()) / 1e9))


async def _send(sender: JoinSender, first_send_ns: int) -> JoinStats:
    """Run the schedule from ``first_send_ns``; CPU covers sending and replies only."""
    t0 = time.perf_counter() + (first_send_ns - time.time_ns()) / 1e9
    cpu_before = time.process_time()
    await sender.run(t0)
    sender.stats.cpu_s = time.process_time() - cpu_before
    return sender.stats
