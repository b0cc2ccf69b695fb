"""benchmarks/frontier_plot.py: which systems are on the speed-accuracy frontier, and the plot's numbered labels
clear of each other."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontier_plot import draw, frontier, plot  # noqa: E402


def test_frontier_keeps_only_undominated_points_in_speed_order() -> None:
    points = [(10.0, 0.9), (100.0, 0.7), (50.0, 0.6), (100.0, 0.5), (5.0, 0.95), (10.0, 0.9)]
    # (50, 0.6) loses to (100, 0.7); (100, 0.5) too; the two equal (10, 0.9) points keep each other
    assert frontier(points) == [4, 0, 5, 1]


def test_frontier_of_one_point_and_of_a_tie() -> None:
    assert frontier([(1.0, 0.1)]) == [0]
    assert frontier([(1.0, 0.5), (1.0, 0.4)]) == [0]


def test_plot_writes_a_png_with_every_number_clear_of_the_others(tmp_path: Path) -> None:
    from matplotlib.text import Text

    rows = [{"system": f"LexLIP row {i}", "qps": 100.0 + i, "R@10": 0.5} for i in range(12)]
    rows += [{"system": "dense flat", "qps": 1000.0, "R@10": 0.4}, {"system": "wide", "qps": 20.0, "R@10": None}]
    plot(tmp_path / "p.png", rows, 1000)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    fig = draw(rows, 1000)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, 14))  # the speed-only row has no number
    for t in numbers:
        t.update_positions(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in numbers]  # the numbers, not their leader lines
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert any("(frontier)" in t.get_text() for t in ax.get_legend().get_texts())
