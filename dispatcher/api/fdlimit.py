"""How many connections a process can hold: its file-descriptor limit, raised first."""

from __future__ import annotations

import contextlib
import logging
import resource
from typing import Final

log = logging.getLogger(__name__)

FD_RESERVE: Final = 512  # descriptors kept for everything but client connections


def connections_within_fd_limit(wanted: int) -> int:
    """Raise the soft file-descriptor limit for ``wanted`` connections plus a reserve
    (Redis pools, logs); if the hard limit is lower, serve fewer and say so."""
    need = wanted + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    fitting = max(1, soft - FD_RESERVE)
    log.info(
        "the file-descriptor limit (%d) leaves room for %d connections, not %d",
        soft,
        fitting,
        wanted,
    )
    return fitting
