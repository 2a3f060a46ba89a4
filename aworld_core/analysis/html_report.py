"""One self-contained HTML file about a run: charts (PNG, base64-embedded), the canned reports as tables,
where the data is and how the run was configured. What ``aworld report RUN --html OUT.html`` writes.

:func:`collect_run_report` does the I/O (DuckDB views over the committed Parquet, local or S3, plus the
run's ``config.json``); :func:`render_html` is a pure function of what it collected.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from aworld_core.analysis import charts
from aworld_core.analysis.duck import connect, sql
from aworld_core.analysis.iterations import ITERATION_COLUMNS, iteration_rows
from aworld_core.analysis.reports import REPORTS, run_report
from aworld_core.errors import AWorldError
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation

__all__ = ["EmptyRun", "RunReport", "collect_run_report", "render_html", "write_html_report"]
log = logging.getLogger(__name__)

# config keys shown at the top of the report (the whole config follows, folded)
CONFIG_SUMMARY = ("iterations", "seed", "model.path", "env.name", "env.heldout_size", "agent.max_turns",
                  "agent.temperature", "rollout.prompts_per_iteration", "rollout.samples_per_prompt",
                  "rollout.shards", "eval.episodes", "train.backend", "train.adv_estimator", "train.lr",
                  "serve.mode", "storage.uri")

# (section id, heading, chart function, canned report it draws, text when there is nothing to draw)
CHARTS: tuple[tuple[str, str, Callable[[list[dict[str, Any]]], bytes | None], str, str], ...] = (
    ("rewards", "Reward distribution", charts.reward_histogram_chart, "reward_distribution", "no rewards recorded"),
    ("tools", "Tool usage and error rate per tool", charts.tool_chart, "tool_usage", "no tool calls recorded"),
    ("latency", "Latency percentiles (p50 / p95 / p99)", charts.latency_chart, "latency", "no latencies recorded"),
    ("tokens", "Tokens per episode", charts.tokens_chart, "tokens", "no episodes recorded"),
    ("stop-reasons", "Stop reasons", charts.stop_reasons_chart, "stop_reasons", "no episodes recorded"),
)


class EmptyRun(AWorldError):
    """The run exists but has no committed episodes or evaluations: nothing to report."""


@dataclass
class RunReport:
    run_id: str
    location: str  # where the run's data is, as a person pastes it (path or s3:// URI)
    config: dict[str, Any] | None
    state: dict[str, Any] | None
    iterations: list[dict[str, Any]]
    reports: dict[str, pa.Table]  # canned report name -> its table
    commits: dict[str, int]  # committed shards per phase
    generated_at: float = field(default_factory=time.time)


def collect_run_report(location: StorageLocation, run_id: str) -> RunReport:
    """Query everything the report shows. Raises ``RunNotFound`` (unknown run), :class:`EmptyRun`
    (nothing committed yet) or ``StorageError`` (unreadable storage)."""
    con = connect(location, run_id)
    try:
        counts = sql(con, "SELECT (SELECT count(*) FROM episodes) AS episodes, "
                          "(SELECT count(*) FROM evaluations) AS evaluations").to_pylist()[0]
        if not counts["episodes"] and not counts["evaluations"]:
            raise EmptyRun(f"run {run_id!r} at {location.display(run_id)} has no committed episodes or "
                           f"evaluations yet: nothing to report (`aworld recipe status {run_id}` shows its progress)")
        reports = {name: run_report(con, name).table for name in REPORTS}
        iterations = iteration_rows(con)
        commits = {r["phase"]: r["n"] for r in
                   sql(con, "SELECT phase, count(*) AS n FROM commits GROUP BY 1 ORDER BY 1").to_pylist()}
    finally:
        con.close()
    store = RunStore(location, run_id)
    return RunReport(run_id=run_id, location=store.display(), config=store.read_json("config.json"),
                     state=store.read_json("state.json"), iterations=iterations, reports=reports, commits=commits)


def write_html_report(location: StorageLocation, run_id: str, out: str | Path) -> Path:
    """Collect and render the report of ``run_id``, write it to the local file ``out``; returns its path."""
    report = collect_run_report(location, run_id)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    log.info("wrote %s (%d KB)", path, path.stat().st_size // 1024)
    return path


# -- rendering ---------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1b1f24; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #d0d7de; padding-bottom: .2em; } h3 { font-size: 1.05em; }
.meta { color: #57606a; } code { background: #f6f8fa; padding: 0 .25em; border-radius: 3px; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .85em; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; white-space: nowrap; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eaeef2; } .empty { color: #57606a; font-style: italic; }
nav a { margin-right: 1em; } .scroll { overflow-x: auto; } details { margin: .5em 0; }
"""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _cell(v: Any) -> tuple[str, bool]:
    """(text, is_number) of one table cell."""
    if v is None:
        return "", False
    if isinstance(v, bool):
        return str(v).lower(), False
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"), True
    if isinstance(v, int):
        return (f"{v:,}" if abs(v) >= 10_000 else str(v)), True
    if isinstance(v, (list, dict)):
        text = json.dumps(v, default=str)
        return (text if len(text) <= 80 else text[:77] + "..."), False
    return str(v), False


