"""Reconciling a fault scenario: what the agents ran against what the API accepted.

Pure functions over what the harness collected (no I/O, no clock): the accepted dispatches,
the agents' recorded runs, which agent servers were killed and when, ``ListDispatch`` after
the system settled, and the reservations left in Redis.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

NS = 1_000_000_000
MS = 1_000_000
OPEN_STATUSES = frozenset({"JS_PENDING", "JS_RUNNING"})
# A run that ended ``done`` on a server killed this soon after may not have got its report
# out (the report is one round trip after the end line), so the job may rightly run again.
REPORT_GRACE_NS = 1 * NS


@dataclass(frozen=True)
class Record:
    """One line an agent process wrote: ``hello``, ``start`` or ``end``."""

    ev: str
    server: str
    pid: int
    t: int
    dispatch: str = ""
    job: str = ""
    how: str = ""


@dataclass(frozen=True)
class Accepted:
    """A dispatch the API answered 200 for: when the request was first sent and answered."""

    dispatch: str
    sent_ns: int
    accepted_ns: int


@dataclass(frozen=True)
class ListedJob:
    """One job attempt as ``ListDispatch`` shows it."""

    job: str
    status: str
    worker: str
    error: str = ""


@dataclass(frozen=True)
class Run:
    """One execution of a job on one server. ``how`` is done, cancelled, killed (no end
    line, its server was killed: it ends at the kill) or open (still running at ``end``)."""

    dispatch: str
    job: str
    server: str
    start: int
    end: int
    how: str


@dataclass(frozen=True)
class Observed:
    """Everything collected in one scenario."""

    requested: int  # dispatches the driver tried to create
    accepted: Sequence[Accepted]
    records: Sequence[Record]
    killed: Mapping[str, int]  # agent server id -> kill time (unix ns)
    alive: frozenset[str]  # agent server ids whose process still runs
    listed: Mapping[str, Sequence[ListedJob]]  # dispatch id -> jobs; absent when not listed
    reservations: Mapping[str, Mapping[str, str]]  # server id -> job id -> deadline
    end_ns: int  # when the scenario stopped looking: open runs last until here
    fault_ns: int  # when the fault was injected
    load_end_ns: int  # when the load driver sent its last new request
    # agent server id -> (from, to) unix ns: cut off from Redis, the process alive
    cut_off: Mapping[str, Sequence[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class Report:
    lost: list[str] = field(default_factory=list)
    twice: list[tuple[Run, Run]] = field(default_factory=list)
    unexplained: list[tuple[Run, Run]] = field(default_factory=list)
    stuck: list[tuple[str, str]] = field(default_factory=list)  # (dispatch, why)
    leaked: list[tuple[str, str]] = field(default_factory=list)  # (server, job)
    unlisted: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # ran or listed, never accepted
    dead_leftovers: list[tuple[str, str]] = field(default_factory=list)
    requested: int = 0
    accepted: int = 0
    runs: int = 0
    reruns: int = 0
    cancelled: int = 0
    fault_ns: int = 0
    not_succeeded: int = 0
    start_latency_ms: list[float] = field(default_factory=list)
    rerun_delay_ms: list[float] = field(default_factory=list)
    start_gap_ms: float = 0.0
    start_gap_at_ms: float = 0.0  # where the widest gap began, relative to the fault
    refusals: list[str] = field(default_factory=list)  # why requests were never accepted

    def counts(self) -> dict[str, int]:
        """The figures every scenario requires to be zero."""
        return {
            "unaccepted": self.requested - self.accepted,
            "lost": len(self.lost),
            "twice": len(self.twice),
            "unexplained": len(self.unexplained),
            "stuck": len(self.stuck),
            "leaked": len(self.leaked),
            "unlisted": len(self.unlisted),
            "strays": len(self.strays),
        }

    def show(self, run: Run) -> str:
        """A run with its times in seconds from the fault."""
        start, end = ((t - self.fault_ns) / NS for t in (run.start, run.end))
        return f"{run.job}@{run.server} [{start:+.2f} s, {end:+.2f} s) {run.how}"

    def summary(self) -> str:
        latency, delays = self.start_latency_ms, self.rerun_delay_ms
        lines = [
            f"requested={self.requested} accepted={self.accepted} runs={self.runs} "
            f"reruns={self.reruns} cancelled_runs={self.cancelled} "
            f"not_succeeded={self.not_succeeded} dead_leftovers={len(self.dead_leftovers)}",
            " ".join(f"{k}={v}" for k, v in self.counts().items()),
            f"accepted->first start: max={max(latency, default=0):.0f} ms "
            f"p99={percentile(latency, 99):.0f} ms p50={percentile(latency, 50):.0f} ms",
            f"widest gap in starts from 1 s before the fault: {self.start_gap_ms:.0f} ms "
            f"(began {self.start_gap_at_ms:+.0f} ms from the fault); "
            f"re-run after the previous run ended: max={max(delays, default=0):.0f} ms",
        ]
        show = self.show
        lines += [f"  never accepted: {why}" for why in self.refusals]
        lines += [f"  lost {d}" for d in self.lost[:10]]
        lines += [f"  twice {a.dispatch}: {show(a)} || {show(b)}" for a, b in self.twice[:10]]
        lines += [
            f"  unexplained {a.dispatch}: {show(a)} -> {show(b)}" for a, b in self.unexplained[:10]
        ]
        lines += [f"  stuck {d}: {why}" for d, why in self.stuck[:10]]
        lines += [f"  leaked {s}/{j}" for s, j in self.leaked[:10]]
        lines += [f"  unlisted {d}" for d in self.unlisted[:10]]
        lines += [f"  stray {d}" for d in self.strays[:10]]
        return "\n".join(lines)


def parse_records(lines: Iterable[str]) -> list[Record]:
    """Records from JSON lines; a torn last line (a process killed mid-write) is skipped."""
    out = []
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        out.append(Record(**{k: v for k, v in raw.items() if k in Record.__dataclass_fields__}))
    return out


def build_runs(records: Iterable[Record], killed: Mapping[str, int], end_ns: int) -> list[Run]:
    """Pair each start with the next end of the same job on the same server."""
    starts: dict[tuple[str, str], list[Record]] = defaultdict(list)
    runs = []
    for rec in sorted(records, key=lambda r: r.t):
        key = (rec.server, rec.job)
        if rec.ev == "start":
            starts[key].append(rec)
        elif rec.ev == "end" and starts[key]:
            begun = starts[key].pop(0)
            runs.append(Run(rec.dispatch, rec.job, rec.server, begun.t, rec.t, rec.how))
    for (server, _), pending in starts.items():
        for rec in pending:
            if server in killed:
                runs.append(Run(rec.dispatch, rec.job, server, rec.t, killed[server], "killed"))
            else:
                runs.append(Run(rec.dispatch, rec.job, server, rec.t, end_ns, "open"))
    return sorted(runs, key=lambda r: (r.dispatch, r.start))


def overlapping(runs: Sequence[Run]) -> list[tuple[Run, Run]]:
    """Pairs of runs (of one dispatch) whose [start, end) intervals intersect."""
    return [
        (a, b)
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if a.start < b.end and b.start < a.end
    ]


def unexplained_reruns(
    runs: Sequence[Run],
    killed: Mapping[str, int],
    cut_off: Mapping[str, Sequence[tuple[int, int]]] | None = None,
) -> list[tuple[Run, Run]]:
    """Runs that started after an earlier run of the same dispatch finished its work (``done``)
    and got its report out. Re-runs after a cancelled run, a killed server, or a run that
    ended while its server was cut off from Redis (its end could not be reported, and the
    schedulers rightly took the server for lost) are explained."""
    found = []
    for i, later in enumerate(runs):
        for earlier in runs[:i]:
            if earlier.how != "done" or earlier.end > later.start:
                continue
            if _unreported(earlier, killed, cut_off or {}):
                continue
            found.append((earlier, later))
            break
    return found


def _unreported(
    run: Run, killed: Mapping[str, int], cut_off: Mapping[str, Sequence[tuple[int, int]]]
) -> bool:
    """Whether the run's end may never have reached Redis before its server was judged lost."""
    kill = killed.get(run.server)
    if kill is not None and 0 <= kill - run.end <= REPORT_GRACE_NS:
        return True
    cuts = cut_off.get(run.server, ())
    return any(since - REPORT_GRACE_NS <= run.end <= until for since, until in cuts)


