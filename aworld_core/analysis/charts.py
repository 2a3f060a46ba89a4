"""Charts of a run for people: PNG bytes from the rows of the canned reports (and the per-iteration summary).

Pure functions: lists of row dicts in (as ``pa.Table.to_pylist()`` returns them), PNG bytes out, or
``None`` when there is nothing to draw. matplotlib's ``Figure`` is used directly (no pyplot: no
global state, no display; ``savefig`` renders with Agg), as in ``aworld_core.evaluation.report``.
Embed a PNG with :func:`data_uri` (HTML ``<img src=...>``) or
``aworld_core.evaluation.report.markdown_image`` (a Prefect markdown artifact).
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

__all__ = ["data_uri", "latency_chart", "reward_histogram_chart", "stop_reasons_chart", "success_reward_chart",
           "tokens_chart", "tool_chart"]

Rows = list[dict[str, Any]]
DPI = 80
# metric names of the `latency` and `tokens` reports, in display order, with their labels
LATENCY_METRICS = {"episode_total_s": "episode\ntotal", "episode_model_s": "episode\nmodel",
                   "episode_tool_s": "episode\ntools", "turn_model_latency_s": "model call\n(per turn)"}
TOKEN_METRICS = {"prompt_tokens": "prompt", "response_tokens": "response", "total_tokens": "total"}
PHASES = ("eval", "rollout")  # the phases with episodes; others (if any) follow in name order


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an ``<img src>`` (the HTML report stays one file)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _new(width: float, height: float, ncols: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: Any, top: float = 1.0) -> bytes:
    fig.tight_layout(rect=(0, 0, 1, top))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _phases(rows: Rows) -> list[str]:
    present = {r["phase"] for r in rows}
    return [p for p in PHASES if p in present] + sorted(present - set(PHASES))


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _annotate(ax: Any, bars: Any, labels: list[str], fontsize: int = 7) -> None:
    for bar, text in zip(bars, labels):
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=fontsize)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def success_reward_chart(iterations: Rows, title: str = "") -> bytes | None:
    """Success rate (%) and mean reward per iteration: held-out evaluation and rollout, as lines.

    ``iterations``: rows of :func:`aworld_core.analysis.iterations.iteration_rows` (keys ``iteration``,
    ``heldout_success``, ``rollout_success``, ``heldout_reward``, ``rollout_reward``; None = not measured).
    """
    if not iterations:
        return None
    fig, (ax_s, ax_r) = _new(9.6, 3.4, 2)
    xs = [r["iteration"] for r in iterations]
    for key, label, style in (("heldout", "held-out (eval)", "o-"), ("rollout", "rollout", "s--")):
        for ax, metric, scale in ((ax_s, "success", 100.0), (ax_r, "reward", 1.0)):
            points = [(x, scale * float(r[f"{key}_{metric}"])) for x, r in zip(xs, iterations)
                      if r.get(f"{key}_{metric}") is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
                for x, y in points:
                    ax.annotate(f"{y:.0f}" if scale == 100 else f"{y:.2f}", (x, y), textcoords="offset points",
                                xytext=(0, 5), ha="center", fontsize=7)
    ax_s.set_ylim(-2, 105)
    ax_s.set_ylabel("success rate (%)")
    ax_r.set_ylabel("mean reward")
    for ax, name in ((ax_s, "success"), (ax_r, "reward")):
        ax.set_xlabel("iteration")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.set_title(f"{name} per iteration" + (f" ({title})" if title else ""), fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _png(fig)


def reward_histogram_chart(rows: Rows) -> bytes | None:
    """Fraction of episodes per reward bucket (rows of the ``reward_distribution`` report).

    One bar series per (phase, iteration) when there are at most 6, otherwise one per phase (all
    iterations pooled)."""
    if not rows:
        return None
    per_series = len({(r["phase"], r["iteration"]) for r in rows}) <= 6
    counts: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    edges: dict[int, tuple[float, float]] = {}
    for r in sorted(rows, key=lambda r: (r["phase"], r["iteration"])):
        name = f"{r['phase']} iter {r['iteration']}" if per_series else r["phase"]
        counts[name][int(r["bucket"])] += float(r["episodes"])
        edges[int(r["bucket"])] = (float(r["reward_from"]), float(r["reward_to"]))
    buckets = sorted(edges)
    fig, (ax,) = _new(9.6, 3.4)
    width = 0.8 / len(counts)
    for i, (name, by_bucket) in enumerate(counts.items()):
        total = sum(by_bucket.values()) or 1.0
        xs = [j + (i - (len(counts) - 1) / 2) * width for j in range(len(buckets))]
        ax.bar(xs, [100 * by_bucket.get(b, 0.0) / total for b in buckets], width=width, label=name)
    ax.set_xticks(range(len(buckets)), [f"{lo:.3g}" if lo == hi else f"{lo:.3g}-{hi:.3g}"
                                        for lo, hi in (edges[b] for b in buckets)], fontsize=8)
    ax.set_xlabel("reward")
    ax.set_ylabel("% of episodes")
    ax.set_title("reward distribution", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def tool_chart(rows: Rows, top: int = 15) -> bytes | None:
    """Calls and error rate per tool name (rows of the ``tool_usage`` report; the ``top`` most called)."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: -r["calls"])[:top]
    names = [r["tool"] or "(no name)" for r in rows]
    fig, (ax_c, ax_e) = _new(9.6, 3.4, 2)
    _annotate(ax_c, ax_c.bar(names, [r["calls"] for r in rows], color="tab:blue"), [str(r["calls"]) for r in rows])
    rates = [100 * float(r["error_rate"] or 0.0) for r in rows]
    _annotate(ax_e, ax_e.bar(names, rates, color="tab:red"), [f"{v:.0f}%" for v in rates])
    ax_c.set_ylabel("calls")
    ax_c.set_title("tool calls per tool", fontsize=10)
    ax_e.set_ylabel("error rate (%)")
    ax_e.set_ylim(0, 110)
    ax_e.set_title("tool error rate per tool", fontsize=10)
    for ax in (ax_c, ax_e):
        ax.tick_params(axis="x", labelrotation=30 if len(names) > 4 else 0, labelsize=8)
    return _png(fig)


