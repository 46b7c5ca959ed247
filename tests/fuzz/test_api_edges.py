"""The edge cases of ``edges.py``, sent to every route on every run, judged by the same
oracle as the fuzzed requests."""

from __future__ import annotations

import pytest

from tests.fuzz.edges import Edge, edges
from tests.fuzz.harness import Harness
from tests.fuzz.oracle import check


@pytest.mark.parametrize("edge", edges(), ids=str)
def test_route_handles_edge_case_cleanly(edge: Edge, harness: Harness) -> None:
    check(harness.exchange(edge.route, edge.request))
