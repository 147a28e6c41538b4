"""Charts as inline SVG, drawn by matplotlib, for the self-contained HTML reports (the drift job's and
the demo's). Text stays text (``svg.fonttype: none``: small, searchable, the page's font) and the
output is deterministic (no date, fixed ids), so equal reports are equal files.

Layouts are fixed, not ``tight_layout``: it would draw each figure twice, and the drift job renders
one chart per feature.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

BASE_COLOR, CURRENT_COLOR, MAIN_COLOR = "#7f8c9a", "#d9534f", "#3b6ea8"
_RC = {"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "mlops-stack", "font.size": 8,
       "axes.titlesize": 9, "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False}
_CHAR_INCHES = 0.062  # the width of one 8-point character, for a label margin that fits the labels


def svg(fig: Figure, title: str) -> str:
    """The figure as an <svg> element (no XML prolog), labelled for screen readers."""
    out = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    text = text[text.index("<svg"):]
    return text.replace("<svg ", f'<svg role="img" aria-label="{_attr(title)}" ', 1)


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _figure(width: float, rows: int, labels: Sequence[str], row_inches: float = 0.2) -> tuple[Figure, float]:
    """A figure for horizontal bars: its height grows with the rows, its left margin with the labels."""
    height = 0.55 + row_inches * max(rows, 1)
    margin = min(0.4 * width, 0.15 + _CHAR_INCHES * max((len(s) for s in labels), default=1))
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=margin / width, right=0.97, top=1 - 0.32 / height, bottom=0.2 / height)
    return fig, height


def _short(label: str, limit: int = 26) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def paired_bars(labels: Sequence[str], baseline: Sequence[float], current: Sequence[float], title: str) -> str:
    """Baseline vs current share per bin or category, one row each, the shares written beside the bars."""
    names = [_short(s) for s in labels]
    fig, _ = _figure(5.6, len(names), names, row_inches=0.24)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        rows = range(len(names))
        ax.barh([r - 0.2 for r in rows], baseline, 0.4, color=BASE_COLOR, label="baseline")
        ax.barh([r + 0.2 for r in rows], current, 0.4, color=CURRENT_COLOR, label="current")
        ax.set_yticks(list(rows), names)
        ax.invert_yaxis()
        ax.xaxis.set_visible(False)  # each bar's share is written beside it (and an axis costs a third of the draw)
        ax.spines["bottom"].set_visible(False)
        peak = max([*baseline, *current, 1e-9])
        ax.set_xlim(0, peak * 1.35)
        for r, b, c in zip(rows, baseline, current, strict=True):
            ax.text(max(b, c) + peak * 0.02, r, f"{b:.1%} / {c:.1%}", va="center", fontsize=7, color="#444")
        ax.set_title(title, loc="left")
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    return svg(fig, title)


def hbars(labels: Sequence[str], values: Sequence[float], title: str, *, unit: str = "",
          highlight: set[str] | None = None, threshold: float | None = None) -> str:
    """One bar per label (highlighted ones in the alarm colour), its value beside it; a dashed threshold."""
    names = [_short(s, 32) for s in labels]
    fig, _ = _figure(6.2, len(names), names)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        colors = [CURRENT_COLOR if highlight and s in highlight else MAIN_COLOR for s in labels]
        ax.xaxis.set_visible(False)  # each bar's value is written beside it
        ax.spines["bottom"].set_visible(False)
        ax.barh(range(len(names)), values, 0.6, color=colors)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        peak = max([*values, threshold or 0.0, 1e-9])
        ax.set_xlim(0, peak * 1.25)
        for r, v in enumerate(values):
            ax.text(v + peak * 0.02, r, f"{v:.3g}{unit}", va="center", fontsize=7)
        if threshold is not None:
            ax.axvline(threshold, color="#555", linestyle="--", linewidth=0.8)
            ax.text(threshold, -0.7, f" {threshold:g}", fontsize=7, va="bottom")
        ax.set_title(title, loc="left")
    return svg(fig, title)


def histogram(values: Sequence[float], title: str, *, unit: str = "ms", bins: int = 30) -> str:
    """Counts over [0, p99]; values above p99 fall in the last bin (labelled +)."""
    ordered = sorted(values)
    high = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] or 1.0
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(4.6, 1.9))
        fig.subplots_adjust(left=0.12, right=0.97, top=0.85, bottom=0.2)
        ax = fig.add_subplot()
        ax.hist([min(v, high) for v in values], bins=bins, range=(0, high), color=MAIN_COLOR)
        ax.set_xlabel(f"{unit} (the last bin: {high:.1f}+)")
        ax.set_title(title, loc="left")
    return svg(fig, title)


def gantt(labels: Sequence[str], starts: Sequence[float], durations: Sequence[float], failed: Sequence[bool],
          title: str) -> str:
    """One bar per stage from its start, its duration beside it; failed stages in the alarm colour."""
    names = [_short(s, 48) for s in labels]
    fig, _ = _figure(9.6, len(names), names)
    with matplotlib.rc_context(_RC):
        ax = fig.add_subplot()
        total = max([s + d for s, d in zip(starts, durations, strict=True)] + [1e-9])
        widths = [max(d, total / 400) for d in durations]  # a zero-second stage still shows
        ax.barh(range(len(names)), widths, 0.65, left=starts,
                color=[CURRENT_COLOR if f else MAIN_COLOR for f in failed])
        for r, (s, d) in enumerate(zip(starts, durations, strict=True)):
            ax.text(s + max(d, total / 400) + total * 0.005, r, f"{d:.1f} s", va="center", fontsize=7)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, total * 1.08)
        ax.set_xlabel("seconds since the start")
        ax.set_title(title, loc="left")
    return svg(fig, title)
