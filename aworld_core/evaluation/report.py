"""Render GAIA reports for people: a markdown table, a PNG bar chart, and a side-by-side comparison.

Pure functions of ``GaiaReport`` values (no I/O besides returning bytes), so the Prefect task, the CLI
and tests all show the same thing. Charts use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pydantic import BaseModel

from aworld_core.evaluation.gaia_eval import GaiaReport, LevelStats

__all__ = ["Comparison", "compare_reports", "markdown_image", "render_chart", "render_comparison_chart",
           "render_comparison_markdown", "render_markdown"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _rows(report: GaiaReport) -> list[LevelStats]:
    return [*report.levels, report.overall]


def render_markdown(report: GaiaReport, title: str | None = None) -> str:
    """The report as markdown: scores per level, then costs, stop reasons and tool errors."""
    k = report.k
    lines = [f"### {title or f'GAIA {report.split}: {report.model}'}", "",
             f"run `{report.run_id}`, {report.tasks} tasks x {k} sample(s) = {report.episodes} episodes", "",
             f"| level | tasks | episodes | correct | accuracy | pass@{k} | avg@{k} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in _rows(report):
        name = "**all**" if s.level == "all" else s.level
        lines.append(f"| {name} | {s.tasks} | {s.episodes} | {s.correct}/{s.scored} | {_pct(s.accuracy)} | "
                     f"{_pct(s.pass_at_k)} | {_pct(s.avg_at_k)} |")
    lines += ["", "| tokens (prompt / completion) | per episode | latency p50 / p95 | tool calls | tool errors |"
              " episode errors |", "|---|---|---|---:|---:|---:|",
              f"| {report.prompt_tokens:,} / {report.completion_tokens:,} | {report.mean_prompt_tokens:,.0f} / "
              f"{report.mean_completion_tokens:,.0f} | {report.latency_p50_s:.2f} s / {report.latency_p95_s:.2f} s | "
              f"{report.tool_calls} | {report.tool_errors} | {report.episode_errors} |", ""]
    lines.append("Stop reasons: " + (", ".join(f"{k_}: {v}" for k_, v in report.stop_reasons.items()) or "none"))
    if report.tool_errors_by_tool:
        lines.append("")
        lines.append("Tool errors by tool: " + ", ".join(f"`{k_}`: {v}" for k_, v in report.tool_errors_by_tool.items()))
    return "\n".join(lines) + "\n"


def _figure(levels: list[str], series: list[tuple[str, list[float | None]]], title: str) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display; savefig uses Agg

    fig = Figure(figsize=(6.4, 3.6), dpi=80)
    ax = fig.subplots()
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(levels))]
        heights = [100 * (v or 0.0) for v in values]
        bars = ax.bar(xs, heights, width=width, label=name)
        for bar, v in zip(bars, values):
            ax.annotate("n/a" if v is None else f"{100 * v:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(levels)), [f"level {lv}" if lv != "all" else "all" for lv in levels])
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def render_chart(report: GaiaReport) -> bytes:
    """PNG bytes: accuracy and pass@k per level and overall."""
    rows = _rows(report)
    return _figure([s.level for s in rows],
                   [("accuracy", [s.accuracy for s in rows]), (f"pass@{report.k}", [s.pass_at_k for s in rows])],
                   f"GAIA {report.split}: {report.model} ({report.run_id})")


def markdown_image(png: bytes, alt: str = "chart") -> str:
    """A markdown image with the PNG inline as a base64 data URI (Prefect artifacts render it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


class Comparison(BaseModel):
    """Two runs side by side. ``only_a``/``only_b``: task ids solved (any sample) by one run only."""

    name_a: str
    name_b: str
    rows: list[dict[str, Any]]
    only_a: list[str]
    only_b: list[str]
    a: GaiaReport
    b: GaiaReport


def compare_reports(a: GaiaReport, b: GaiaReport, name_a: str | None = None, name_b: str | None = None) -> Comparison:
    """Per level: accuracy and pass@k of both runs and the difference (b - a), on the levels either has."""
    la = {s.level: s for s in _rows(a)}
    lb = {s.level: s for s in _rows(b)}
    order = sorted((set(la) | set(lb)) - {"all"}) + ["all"]
    rows = []
    for level in order:
        sa, sb = la.get(level), lb.get(level)
        acc_a, acc_b = (sa.accuracy if sa else None), (sb.accuracy if sb else None)
        pk_a, pk_b = (sa.pass_at_k if sa else None), (sb.pass_at_k if sb else None)
        rows.append({"level": level, "accuracy_a": acc_a, "accuracy_b": acc_b,
                     "accuracy_delta": None if acc_a is None or acc_b is None else acc_b - acc_a,
                     "pass_at_k_a": pk_a, "pass_at_k_b": pk_b,
                     "pass_at_k_delta": None if pk_a is None or pk_b is None else pk_b - pk_a})
    solved_a = {t for t, f in a.per_task.items() if f}
    solved_b = {t for t, f in b.per_task.items() if f}
    common = set(a.per_task) & set(b.per_task)
    return Comparison(name_a=name_a or a.run_id, name_b=name_b or b.run_id, rows=rows,
                      only_a=sorted((solved_a - solved_b) & common), only_b=sorted((solved_b - solved_a) & common),
                      a=a, b=b)


def _delta(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def render_comparison_markdown(c: Comparison) -> str:
    a, b = c.a, c.b
    lines = [f"### GAIA {a.split}: `{c.name_a}` vs `{c.name_b}`", "",
             f"| level | accuracy {c.name_a} | accuracy {c.name_b} | Δ (points) | pass@{a.k} {c.name_a} | "
             f"pass@{b.k} {c.name_b} | Δ (points) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in c.rows:
        name = "**all**" if r["level"] == "all" else r["level"]
        lines.append(f"| {name} | {_pct(r['accuracy_a'])} | {_pct(r['accuracy_b'])} | {_delta(r['accuracy_delta'])} | "
                     f"{_pct(r['pass_at_k_a'])} | {_pct(r['pass_at_k_b'])} | {_delta(r['pass_at_k_delta'])} |")
    lines += ["", f"| | {c.name_a} | {c.name_b} |", "|---|---:|---:|",
              f"| model | {a.model} | {b.model} |",
              f"| episodes | {a.episodes} | {b.episodes} |",
              f"| tokens per episode (prompt / completion) | {a.mean_prompt_tokens:,.0f} / {a.mean_completion_tokens:,.0f} "
              f"| {b.mean_prompt_tokens:,.0f} / {b.mean_completion_tokens:,.0f} |",
              f"| latency p50 / p95 | {a.latency_p50_s:.2f} s / {a.latency_p95_s:.2f} s | "
              f"{b.latency_p50_s:.2f} s / {b.latency_p95_s:.2f} s |",
              f"| tool errors | {a.tool_errors} | {b.tool_errors} |", "",
              f"Solved only by {c.name_a}: {len(c.only_a)} task(s); only by {c.name_b}: {len(c.only_b)} task(s)."]
    return "\n".join(lines) + "\n"


def render_comparison_chart(c: Comparison) -> bytes:
    levels = [r["level"] for r in c.rows]
    return _figure(levels, [(f"{c.name_a}", [r["accuracy_a"] for r in c.rows]),
                            (f"{c.name_b}", [r["accuracy_b"] for r in c.rows])],
                   f"GAIA {c.a.split} accuracy: {c.name_a} vs {c.name_b}")
