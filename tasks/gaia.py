"""Prefect tasks for GAIA evaluation: one task per shard (run on Dask), a report, a comparison.

Thin wrappers: the work is in ``aworld_core.evaluation.gaia_eval`` and ``.report``. What lives here
is what Prefect adds: retries, names in the UI, and artifacts (the markdown table with the chart
inline as a base64 PNG). Logs carry counts only, never answers.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from aworld_core.evaluation import report as rendering
from aworld_core.evaluation.gaia_eval import (
    GaiaEvalConfig,
    GaiaShardSpec,
    GaiaShardSummary,
    load_report,
    load_results,
    run_gaia_shard,
    summarize,
    write_atomic,
    write_report,
)
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from tasks.rollout import dask_client


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:120]


@task(name="gaia-shard", task_run_name="gaia-{spec.config.run_id}-shard-{spec.shard}", retries=1,
      retry_delay_seconds=5)
def gaia_shard(spec: GaiaShardSpec, dask_address: str) -> GaiaShardSummary:
    """Run one shard as a single Dask task (a committed shard is skipped, so a retry never duplicates)."""
    client = dask_client(dask_address)
    key = f"gaia-{spec.config.run_id}-{spec.config.split}-s{spec.shard}"
    summary: GaiaShardSummary = client.submit(run_gaia_shard, spec, key=key, pure=False).result()
    get_run_logger().info("%s: %d episodes, %d of %d scored correct, %d episode errors, %d tool errors%s", key,
                          summary.episodes, summary.correct, summary.scored, summary.errors, summary.tool_errors,
                          " (already committed)" if summary.skipped else "")
    return summary


@task(name="gaia-report", task_run_name="gaia-report-{cfg.run_id}")
def gaia_report(cfg: GaiaEvalConfig) -> dict[str, Any]:
    """Summarize the committed results; store report.json/.md/.png; attach the table and chart."""
    report = summarize(load_results(cfg.location(), cfg.run_id, cfg.split), k=cfg.samples, run_id=cfg.run_id,
                       model=cfg.model, split=cfg.split)
    write_report(cfg, report)
    markdown, png = rendering.render_markdown(report), rendering.render_chart(report)
    store = cfg.store()
    write_atomic(store, f"gaia/{cfg.split}/report.md", markdown.encode())
    write_atomic(store, f"gaia/{cfg.split}/report.png", png)
    where = store.display(f"gaia/{cfg.split}")
    create_markdown_artifact(
        key=artifact_key("gaia", cfg.run_id, cfg.split),
        markdown=f"{markdown}\n{rendering.markdown_image(png, 'accuracy per level')}\n\nResults (Parquet): `{where}`\n",
        description=f"GAIA {cfg.split} of {cfg.model}")
    o = report.overall
    get_run_logger().info("GAIA %s of %s: %d/%d correct, pass@%d %s, avg@%d %s, %d tool errors", cfg.split, cfg.model,
                          o.correct, o.scored, report.k, _pct(o.pass_at_k), report.k, _pct(o.avg_at_k),
                          report.tool_errors)
    return report.model_dump()


@task(name="gaia-compare", task_run_name="gaia-compare-{run_a}-vs-{run_b}")
def gaia_compare(storage_uri: str, run_a: str, run_b: str, split: str = "validation",
                 storage_uri_b: str | None = None, name_a: str | None = None,
                 name_b: str | None = None) -> dict[str, Any]:
    """Two runs' reports side by side, as an artifact and ``compare-<a>-vs-<b>.md/.png`` under run B."""
    reports = []
    for uri, run_id in ((storage_uri, run_a), (storage_uri_b or storage_uri, run_b)):
        report = load_report(uri, run_id, split)
        if report is None:  # results without a stored report: summarize them now
            report = summarize(load_results(uri, run_id, split), run_id=run_id, split=split)
        if report.episodes == 0:
            raise ValueError(f"run {run_id!r} has no committed GAIA {split} results under {uri}")
        reports.append(report)
    comparison = rendering.compare_reports(reports[0], reports[1], name_a, name_b)
    markdown, png = rendering.render_comparison_markdown(comparison), rendering.render_comparison_chart(comparison)
    store = RunStore(StorageLocation(storage_uri_b or storage_uri), run_b)
    stem = f"gaia/{split}/compare-{artifact_key(run_a)}"
    write_atomic(store, f"{stem}.md", markdown.encode())
    write_atomic(store, f"{stem}.png", png)
    create_markdown_artifact(key=artifact_key("gaia-compare", run_a, run_b),
                             markdown=f"{markdown}\n{rendering.markdown_image(png, 'accuracy per level')}\n",
                             description=f"GAIA {split}: {run_a} vs {run_b}")
    return comparison.model_dump()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
