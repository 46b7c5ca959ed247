"""The one error ``loadgen`` commands report as ``error: ...`` and exit 1 on."""

from __future__ import annotations


class DispatchCommandError(RuntimeError):
    """The run could not be carried out: bad options, or the system or fleet did not start."""
