"""Plots: small valid PNGs, and a clear message when matplotlib is missing."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen.hdr import IntervalHistograms
from loadgen.plot import (
    MISSING_MATPLOTLIB,
    PlotUnavailable,
    SweepPoint,
    plot_over_time,
    plot_sweep,
)
from loadgen.sweep import KneeCriteria

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 200_000
MS = 1_000_000


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_small_png(path: Path) -> None:
    assert png_size(path) == (800, 450)
    assert path.stat().st_size < MAX_BYTES


def series() -> IntervalHistograms:
    result = IntervalHistograms(1.0)
    for second in range(30):
        for i in range(50):
            result.record(second + i / 50, (1 + i % 7 + (40 if i == 49 else 0)) * MS)
    return result


def test_plot_over_time_writes_a_small_png(tmp_path: Path) -> None:
    path = tmp_path / "over-time.png"
    plot_over_time(series(), path, "dispatcher 500/s")
    assert_small_png(path)


def test_plot_over_time_of_an_empty_series(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    plot_over_time(IntervalHistograms(1.0), str(path), "nothing started")
    assert_small_png(path)


def test_plot_sweep_writes_a_small_png(tmp_path: Path) -> None:
    path = tmp_path / "sweep.png"
    points: dict[str, list[SweepPoint]] = {
        "dispatcher": [(100.0, 1.2, 5.0, 9.0), (400.0, 1.5, 9.0, 30.0), (200.0, 1.3, 6.0, 12.0)],
        "celery": [(100.0, 3.0, 20.0, 60.0), (200.0, 8.0, 90.0, 400.0)],
        "arq": [(100.0, None, None, None), (200.0, 2.0, 15.0, 40.0)],
    }
    plot_sweep(points, path, "knee search", criteria=KneeCriteria(p99_ms=40.0))
    assert_small_png(path)


def test_plot_sweep_without_points(tmp_path: Path) -> None:
    path = tmp_path / "none.png"
    plot_sweep({"dispatcher": []}, path, "no steps")
    assert_small_png(path)


@pytest.mark.parametrize("which", ["over_time", "sweep"])
def test_missing_matplotlib_says_how_to_install(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    path = tmp_path / "x.png"
    with pytest.raises(PlotUnavailable) as raised:
        if which == "over_time":
            plot_over_time(series(), path, "x")
        else:
            plot_sweep({"dispatcher": [(100.0, 1.0, 2.0, 3.0)]}, path, "x")
    assert str(raised.value) == MISSING_MATPLOTLIB
    assert MISSING_MATPLOTLIB == "--plot needs matplotlib: pip install 'agent-dispatcher[bench]'"
    assert not path.exists()


def test_importing_loadgen_modules_does_not_import_matplotlib() -> None:
    code = (
        "import sys, loadgen.plot, loadgen.hdr, loadgen.sweep, loadgen.progress; "
        "sys.exit('matplotlib' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], check=False)
    assert completed.returncode == 0
