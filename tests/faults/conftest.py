"""Everything under tests/faults is marked ``faults``: ``pytest -m faults`` runs the fault
suite alone, and the default run includes it (each scenario is a short version: seconds of
load around one fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.faults)
