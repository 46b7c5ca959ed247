"""Short collector pauses for long-running processes.

A full (generation 2) collection walks every tracked object. Left alone, a scheduler
holding tens of thousands of rooms paused for 60 to 140 ms per full collection and found
nothing to free (see BENCHMARKS.md). Two things keep it short: the wire records opt out
of tracking (``gc=False`` in ``dispatcher.wire``: immutable data never forms a cycle), and
each process moves what it built while starting (modules, classes, functions) to the
permanent generation, which no collection walks again.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then exempt every surviving object from later collections."""
    gc.collect()
    gc.freeze()
