"""The demo report: one self-contained HTML file (inline CSS, inline SVG charts drawn by matplotlib in
`model_code.charts`, PNGs as data: URIs; no scripts, no network), from the demo's result
(`DemoResult.as_json()`, also `<run>/result.json`).

Sections (ids in brackets):

- summary [summary]: run, status, total time, where the MLflow store and logs are;
- timeline [timeline]: each stage, its start offset and duration (a Gantt-style SVG and a table);
- offline plan [plan]: resource count and the policy verdict;
- pipeline metrics [metrics]: the test metrics of each model version the pipeline registered;
- evaluation plots [evaluation]: the PNGs the Evaluate step wrote (`<run>/runs/<id>/steps/Evaluate/...`);
- drift [drift]: every drift-job datapoint (window, rows, verdict, alarm, retrain decision), a PSI chart
  per window, baseline-vs-current charts of each drifted feature, and the drift job's own HTML report
  embedded (`<iframe srcdoc>`, collapsed);
- challenger vs champion [comparison], promotion and the pin diff [promotion];
- serving latency [latency]: client-side latency percentiles and histogram per traffic stream, and the
  server's own counters from GET /metrics;
- lineage [lineage]: per model version: git sha, data digest, code bundle hash, model content sha256,
  MLflow run id and model version, package ARN, input data.

`render_report(result) -> str`, `write_report(result, path) -> Path`. Missing parts (a run that
stopped early) are shown as such, never fail the rendering.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from model_code import charts

SECTIONS = ("summary", "timeline", "plan", "metrics", "evaluation", "drift", "quality", "comparison", "promotion",
            "latency", "lineage")
COLORS = ("#3b6ea8", "#d9534f", "#5cb85c", "#f0ad4e", "#6f42c1", "#17a2b8")
BASE_COLOR, CURRENT_COLOR = "#7f8c9a", "#d9534f"

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:2px solid #3b6ea8;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;background:#fff}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #e3e3e3;font-size:13px;vertical-align:top}
th{background:#f0f3f7}code,pre{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow-x:auto}
.ok{color:#2e7d32;font-weight:bold}.bad{color:#c62828;font-weight:bold}.muted{color:#777}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid #e3e3e3;padding:6px}figcaption{font-size:12px;color:#555}
img.plot{width:320px;height:auto}iframe{width:100%;height:600px;border:1px solid #ddd;background:#fff}
nav a{margin-right:12px;font-size:13px}
"""


# --- small helpers -------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _hbars(labels: list[str], values: list[float], title: str, *, unit: str = "", highlight: set[str] | None = None,
           threshold: float | None = None) -> str:
    return charts.hbars(labels, values, title, unit=unit, highlight=highlight, threshold=threshold)


def _histogram(values: list[float], title: str) -> str:
    if not values:
        return f"<p class=muted>{escape(title)}: no data</p>"
    return charts.histogram(values, title)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- sections --------------------------------------------------------------------------------------------


def _summary(result: dict[str, Any]) -> str:
    status = result.get("status", "?")
    css = "ok" if status == "succeeded" else "bad"
    rows = [
        ["run", escape(str(result.get("run_id", "")))],
        ["stack", escape(str(result.get("stack", "")))],
        ["started (UTC)", escape(str(result.get("started", "")))],
        ["status", f'<span class="{css}">{escape(status)}</span>'],
        ["total time", f"{float(result.get('seconds') or 0):.1f} s"],
        ["run folder", f"<code>{escape(str(result.get('run_dir', '')))}</code>"],
        ["MLflow store", f"<code>{escape(str(result.get('mlflow_uri', '')))}</code>"],
        ["MLflow UI", f"<code>.venv/bin/mlflow ui --backend-store-uri {escape(str(result.get('mlflow_uri', '')))}"
                      "</code>"],
        ["logs", f"<code>{escape(str(result.get('logs_dir', '')))}</code>"],
    ]
    return f'<section id="summary"><h2>Summary</h2>{_table(["", ""], rows)}</section>'