def stuck_jobs(
    listed: Mapping[str, Sequence[ListedJob]], alive: frozenset[str]
) -> list[tuple[str, str]]:
    """Dispatches whose jobs have not ended: still pending or running after the settle
    window, running on a server that is gone, or with no job at all."""
    stuck = []
    for dispatch, jobs in listed.items():
        if not jobs:
            stuck.append((dispatch, "no job"))
        for job in jobs:
            if job.status in OPEN_STATUSES:
                where = "" if job.worker in alive else " on a dead server"
                stuck.append((dispatch, f"{job.job} {job.status}{where} ({job.worker})"))
            elif job.status == "JS_FAILED" and not job.error:
                stuck.append((dispatch, f"{job.job} failed without saying why"))
    return stuck


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[index]


def widest_gap(starts: Sequence[int], since: int, until: int) -> tuple[int, int]:
    """The widest gap between consecutive starts that began within [since, until] (it may
    end later: an outage stops every start), and where it began."""
    best, at = 0, since
    for a, b in itertools.pairwise(sorted(starts)):
        if since <= a <= until and b - a > best:
            best, at = b - a, a
    return best, at


def start_latencies(accepted: Sequence[Accepted], runs: Sequence[Run]) -> list[float]:
    """Per started dispatch: accepted to first start, in ms (a start can precede the 200
    when an earlier try's reply was lost; that counts as 0)."""
    first: dict[str, int] = {}
    for run in runs:
        first[run.dispatch] = min(run.start, first.get(run.dispatch, run.start))
    return [max(0, first[a.dispatch] - a.accepted_ns) / MS for a in accepted if a.dispatch in first]