def _grouped_by_phase(rows: Rows, metrics: dict[str, str], stats: tuple[str, ...], ylabel: str, title: str,
                      log_if_spread: bool) -> bytes | None:
    phases = _phases(rows)
    if not phases:
        return None
    fig, axes = _new(4.8 * len(phases), 3.4, len(phases))
    for ax, phase in zip(axes, phases):
        by_metric = {r["metric"]: r for r in rows if r["phase"] == phase}
        names = [m for m in metrics if m in by_metric] + sorted(set(by_metric) - set(metrics))
        width = 0.8 / len(stats)
        values_all: list[float] = []
        for i, stat in enumerate(stats):
            values = [_num(by_metric[m].get(stat)) for m in names]
            values_all += [v for v in values if v is not None and v > 0]
            xs = [j + (i - (len(stats) - 1) / 2) * width for j in range(len(names))]
            bars = ax.bar(xs, [v or 0.0 for v in values], width=width, label=stat)
            _annotate(ax, bars, [_fmt(v) for v in values], fontsize=6)
        if log_if_spread and values_all and max(values_all) / min(values_all) > 100:
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)), [metrics.get(m, m) for m in names], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {phase}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(stats), fontsize=8)
    return _png(fig, top=0.92)


def latency_chart(rows: Rows) -> bytes | None:
    """p50 / p95 / p99 seconds per episode (total, model, tools) and per model call, one panel per
    phase (rows of the ``latency`` report). Log scale when values span more than 100x."""
    return _grouped_by_phase(rows, LATENCY_METRICS, ("p50", "p95", "p99"), "seconds", "latency", True)


def tokens_chart(rows: Rows) -> bytes | None:
    """Mean / p50 / p95 tokens per episode (prompt, response, total), one panel per phase (``tokens`` report)."""
    return _grouped_by_phase(rows, TOKEN_METRICS, ("mean", "p50", "p95"), "tokens per episode", "tokens", False)


def stop_reasons_chart(rows: Rows) -> bytes | None:
    """Why episodes ended: stacked % per (iteration, phase) (rows of the ``stop_reasons`` report)."""
    if not rows:
        return None
    groups = sorted({(r["iteration"], r["phase"]) for r in rows})
    reasons = sorted({r["stop_reason"] for r in rows}, key=lambda s: (s != "answer", s))
    share = {(r["iteration"], r["phase"], r["stop_reason"]): 100 * float(r["fraction"]) for r in rows}
    fig, (ax,) = _new(9.6, max(2.4, 0.9 + 0.35 * len(groups)))
    labels = [f"iter {i} {p}" for i, p in groups]
    left = [0.0] * len(groups)
    for reason in reasons:
        widths = [share.get((i, p, reason), 0.0) for i, p in groups]
        ax.barh(labels, widths, left=left, label=reason)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("% of episodes")
    ax.set_title("stop reasons", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)