def _timeline(result: dict[str, Any]) -> str:
    stages = result.get("stages") or []
    if not stages:
        return '<section id="timeline"><h2>Timeline</h2><p class=muted>no stage ran</p></section>'
    offset = 0.0
    rows, starts = [], []
    for stage in stages:
        seconds = float(stage.get("seconds") or 0)
        starts.append(offset)
        rows.append([str(stage.get("number")), escape(str(stage.get("name"))), f"{offset:.1f} s", f"{seconds:.1f} s",
                     escape(str(stage.get("status"))),
                     "<br>".join(escape(str(d)) for d in (stage.get("detail") or [])[:12])])
        offset += seconds
    chart = charts.gantt([f"{s.get('number')}. {s.get('name')}" for s in stages], starts,
                         [float(s.get("seconds") or 0) for s in stages], [s.get("status") != "ok" for s in stages],
                         "timeline")
    return ('<section id="timeline"><h2>Timeline</h2>' + chart
            + _table(["#", "stage", "start", "duration", "status", "what happened"], rows) + "</section>")


def _plan(result: dict[str, Any]) -> str:
    plan = result.get("plan") or {}
    if not plan:
        return '<section id="plan"><h2>Offline plan and policies</h2><p class=muted>not run</p></section>'
    violations = plan.get("violations") or []
    mandatory = [v for v in violations if v.get("level") == "mandatory"]
    verdict = '<span class="ok">PASS</span>' if not mandatory else '<span class="bad">FAIL</span>'
    rows = [[escape(v["level"]), escape(v["policy"]), escape(v["resource"]), escape(v["message"])] for v in violations]
    return (f'<section id="plan"><h2>Offline plan and policies (stack {escape(str(result.get("stack")))})</h2>'
            f"<p>{plan.get('resources')} resources in {len(plan.get('components') or [])} components "
            f"({escape(', '.join(plan.get('components') or []))}); policy verdict {verdict}: {len(mandatory)} "
            f"mandatory, {len(violations) - len(mandatory)} advisory violation(s).</p>"
            + (_table(["level", "policy", "resource", "message"], rows) if rows else "") + "</section>")


def _metrics(result: dict[str, Any]) -> str:
    models = result.get("models") or []
    # the problem's metrics, as the Evaluate step reported them (model_code/metrics.py, per task)
    names = (*dict.fromkeys(k for m in models for k in (m.get("metrics") or {}) if k != "rows"), "rows")
    rows = []
    for m in models:
        metrics = m.get("metrics") or {}
        cells = [_fmt(float(metrics[n])) if n in metrics else "" for n in names[:-1]]
        cells.append(f"{int(metrics.get('rows', 0)):,}")
        rows.append([escape(m["role"]), f"v{m['version']}", escape(m.get("status", "")), escape(m.get("data", "")),
                     *cells, f"{float(m.get('seconds') or 0):.1f} s"])
    body = _table(["model", "version", "status", "trained on", *names[:-1], "test rows", "pipeline time"], rows) \
        if rows else "<p class=muted>no model was trained</p>"
    return ('<section id="metrics"><h2>Pipeline metrics (test split of each run)</h2>' + body
            + "<p class=muted>Each pipeline run measures its model on the test split of its own data; the "
              "head-to-head on the same data is under <a href=\"#comparison\">challenger vs champion</a>.</p>"
              "</section>")


def evaluation_plots(run_dir: Path, execution_id: str) -> list[Path]:
    """The PNGs the Evaluate step of a local run wrote."""
    folder = run_dir / "runs" / execution_id / "steps" / "Evaluate"
    return sorted(folder.rglob("*.png")) if folder.is_dir() else []


def _evaluation(result: dict[str, Any], run_dir: Path) -> str:
    blocks = []
    for m in result.get("models") or []:
        plots = evaluation_plots(run_dir, m.get("execution_id", ""))
        figures = "".join(f'<figure><img class="plot" alt="{escape(p.stem)}" src="{_png(p)}">'
                          f"<figcaption>{escape(p.name)}</figcaption></figure>" for p in plots)
        blocks.append(f"<h3>{escape(m['role'])} v{m['version']} (run {escape(m.get('execution_id', ''))})</h3>"
                      + (f'<div class="row">{figures}</div>' if figures else "<p class=muted>no plots found</p>"))
    return ('<section id="evaluation"><h2>Evaluation plots</h2>'
            + ("".join(blocks) or "<p class=muted>no model was evaluated</p>") + "</section>")


