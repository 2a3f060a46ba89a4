"""Per-iteration summary of a run (success, reward, tokens, latency) and its Prefect artifacts' content.

:func:`iteration_rows` is one SQL query over the DuckDB views of :func:`aworld_core.analysis.connect`;
:func:`iteration_artifacts` turns the rows into what ``tasks/artifacts.py`` publishes (a table and a
markdown text with the success/reward chart embedded). Pure, Prefect-free, unit-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from aworld_core.analysis.charts import success_reward_chart
from aworld_core.analysis.duck import sql
from aworld_core.storage.uri import StorageLocation

__all__ = ["ITERATIONS_SQL", "ITERATION_COLUMNS", "IterationArtifacts", "artifact_key", "iteration_artifacts",
           "iteration_rows", "parquet_link"]

# One row per iteration that has episodes or an evaluation. Held-out numbers come from the recipe's
# `evaluations` rows, or from the eval-phase episodes where no evaluation row is committed.
ITERATIONS_SQL = """
    WITH ep AS (
        SELECT iteration,
               count(*) FILTER (WHERE phase = 'eval')                AS eval_episodes,
               avg(success::DOUBLE) FILTER (WHERE phase = 'eval')    AS eval_success,
               avg(reward) FILTER (WHERE phase = 'eval')             AS eval_reward,
               count(*) FILTER (WHERE phase = 'rollout')             AS rollout_episodes,
               avg(success::DOUBLE) FILTER (WHERE phase = 'rollout') AS rollout_success,
               avg(reward) FILTER (WHERE phase = 'rollout')          AS rollout_reward,
               avg(total_tokens)                                     AS tokens_per_episode,
               quantile_cont(total_s, 0.50)                          AS episode_p50_s,
               quantile_cont(total_s, 0.95)                          AS episode_p95_s
        FROM episodes GROUP BY iteration),
    tu AS (
        SELECT iteration, quantile_cont(model_latency_s, 0.50) AS turn_model_p50_s,
               quantile_cont(model_latency_s, 0.95) AS turn_model_p95_s
        FROM turns GROUP BY iteration),
    ev AS (
        SELECT iteration, any_value(policy_checkpoint) AS checkpoint, sum(episodes) AS episodes,
               sum(successes) / nullif(sum(episodes), 0) AS success_rate,
               sum(mean_reward * episodes) / nullif(sum(episodes), 0) AS mean_reward
        FROM evaluations GROUP BY iteration),
    it AS (SELECT iteration FROM ep UNION SELECT iteration FROM ev)
    SELECT it.iteration, ev.checkpoint,
           coalesce(ev.episodes, ep.eval_episodes)::BIGINT      AS heldout_episodes,
           coalesce(ev.success_rate, ep.eval_success)           AS heldout_success,
           coalesce(ev.mean_reward, ep.eval_reward)             AS heldout_reward,
           coalesce(ep.rollout_episodes, 0)::BIGINT             AS rollout_episodes,
           ep.rollout_success, ep.rollout_reward, ep.tokens_per_episode,
           ep.episode_p50_s, ep.episode_p95_s, tu.turn_model_p50_s, tu.turn_model_p95_s
    FROM it LEFT JOIN ep USING (iteration) LEFT JOIN ev USING (iteration) LEFT JOIN tu USING (iteration)
    ORDER BY it.iteration"""

# the columns of iteration_rows(), in order (the Prefect table artifact shows all of them)
ITERATION_COLUMNS = ("iteration", "checkpoint", "heldout_episodes", "heldout_success", "heldout_reward",
                     "rollout_episodes", "rollout_success", "rollout_reward", "tokens_per_episode",
                     "episode_p50_s", "episode_p95_s", "turn_model_p50_s", "turn_model_p95_s")
# (key, header, format) of the markdown table (fewer columns than the table artifact: it must fit the page)
_MD_COLUMNS = (("iteration", "iteration", "{}"), ("checkpoint", "checkpoint", "`{}`"),
               ("heldout_success", "held-out success", "{:.1%}"), ("heldout_reward", "held-out reward", "{:.3f}"),
               ("rollout_success", "rollout success", "{:.1%}"), ("rollout_reward", "rollout reward", "{:.3f}"),
               ("tokens_per_episode", "tokens / episode", "{:.0f}"), ("episode_p95_s", "episode p95 (s)", "{:.2f}"))


def iteration_rows(con: duckdb.DuckDBPyConnection, evals: list[Any] | None = None) -> list[dict[str, Any]]:
    """Per iteration: held-out and rollout episodes / success / mean reward, mean tokens per episode,
    p50/p95 episode seconds and p50/p95 model-call seconds.

    ``evals``: the recipe's in-memory evaluation summaries (``recipe.EvalSummary`` or dicts with
    ``iteration, checkpoint, episodes, success_rate, mean_reward``); they fill or override the held-out
    columns (the same numbers the recipe committed). ``con``: views of one run.
    """
    rows = {r["iteration"]: r for r in sql(con, ITERATIONS_SQL).to_pylist()}
    for e in evals or []:
        get = e.get if isinstance(e, dict) else (lambda k, _e=e: getattr(_e, k, None))
        it = int(get("iteration"))
        row = rows.setdefault(it, {"iteration": it, "rollout_episodes": 0})
        row.update({"checkpoint": get("checkpoint") or row.get("checkpoint"), "heldout_episodes": get("episodes"),
                    "heldout_success": get("success_rate"), "heldout_reward": get("mean_reward")})
    return [{k: _round(rows[it].get(k)) for k in ITERATION_COLUMNS} for it in sorted(rows)]


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from ``parts``: lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    return re.sub(r"-{2,}", "-", key) or "artifact"


def parquet_link(location: StorageLocation, run_id: str) -> str:
    """Markdown naming where the run's Parquet lives: a file:// link locally, the s3:// URI (and endpoint)."""
    where = location.display(run_id)
    if location.is_s3:
        endpoint = f" at endpoint `{location.s3_endpoint_url}`" if location.s3_endpoint_url else ""
        return f"`{where}`{endpoint}"
    return f"[{where}]({Path(where).as_uri()})"


