"""Participants connecting on the open-loop schedule: one ``Join`` per planned join.

The schedule, in-flight cap and lag accounting are ``Sender``'s; only what one send does
differs: a Join with the join's pre-minted token and no body, its JSON reply tallied
(rooms created, dispatches, reconnects), and for the joins planned to leave, a Leave with
the same token as soon as the Join is answered. Like a dispatch, a send is a chain of
callbacks from ``HttpClient.send``, with no task of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import msgspec

from loadgen.httpclient import HttpClient, HttpError, Outcome
from loadgen.join_plan import JoinShape, PlannedJoin
from loadgen.join_progress import JoinProgress
from loadgen.options import DispatchOptions
from loadgen.sender import OK, Sender, SendStats, classify, failure_code

JOIN_PATH = "/twirp/dispatcher.Participant/Join"
LEAVE_PATH = "/twirp/dispatcher.Participant/Leave"


class _Room(msgspec.Struct):
    name: str
    created: bool


class _Participant(msgspec.Struct):
    reconnected: bool = False


class _Dispatch(msgspec.Struct):
    id: str
    agent_name: str = ""


class JoinReply(msgspec.Struct):
    """The parts of a Join reply the run counts."""

    room: _Room
    participant: _Participant = msgspec.field(default_factory=_Participant)
    dispatches: list[_Dispatch] = msgspec.field(default_factory=list)


_decode_reply = msgspec.json.Decoder(JoinReply).decode


@dataclass(frozen=True, slots=True)
class Answer:
    """One call's outcome: "ok" or the Twirp error code, with the JSON reply of a Join."""

    code: str
    sent_ns: int = 0  # unix ns, just before the request
    elapsed_ns: int | None = None  # None when no HTTP response came back
    reply: JoinReply | None = None


async def join(client: HttpClient, token: str) -> Answer:
    """A Join: its answer carries the reply when it was accepted."""
    sent_ns, started = time.time_ns(), time.perf_counter_ns()
    try:
        outcome: Outcome = await client.post(JOIN_PATH, b"", _authorization(token))
    except HttpError as exc:
        outcome = exc
    return _join_answer(outcome, sent_ns, started)


def _authorization(token: str) -> tuple[tuple[str, str]]:
    """A participant call's only header: the token is all it carries."""
    return (("Authorization", f"Bearer {token}"),)


def _answer(outcome: Outcome, sent_ns: int, started: int) -> tuple[Answer, bytes]:
    """A call's answer and response body, from when it was sent and what came of it."""
    if isinstance(outcome, HttpError):
        return Answer(failure_code(outcome), sent_ns), b""
    status, body = outcome
    code = OK if status == 200 else classify(status, body)[0]
    return Answer(code, sent_ns, time.perf_counter_ns() - started), body


def _join_answer(outcome: Outcome, sent_ns: int, started: int) -> Answer:
    """A Join's answer, with its decoded reply when it was accepted."""
    answer, body = _answer(outcome, sent_ns, started)
    if answer.code != OK:
        return answer
    try:
        return dataclasses.replace(answer, reply=_decode_reply(body))
    except msgspec.DecodeError:
        return dataclasses.replace(answer, code="bad_response")


@dataclass
class JoinStats(SendStats):
    """``SendStats`` of the Joins (``response_ns``: join round trips; ``accepted_ids``: the
    dispatches whose job start the run waits for), plus what the replies said."""

    join_sent_ns: list[int] = field(default_factory=list)  # unix ns, one per response_ns
    shape: JoinShape = field(default_factory=JoinShape)
    # Whose dispatches the run waits for: the simulated agents', when they run. A room a
    # plain join created in a race (``rooms_created_unplanned``) has the automatic agent,
    # which nothing here runs.
    tracked_agent: str | None = None
    rooms_opened: int = 0  # created before the schedule, for its first joins
    rooms_planned: int = 0
    rooms_created: int = 0
    rooms_created_unplanned: int = 0  # created by a join not meant to create it
    creator_found_room: int = 0  # a creating join that found its room already there
    rooms_joined: set[str] = field(default_factory=set)
    reconnected: int = 0
    dispatches: int = 0
    dispatch_sent_ns: dict[str, int] = field(default_factory=dict)  # id -> its join's send
    leave_codes: Counter[str] = field(default_factory=Counter)
    leave_ns: list[int] = field(default_factory=list)
    mint_cpu_s: float = 0.0

    def joined(self, planned: PlannedJoin, answer: Answer, reply: JoinReply) -> None:
        """Count an accepted Join's reply."""
        self.rooms_joined.add(reply.room.name)
        self.reconnected += reply.participant.reconnected
        if reply.room.created:
            self.rooms_created += 1
            self.rooms_created_unplanned += not planned.creates_room
        elif planned.creates_room:
            self.creator_found_room += 1
        self.dispatches += len(reply.dispatches)
        for dispatch in reply.dispatches:
            if dispatch.agent_name == self.tracked_agent:
                self.accepted_ids.append(dispatch.id)
                self.dispatch_sent_ns[dispatch.id] = answer.sent_ns

    def left(self, answer: Answer) -> None:
        self.leave_codes[answer.code] += 1
        if answer.elapsed_ns is not None:
            self.leave_ns.append(answer.elapsed_ns)


class JoinSender(Sender):
    """``Sender`` whose send ``i`` is planned join ``i`` with token ``i``."""

    def __init__(
        self,
        client: HttpClient,
        options: DispatchOptions,
        plan: Sequence[PlannedJoin],
        tokens: Sequence[str],
        stats: JoinStats,
        progress: JoinProgress,
    ) -> None:
        super().__init__(client, options, progress)
        if len(plan) != stats.planned or len(tokens) != stats.planned:
            raise ValueError("the plan, its tokens and the schedule must be of one length")
        self._plan, self._tokens = plan, tokens
        self._joins = progress
        self.stats: JoinStats = stats

    def _send(self, index: int) -> None:
        sent_ns, started = time.time_ns(), time.perf_counter_ns()
        request = self._client.prepare(JOIN_PATH, b"", _authorization(self._tokens[index]))
        self._client.send(request, partial(self._joined, index, sent_ns, started))

    def _joined(self, index: int, sent_ns: int, started: int, outcome: Outcome) -> None:
        """The Join is over: count it, then leave if the plan says so."""
        planned, leaves = self._plan[index], False
        try:
            answer = _join_answer(outcome, sent_ns, started)
            self._count(planned, answer)
            leaves = planned.leaves and answer.code == OK
        finally:
            if not leaves:
                self._finished()
        if leaves:
            self._leave(self._tokens[index])

    def _leave(self, token: str) -> None:
        sent_ns, started = time.time_ns(), time.perf_counter_ns()
        request = self._client.prepare(LEAVE_PATH, b"", _authorization(token))
        self._client.send(request, partial(self._left, sent_ns, started))

    def _left(self, sent_ns: int, started: int, outcome: Outcome) -> None:
        try:
            self.stats.left(_answer(outcome, sent_ns, started)[0])
        finally:
            self._finished()

    def _count(self, planned: PlannedJoin, answer: Answer) -> None:
        stats = self.stats
        stats.codes[answer.code] += 1
        if answer.elapsed_ns is not None:
            stats.response_ns.append(answer.elapsed_ns)
            stats.join_sent_ns.append(answer.sent_ns)
        if answer.reply is None:
            self._progress.error(answer.code)
            return
        self._joins.answered(answer.elapsed_ns or 0)
        stats.joined(planned, answer, answer.reply)
