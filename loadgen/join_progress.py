"""Live progress of a ``loadgen connect`` step: joins answered and their p99 per interval.

A Join's answer is what completes a send here, so ``Progress`` counts answered joins as
its completions; the job starts the session feeds in (``completed``) are counted apart.
"""

from __future__ import annotations

from loadgen.progress import Progress, ProgressSnapshot


class JoinProgress(Progress):
    def __init__(self, offered_rate: float) -> None:
        super().__init__(offered_rate)
        self.job_starts = 0

    def answered(self, latency_ns: int) -> None:
        """An accepted Join and its round trip."""
        self.accepted()
        super().completed(latency_ns)

    def completed(self, latency_ns: int) -> None:
        """A dispatched job started (fed by the session while the step runs)."""
        self.job_starts += 1

    def line(self) -> str:
        return format_join_line(self.snapshot(), self.job_starts)


def format_join_line(snapshot: ProgressSnapshot, job_starts: int) -> str:
    p99 = "-" if snapshot.window_p99_ms is None else f"{snapshot.window_p99_ms:.1f} ms"
    errors = snapshot.errors
    common = ", ".join(f"{code}={n}" for code, n in errors.most_common(2))
    return (
        f"{snapshot.elapsed_s:6.1f} s  sent {snapshot.sent_rate:.0f}/s"
        f" of {snapshot.offered_rate:g}/s  in flight {snapshot.in_flight}"
        f"  joined {snapshot.started}  join p99 {p99}  job starts {job_starts}"
        f"  errors {errors.total()}{f' ({common})' if common else ''}"
    )