@dataclass
class IterationArtifacts:
    table: list[dict[str, Any]]  # rows for prefect.artifacts.create_table_artifact
    markdown: str  # for create_markdown_artifact: chart (embedded PNG), table, Parquet location
    chart: bytes | None  # the PNG alone (None when there are no rows)


def iteration_artifacts(run_id: str, iteration: int, rows: list[dict[str, Any]],
                     location: StorageLocation) -> IterationArtifacts:
    """What to publish after iteration ``iteration``'s evaluation (``rows`` from :func:`iteration_rows`)."""
    from aworld_core.evaluation.report import markdown_image

    chart = success_reward_chart(rows, run_id)
    lines = [f"### Run `{run_id}`: success and reward per iteration (after iteration {iteration})", ""]
    if chart is not None:
        lines += [markdown_image(chart, "success and reward per iteration"), ""]
    if rows:
        lines += ["| " + " | ".join(h for _, h, _ in _MD_COLUMNS) + " |",
                  "|" + "---:|" * len(_MD_COLUMNS)]
        for r in rows:
            cells = ["–" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in _MD_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
    else:
        lines.append("No committed episodes or evaluations yet.")
    uri_opts = f" --uri {location.uri}" + (f" --s3-endpoint {location.s3_endpoint_url}"
                                           if location.s3_endpoint_url else "")
    lines += ["", f"Trajectories (Parquet): {parquet_link(location, run_id)}", "",
              f"Full report: `aworld report {run_id}{uri_opts} --html {run_id}-report.html`"]
    return IterationArtifacts(table=rows, markdown="\n".join(lines) + "\n", chart=chart)
