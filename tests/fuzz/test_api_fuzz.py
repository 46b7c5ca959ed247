"""Every API route, fuzzed over real HTTP: whatever a client sends, the node answers with a
clean Twirp error or a success, logs no bug, leaves Redis alone when it refuses, and never
lets a bad token through (the oracle is ``oracle.py``)."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.budget import FUZZ, TIMEOUT_S
from tests.fuzz.harness import Harness
from tests.fuzz.oracle import check
from tests.fuzz.routes import ROUTES, Route


@pytest.mark.timeout(TIMEOUT_S)
@pytest.mark.parametrize("route", ROUTES, ids=str)
@FUZZ
@given(data=st.data())
def test_route_handles_any_request_cleanly(
    route: Route, harness: Harness, data: st.DataObject
) -> None:
    request = data.draw(harness.requests(route), label="request")
    exchange = harness.exchange(route, request)
    event(f"answer: {exchange.outcome()}")  # --hypothesis-show-statistics shows the mix
    check(exchange)