def _load_json(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _drift(result: dict[str, Any]) -> str:
    points = result.get("datapoints") or []
    if not points:
        return '<section id="drift"><h2>Drift</h2><p class=muted>the drift job did not run</p></section>'
    rows = []
    for p in points:
        value = p.get("value")
        verdict = ('<span class="bad">drift</span>' if value else '<span class="ok">no drift</span>') \
            if value is not None else "<span class=muted>no data</span>"
        retrain = p.get("retrain") or {}
        rows.append([escape(p.get("name", "")), f"{escape(p['window_start'])} .. {escape(p['window_end'])}",
                     f"{p.get('rows', 0):,}", verdict, escape(", ".join(p.get("features_drifted") or []) or "-"),
                     escape(str(p.get("prediction_drifted"))), f"{escape(p.get('alarm_before', ''))} &rarr; "
                     f"{escape(p.get('alarm_after', ''))}",
                     escape(f"{retrain.get('action', '')}: {retrain.get('reason', '')}")])
    blocks = []
    for p in points:
        report = _load_json(p.get("report", ""))
        if report is None or report.get("status") == "no_data":
            blocks.append(f"<h3>{escape(p.get('name', ''))}</h3><p class=muted>no report data</p>")
            continue
        features = report.get("features") or {}
        names = list(features)
        psis = [float(features[n].get("psi") or 0) for n in names]
        drifted = {n for n in names if features[n].get("drifted")}
        if report.get("prediction"):
            names.append("prediction (score)")
            psis.append(float(report["prediction"].get("psi") or 0))
            if report["prediction"].get("drifted"):
                drifted.add("prediction (score)")
        figures = [_hbars(names, psis, f"PSI per feature: {p.get('name', '')}", highlight=drifted,
                         threshold=float((report.get("thresholds") or {}).get("psi") or 0.2))]
        shown = [n for n in features if features[n].get("drifted")]
        if report.get("prediction") and report["prediction"].get("drifted"):
            shown.append("prediction")
        for name in shown[:6]:
            out = report["prediction"] if name == "prediction" else features[name]
            d = out.get("distribution") or {}
            if d.get("labels"):
                figures.append(charts.paired_bars([str(x) for x in d["labels"]], d["baseline"], d["current"],
                                           f"{name}: share of values"))
        embedded = ""
        html_path = Path(p.get("report_html", ""))
        if html_path.is_file():
            embedded = (f"<details><summary>the drift job's own report ({escape(html_path.name)})</summary>"
                        f'<iframe title="drift report" sandbox srcdoc="{escape(html_path.read_text(), quote=True)}">'
                        "</iframe></details>")
        blocks.append(f"<h3>{escape(p.get('name', ''))}</h3>"
                      f'<div class="row">{"".join(f"<figure>{c}</figure>" for c in figures)}</div>{embedded}')
    return ('<section id="drift"><h2>Drift (one datapoint per drift-job run)</h2>'
            + _table(["traffic", "window (UTC)", "rows", "verdict", "features drifted", "prediction drifted",
                      "alarm", "retrain"], rows) + "".join(blocks) + "</section>")


def _quality(result: dict[str, Any]) -> str:
    """Quality per window: the labels of each window's requests joined to its capture by inference id."""
    runs = result.get("quality") or []
    if not runs:
        return '<section id="quality"><h2>Quality</h2><p class=muted>no quality job ran</p></section>'
    rows = []
    for q in runs:
        degraded = q.get("degraded")
        verdict = "<span class=muted>no labels</span>" if degraded is None else \
            ('<span class="bad">below the bar</span>' if degraded else '<span class="ok">clears the bar</span>')
        counts = ", ".join(f"{k} {v}" for k, v in (q.get("counts") or {}).items() if v) or "-"
        retrain = q.get("retrain") or {}
        rows.append([escape(q.get("name", "")), _fmt(q.get("value")), _fmt(q.get("bar")),
                     "-" if q.get("coverage") is None else f"{q['coverage']:.0%}", f"{q.get('labelled_rows', 0):,}",
                     verdict, escape(counts), f"{escape(q.get('alarm_before', ''))} &rarr; "
                     f"{escape(q.get('alarm_after', ''))}", escape(f"{retrain.get('action', '')}: "
                                                                    f"{retrain.get('reason', '')}")])
    metric = str(runs[0].get("metric", ""))
    chart = _hbars([str(q.get("name", "")) for q in runs], [float(q.get("value") or 0) for q in runs],
                   f"{metric} of labelled traffic per window (bar {_fmt(runs[0].get('bar'))})",
                   highlight={str(q.get("name", "")) for q in runs if q.get("degraded")})
    return ('<section id="quality"><h2>Quality</h2><p>Each window\'s requests carry an inference id; their labels '
            "arrive afterwards in Model Monitor's ground-truth format and the quality job joins them to the capture "
            "and re-scores with the served model. The quality alarm is evaluated M of N and may start a retrain "
            "like the drift alarm; the two share one cooldown, so one population change starts one retrain.</p>"
            + _table(["window", metric, "bar", "coverage", "labelled rows", "verdict", "join", "quality alarm",
                      "retrain"], rows)
            + f"<figure>{chart}</figure></section>")


def _comparison(result: dict[str, Any]) -> str:
    comparison = result.get("comparison") or {}
    if not comparison:
        return ('<section id="comparison"><h2>Challenger vs champion</h2><p class=muted>no comparison ran</p>'
                "</section>")
    scores = comparison.get("scores") or {}
    metrics = sorted({k for s in scores.values() for k in s})
    rows = [[escape(role), *[_fmt(s.get(k)) for k in metrics]] for role, s in scores.items()]
    metric = str(comparison.get("metric", ""))
    chart = _hbars(list(scores), [float(s.get(metric) or 0) for s in scores.values()],
                   f"{metric} on the same test split ({comparison.get('direction', 'higher')} is better)",
                   highlight={comparison.get("winner", "")})
    return (f'<section id="comparison"><h2>Challenger vs champion</h2><p>{escape(comparison.get("data", ""))}. '
            f"Winner on {escape(metric)}: <b>{escape(comparison.get('winner', ''))}</b>"
            f"{'' if comparison.get('registered', True) else ' (the challenger was not registered: see Promotion)'}"
            ".</p>"
            f'{_table(["model", *metrics], rows)}<figure>{chart}</figure></section>')


def _promotion(result: dict[str, Any]) -> str:
    promotion = result.get("promotion") or {}
    if not promotion:
        return '<section id="promotion"><h2>Promotion</h2><p class=muted>not reached</p></section>'
    if not promotion.get("promoted"):
        reason = promotion.get("reason") or "not better on the same data"
        return (f'<section id="promotion"><h2>Promotion</h2><p>Nothing promoted: {escape(reason)}.</p>'
                "</section>")
    text = ""
    if promotion.get("pin_refused"):
        text = f"<p>`mlops release promote` refused: {escape(promotion['pin_refused'])}</p>"
    elif promotion.get("diff"):
        text = (f"<p><code>mlops release promote --to prod</code> on a copy of the stack file "
                f"(<code>{escape(promotion.get('stack_file', ''))}</code>):</p><pre>{escape(promotion['diff'])}</pre>")
    return f'<section id="promotion"><h2>Promotion</h2><p>The challenger was approved.</p>{text}</section>'


def _latency(result: dict[str, Any]) -> str:
    streams = result.get("traffic") or []
    if not streams:
        return '<section id="latency"><h2>Serving latency</h2><p class=muted>no traffic was sent</p></section>'
    rows, figures = [], []
    for s in streams:
        values = [float(v) for v in s.get("latency_ms") or []]
        rows.append([escape(s.get("name", "")), f"v{s.get('model_version', '')}", str(s.get("requests", 0)),
                     f"{s.get('rows', 0):,}", escape(json.dumps(s.get("status") or {})),
                     *[f"{_percentile(values, q):.2f}" for q in (0.5, 0.9, 0.99)],
                     f"{max(values) if values else float('nan'):.2f}"])
        title = f"client latency (ms): {s.get('name', '')}"
        figures.append(f"<figure>{_histogram(values, title)}</figure>")
    server = []
    for name, m in (result.get("serving_metrics") or {}).items():
        if not m:
            continue
        requests = ", ".join(f"{escape(k)} {v:.0f}" for k, v in (m.get("requests") or {}).items())
        server.append([escape(name), requests, f"{m.get('rows_scored', 0):,}",
                       f"{m['server_mean_ms']:.2f}" if "server_mean_ms" in m else "-",
                       escape(json.dumps(m.get("capture") or {}))])
    return ('<section id="latency"><h2>Serving latency</h2>'
            "<p>Client side: one keep-alive connection, CSV requests of 1-20 rows, sequential "
            "(time from sending the request to reading the whole response).</p>"
            + _table(["traffic", "model", "requests", "rows", "status", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows)
            + f'<div class="row">{"".join(figures)}</div>'
            + ("<p>Server side (GET /metrics of the endpoint):</p>"
               + _table(["endpoint", "requests by handler and code", "rows scored", "mean /invocations ms",
                         "capture records"], server) if server else "")
            + _prometheus(result.get("prometheus") or {})
            + "</section>")


def _prometheus(scraped: dict[str, Any]) -> str:
    """What the Prometheus server that scraped the champion's endpoint answered (PromQL, instant queries)."""
    if not scraped:
        return "<p>No Prometheus server ran (no <code>prometheus</code> binary on PATH).</p>"
    if "results" not in scraped:
        return f"<p>Prometheus: {escape(scraped.get('error', 'no answer'))}</p>"
    rows = []
    for name, answers in scraped["results"].items():
        shown = "; ".join(
            ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k not in ("__name__", "job", "instance"))
            + f" {a['value']:.4g}" for a in answers) or "(no series)"
        rows.append([escape(name), f"<code>{escape(scraped['queries'][name])}</code>", escape(shown)])
    return (f"<p>Prometheus ({escape(scraped['url'])}, scraping {escape(scraped['target'])} every "
            f"{scraped['scrape_interval_s']} s) answered:</p>" + _table(["query", "PromQL", "result"], rows))


def _lineage(result: dict[str, Any]) -> str:
    rows = []
    for m in result.get("models") or []:
        lineage = m.get("lineage") or {}
        rows.append([
            f"{escape(m['role'])} v{m['version']}", f"<code>{escape(lineage.get('git_sha', ''))}</code>",
            f"<code>{escape(lineage.get('data_sha256', ''))}</code>",
            f"<code>{escape(lineage.get('code_bundle_sha256', ''))}</code>",
            f"<code>{escape(lineage.get('model_sha256', ''))}</code>",
            f"<code>{escape(lineage.get('mlflow_run_id', ''))}</code> (model version "
            f"{escape(str(m.get('mlflow_model_version', '')))})",
            f"<code>{escape(m.get('package_arn', ''))}</code>",
            f"<code>{escape(lineage.get('input_data_uri', ''))}</code>",
        ])
    body = _table(["model", "git sha", "data sha256", "code bundle sha256", "model content sha256",
                   "MLflow run", "model package", "input data"], rows) if rows else "<p class=muted>no model</p>"
    return f'<section id="lineage"><h2>Lineage of each model version</h2>{body}</section>'


# --- the page ----------------------------------------------------------------------------------------------


def render_report(result: dict[str, Any]) -> str:
    """The report page for a demo result (`DemoResult.as_json()`)."""
    run_dir = Path(str(result.get("run_dir") or "."))
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    body = "".join([
        _summary(result), _timeline(result), _plan(result), _metrics(result), _evaluation(result, run_dir),
        _drift(result), _quality(result), _comparison(result), _promotion(result), _latency(result), _lineage(result),
    ])
    title = f"mlops-stack demo {escape(str(result.get('run_id', '')))}"
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content=\"width=device-width\"><title>{title}</title><style>{CSS}</style></head>"
            f"<body><main><h1>{title}</h1><nav>{nav}</nav>{body}</main></body></html>\n")


def write_report(result: dict[str, Any], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
    return path
