"""The reports' charts: matplotlib SVG, inline, deterministic, and any label is text."""

from __future__ import annotations

from model_code import charts


def test_labels_and_titles_are_text_whatever_they_hold():
    svg = charts.paired_bars(["$x^$", "a\\d", "C:\\new", "<b>"], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1],
                             "feature \\d $y$: share")
    assert svg.startswith('<svg role="img" aria-label="feature \\d $y$: share" ')
    assert "$x^$" in svg and "a\\d" in svg and "&lt;b&gt;" in svg


def test_equal_inputs_give_equal_files():
    args = (["a", "b"], [0.5, 0.5], [0.25, 0.75], "t")
    assert charts.paired_bars(*args) == charts.paired_bars(*args)
    assert charts.histogram([1.0, 2.0, 3.0], "h") == charts.histogram([1.0, 2.0, 3.0], "h")
    assert charts.gantt(["s1", "s2"], [0, 1], [1, 2], [False, True], "g").count("<svg") == 1
