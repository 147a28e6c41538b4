"""The drift report as one self-contained HTML page: inline CSS and SVG, no scripts, no network.

Per feature (and the score): a bar chart of baseline vs current shares over the baseline's bins
(numeric) or categories plus "(unseen)" (categorical), drawn by matplotlib as inline SVG
(`model_code.charts`), the verdict and its statistics.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from html import escape
from typing import Any

from model_code import charts

OK_COLOR = "#2e7d32"
MAX_BARS = 24


def _bars_svg(labels: list[str], baseline: list[float], current: list[float], title: str) -> str:
    """Baseline vs current shares, one row per bin/category; past MAX_BARS rows the smallest fold into one."""
    rows = list(zip(labels, baseline, current, strict=True))
    if len(rows) > MAX_BARS:   # keep the largest categories; fold the rest into one row
        order = sorted(range(len(rows)), key=lambda i: -max(rows[i][1], rows[i][2]))
        keep = sorted(order[:MAX_BARS - 1])
        rest = [rows[i] for i in order[MAX_BARS - 1:]]
        rows = [rows[i] for i in keep] + [(f"{len(rest)} others", sum(r[1] for r in rest),
                                           sum(r[2] for r in rest))]
    return charts.paired_bars([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], title)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return escape(str(x))


def _section(name: str, out: dict[str, Any]) -> str:
    verdict = "DRIFT" if out["drifted"] else "no drift"
    color = charts.CURRENT_COLOR if out["drifted"] else OK_COLOR
    m = out["missing"]
    stats = [
        ("rows", out["rows"]), ("PSI", out["psi"]),
        (f"{out['test']['name']} statistic", out["test"]["statistic"]), ("p-value", out["test"]["p_value"]),
        (out["effect"]["name"], out["effect"]["value"]),
        ("missing share", f"{m['share']:.2%} (baseline {m['baseline_share']:.2%})"),
    ]
    if out["kind"] == "numeric" and "current" in out:
        cur, base = out["current"], out["baseline"]
        stats += [("mean", f"{cur['mean']:.4g} (baseline {_fmt(base.get('mean'))})"),
                  ("std", f"{cur['std']:.4g} (baseline {_fmt(base.get('std'))})")]
    if out["kind"] == "categorical" and out.get("unseen"):
        shown = ", ".join(f"{u['value']} ({u['count']})" for u in out["unseen"][:5])
        stats.append(("unseen categories", f"{out['unseen_share']:.2%}: {shown}"))
    if "positive_rate" in out:
        base_rate = _fmt(out.get("baseline_positive_rate"))
        stats.append(("positive rate", f"{out['positive_rate']:.2%} (baseline {base_rate})"))
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in stats)
    reasons = "".join(f"<li>{escape(r)}</li>" for r in out["reasons"])
    d = out["distribution"]
    svg = _bars_svg(d["labels"], d["baseline"], d["current"], f"{name}: share of non-missing values")
    return (f'<section id="{escape(name)}"><h2>{escape(name)} <span style="color:{color}">{verdict}</span> '
            f'<small>({out["kind"]})</small></h2>'
            f'<div class="row"><div>{svg}</div><div><table>{rows}</table>'
            f'{"<ul>" + reasons + "</ul>" if reasons else ""}</div></div></section>')


def _section_of(item: tuple[str, dict[str, Any]]) -> str:
    return _section(*item)


def render_html(report: dict[str, Any], workers: int = 1) -> str:
    """The page; with `workers` > 1 the sections (a chart each, most of the time) are drawn in that many
    processes."""
    inp, win, s = report["input"], report["window"], report["summary"]
    head = (f"<p>Window {escape(str(win['start'] or '-∞'))} .. {escape(str(win['end'] or '+∞'))}; "
            f"input {escape(str(inp['uri']))}: {inp['files']} file(s), {inp['records']} record(s), "
            f"{inp['rows']} row(s), {inp['records_outside_window']} record(s) outside the window. "
            f"Baseline {escape(str(report['baseline']['path']))} ({report['baseline']['rows']} training rows).</p>")
    th = report["thresholds"]
    per_test = f" (Bonferroni: {th['p_value_per_test']:.3g} per test)" if "p_value_per_test" in th else ""
    rules = (f"<p>A feature drifts when p &lt; {th['p_value']}{per_test} and (PSI &ge; {th['psi']} or effect size "
             f"(normed Wasserstein distance / total variation) &ge; {th['min_effect']}), or when its missing "
             f"share moves by &ge; {th['missing_delta']} with that p. PSI shares are floored at "
             f"{th['psi_epsilon']}.</p>")
    if report["status"] == "no_data":
        body = "<p><strong>No data:</strong> " + escape(report["warnings"][0]) + "</p>"
        title = "no data"
    else:
        title = "DRIFT DETECTED" if report["drift_detected"] else "no drift"
        items = [*report["features"].items()]
        if report["prediction"]:
            what = "class" if report["prediction"]["kind"] == "categorical" else "score"
            items.insert(0, (f"prediction ({what})", report["prediction"]))
        summary_rows = "".join(
            f'<tr><td><a href="#{escape(n)}">{escape(n)}</a></td><td>{o["kind"]}</td>'
            f'<td>{"DRIFT" if o["drifted"] else "ok"}</td><td>{o["psi"]:.4g}</td>'
            f'<td>{o["test"]["p_value"]:.3g}</td><td>{o["effect"]["value"]:.3g}</td>'
            f'<td>{o["missing"]["share"]:.2%}</td></tr>' for n, o in items)
        warnings = "".join(f"<li>{escape(w)}</li>" for w in report["warnings"])
        body = (f"<p>{s['features_drifted']} of {s['features']} features drifted"
                f"{': ' + escape(', '.join(s['drifted'])) if s['drifted'] else ''}. Prediction: "
                f"{ {None: 'not checked', True: 'DRIFT', False: 'ok'}[s['prediction_drifted']] }.</p>"
                f"{'<ul class=warn>' + warnings + '</ul>' if warnings else ''}"
                "<table class=summary><tr><th>feature</th><th>kind</th><th>verdict</th><th>PSI</th>"
                f"<th>p-value</th><th>effect</th><th>missing</th></tr>{summary_rows}</table>"
                + "".join(_sections(items, workers)))
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>Drift report: {title}</title><style>"
            "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
            "td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd;font-size:13px}"
            ".row{display:flex;gap:24px;flex-wrap:wrap}section{margin-top:18px}"
            ".warn{color:#8a6d3b}h2 small{color:#777;font-weight:normal}"
            f"</style></head><body><h1>Drift report: {title}</h1>{head}{rules}{body}</body></html>\n")


def _sections(items: list[tuple[str, dict[str, Any]]], workers: int) -> list[str]:
    workers = min(workers, len(items))
    if workers <= 1:
        return [_section(n, o) for n, o in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:  # forked after matplotlib was imported: no import
        return list(pool.map(_section_of, items))
