"""Table 2's picture: speed against accuracy, every system named beside its point, the frontier drawn.

The frontier is the set of systems no other system beats on both axes (more queries per second *and* a higher R@10);
it is drawn as a staircase, so a reader sees at a glance which rows are worth running. Labels are placed one by one,
each at the first of a ring of offsets where it overlaps no label or point already on the figure (a leader line joins
a label set further out to its point)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FAMILIES = {"LexLIP": "tab:blue", "dense": "tab:orange", "BM25": "tab:green"}
OFFSETS = [(6.0, 4.0), (6.0, -12.0), (-6.0, 4.0), (-6.0, -12.0)] + [
    (round(7 * r * math.cos(a * math.pi / 6), 1), round(7 * r * math.sin(a * math.pi / 6), 1))
    for r in range(2, 16)
    for a in range(12)
]
"""Where a label may go, in points from its marker: the four corners first, then a widening ring of 12 directions."""


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (x and y both at least as large, one larger), by x."""
    kept = [
        i
        for i, (x, y) in enumerate(points)
        if not any((ox >= x and oy >= y) and (ox > x or oy > y) for ox, oy in points)
    ]
    return sorted(kept, key=lambda i: points[i][0])


def family_colour(system: str) -> str:
    for prefix, colour in FAMILIES.items():
        if system.startswith(prefix):
            return colour
    return "tab:gray"


def _overlaps(box: Any, boxes: list[Any]) -> bool:
    return any(box.overlaps(other) for other in boxes)


def place_labels(fig: Any, ax: Any, points: Sequence[tuple[float, float]], labels: Sequence[str]) -> None:
    """Each label at the first offset (points) where its box meets no earlier label and no marker."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 4, py - 4, px + 4, py + 4))
    for (x, y), label in zip(points, labels, strict=True):
        for dx, dy in OFFSETS:
            text = ax.annotate(
                label,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=7,
                ha="left" if dx >= 0 else "right",
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if math.hypot(dx, dy) > 14 else None,
            )
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer).padded(2)  # the words only, not the leader line
            if not _overlaps(box, taken) or (dx, dy) == OFFSETS[-1]:
                taken.append(box)
                break
            text.remove()


def plot(path: Path, rows: Sequence[dict[str, Any]], n: int, metric: str = "R@10") -> None:
    """Draw the figure (`draw`) and write it to `path` as a PNG."""
    import matplotlib.pyplot as plt

    fig = draw(rows, n, metric)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw(rows: Sequence[dict[str, Any]], n: int, metric: str = "R@10") -> Any:
    """QPS (log) against `metric` for every row with a quality figure: each point numbered (numbers placed clear of
    each other), the numbered names listed beside the axes with frontier systems marked, the frontier as a dashed
    staircase; rows without the figure (speed only) as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.get(metric) is not None]
    points = [(float(r["qps"]), float(r[metric])) for r in shown]
    best = frontier(points)
    fig, ax = plt.subplots(figsize=(13, 6.5))
    for i, (r, (x, y)) in enumerate(zip(shown, points, strict=True)):
        on = i in best
        star = "  (frontier)" if on else ""
        ax.scatter(
            x,
            y,
            s=54 if on else 28,
            color=family_colour(r["system"]),
            edgecolors="black" if on else "none",
            label=f"{i + 1}. {r['system']}{star}",
        )
    if best:
        xs = [points[i][0] for i in best]
        ys = [points[i][1] for i in best]
        stairs_x, stairs_y = [xs[0]], [ys[0]]
        for x, y in zip(xs[1:], ys[1:], strict=True):
            stairs_x += [stairs_x[-1], x]  # down at the slower point, then across to the faster one
            stairs_y += [y, y]
        ax.plot(stairs_x, stairs_y, ls="--", lw=1, color="0.35")
    for r in rows:
        if r.get(metric) is None:  # speed-only rows: a vertical line where their QPS is
            ax.axvline(float(r["qps"]), ls=":", lw=1, color="0.4")
            ax.annotate(
                r["system"],
                (float(r["qps"]), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=7,
                rotation=90,
                va="top",
                color="0.3",
            )
    ax.set_xscale("log")
    ax.set_xlabel("queries per second, one client (log scale)")
    ax.set_ylabel(f"text-to-image {metric}")
    ax.set_title(
        f"Speed against {metric}, {n:,} images: blue LexLIP, orange dense, green BM25; "
        "ringed and dashed: the frontier (nothing is both faster and better)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.margins(x=0.12, y=0.1)
    fig.tight_layout()
    place_labels(fig, ax, points, [str(i + 1) for i in range(len(shown))])
    return fig