def html_table(rows: list[dict[str, Any]], columns: list[str] | None = None, limit: int = 500) -> str:
    """Rows (dicts) as an HTML table; an italic note when there are none."""
    if not rows:
        return '<p class="empty">(no rows)</p>'
    cols = columns or list(rows[0])
    out = ['<div class="scroll"><table>', "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in cols) + "</tr>"]
    for row in rows[:limit]:
        cells = []
        for c in cols:
            text, num = _cell(row.get(c))
            cells.append(f'<td class="num">{_esc(text)}</td>' if num else f"<td>{_esc(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    if len(rows) > limit:
        out.append(f'<p class="empty">(showing {limit} of {len(rows):,} rows)</p>')
    return "\n".join(out)


def _img(png: bytes | None, alt: str, empty_text: str) -> str:
    if png is None:
        return f'<p class="empty">{_esc(empty_text)}</p>'
    return f'<img alt="{_esc(alt)}" src="{charts.data_uri(png)}">'


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def _config_section(config: dict[str, Any] | None) -> str:
    if not config:
        return '<p class="empty">no config.json stored for this run</p>'
    flat = _flatten(config)
    summary = [{"key": k, "value": json.dumps(flat[k]) if not isinstance(flat[k], str) else flat[k]}
               for k in CONFIG_SUMMARY if k in flat]
    every = [{"key": k, "value": json.dumps(v) if not isinstance(v, str) else v} for k, v in sorted(flat.items())]
    return (html_table(summary) + f"<details><summary>every setting ({len(every)})</summary>"
            + html_table(every, limit=10_000) + "</details>")


def render_html(report: RunReport) -> str:
    """The whole report as one HTML document (no external files: images are data URIs)."""
    rows = {name: table.to_pylist() for name, table in report.reports.items()}
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.generated_at))
    episodes = {r["phase"]: r["episodes"] for r in
                _sum_by(rows.get("success", []), "phase", "episodes")}
    nav = ['<a href="#iterations">iterations</a>'] + [f'<a href="#{sid}">{sid}</a>' for sid, *_ in CHARTS] + [
        '<a href="#tables">tables</a>', '<a href="#config">config</a>']
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>AWorld run {_esc(report.run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>AWorld run <code>{_esc(report.run_id)}</code></h1>",
        f'<p class="meta">storage: <code>{_esc(report.location)}</code><br>'
        f"episodes: {', '.join(f'{_esc(p)} {n:,}' for p, n in episodes.items()) or 'none'}; "
        f"committed shards: {', '.join(f'{_esc(p)} {n}' for p, n in report.commits.items()) or 'none'}"
        + (f"; completed iterations: {_esc(report.state.get('completed_iterations'))}"
           if report.state and "completed_iterations" in report.state else "")
        + f"<br>generated {_esc(generated)} by <code>aworld report {_esc(report.run_id)} --html</code></p>",
        "<nav>" + "".join(nav) + "</nav>",
        '<h2 id="iterations">Success and reward per iteration</h2>',
        '<p class="meta">held-out = the eval phase (the recipe\'s evaluation of checkpoint <i>i</i>); '
        "rollout = the training samples collected with checkpoint <i>i</i>.</p>",
        _img(charts.success_reward_chart(report.iterations), "success and reward per iteration",
             "no iterations recorded"),
        html_table(report.iterations, list(ITERATION_COLUMNS)),
    ]
    for sid, heading, chart, name, empty_text in CHARTS:
        parts += [f'<h2 id="{sid}">{_esc(heading)}</h2>', _img(chart(rows.get(name, [])), heading, empty_text)]
    parts.append('<h2 id="tables">Canned reports</h2>')
    parts.append('<p class="meta">The SQL of each is in <code>aworld_core/analysis/reports.py</code>; '
                 "run one yourself with <code>aworld report RUN --canned NAME</code> or "
                 "<code>aworld query</code>.</p>")
    for name, table_rows in rows.items():
        cols = [c for c in report.reports[name].column_names if c != "run_id"]
        parts += [f'<h3 id="table-{_esc(name)}">{_esc(name)}</h3>', html_table(table_rows, cols)]
    parts += ['<h2 id="config">Configuration</h2>', _config_section(report.config), "</body></html>"]
    return "\n".join(parts) + "\n"


def _sum_by(rows: list[dict[str, Any]], key: str, value: str) -> list[dict[str, Any]]:
    totals: dict[Any, int] = {}
    for r in rows:
        totals[r[key]] = totals.get(r[key], 0) + int(r[value] or 0)
    return [{key: k, value: v} for k, v in totals.items()]