def rerun_delays(by_dispatch: Mapping[str, Sequence[Run]]) -> list[float]:
    """For every re-run, ms from the end of the run before it to its start (the time the
    job went without a runner; negative when they overlapped)."""
    return [
        (later.start - earlier.end) / MS
        for runs in by_dispatch.values()
        for earlier, later in itertools.pairwise(runs)
    ]


def _judge_runs(report: Report, by_dispatch: Mapping[str, Sequence[Run]], seen: Observed) -> None:
    accepted_ids = {a.dispatch for a in seen.accepted}
    report.lost = [a.dispatch for a in seen.accepted if a.dispatch not in by_dispatch]
    report.strays = sorted((set(by_dispatch) | set(seen.listed)) - accepted_ids)
    for runs in by_dispatch.values():
        report.reruns += len(runs) - 1
        report.cancelled += sum(1 for run in runs if run.how == "cancelled")
        report.twice += overlapping(runs)
        report.unexplained += unexplained_reruns(runs, seen.killed, seen.cut_off)
    report.rerun_delay_ms = rerun_delays(by_dispatch)


def _judge_state(report: Report, seen: Observed) -> None:
    accepted_ids = [a.dispatch for a in seen.accepted]
    listed = {d: seen.listed[d] for d in accepted_ids if d in seen.listed}
    report.unlisted = [d for d in accepted_ids if d not in listed]
    report.stuck = stuck_jobs(listed, seen.alive)
    last = [jobs[-1].status for jobs in listed.values() if jobs]
    report.not_succeeded = sum(1 for status in last if status != "JS_SUCCESS")
    for server, entries in sorted(seen.reservations.items()):
        target = report.leaked if server in seen.alive else report.dead_leftovers
        target.extend((server, job) for job in sorted(entries))


def reconcile(seen: Observed) -> Report:
    runs = build_runs(
        (r for r in seen.records if r.ev in ("start", "end")), seen.killed, seen.end_ns
    )
    by_dispatch: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_dispatch[run.dispatch].append(run)
    report = Report(requested=seen.requested, accepted=len(seen.accepted), runs=len(runs))
    report.fault_ns = seen.fault_ns
    _judge_runs(report, by_dispatch, seen)
    _judge_state(report, seen)
    report.start_latency_ms = start_latencies(seen.accepted, runs)
    # Gaps that begin in the last second of load are the load ending, not the fault.
    gap, at = widest_gap([r.start for r in runs], seen.fault_ns - NS, seen.load_end_ns - NS)
    report.start_gap_ms, report.start_gap_at_ms = gap / MS, (at - seen.fault_ns) / MS
    return report
