"""Canned reports: named SQL over the views of :func:`aworld_core.analysis.connect`.

Each report is one SQL string in :data:`REPORTS`; add one by adding an entry. Every report groups by
``run_id`` so it works over one run or all runs, and returns no rows (never an error) for a run with
no committed rows. Timings on 1M turns: benchmarks/storage.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from aworld_core.analysis.duck import QueryError, connect, sql
from aworld_core.storage.uri import StorageLocation

REWARD_BUCKETS = 10

REPORTS: dict[str, str] = {
    # Success and reward per iteration and phase (rollout = training samples, eval = held-out).
    "success": """
        SELECT run_id, iteration, phase,
               count(*)                                  AS episodes,
               count(*) FILTER (WHERE success)           AS successes,
               avg(success::DOUBLE)                      AS success_rate,
               avg(reward)                               AS mean_reward,
               stddev_samp(reward)                       AS std_reward,
               avg(num_turns)                            AS mean_turns,
               count(*) FILTER (WHERE error IS NOT NULL) AS episode_errors
        FROM episodes
        GROUP BY run_id, iteration, phase
        ORDER BY run_id, iteration, phase""",
    # Held-out evaluations as committed by the recipe (one row per iteration).
    "evaluations": """
        SELECT run_id, iteration, policy_checkpoint, split, episodes, successes, success_rate,
               mean_reward, temperature
        FROM evaluations
        ORDER BY run_id, iteration""",
    # Reward histogram: REWARD_BUCKETS equal-width buckets over [min, max] of all rewards.
    "reward_distribution": f"""
        WITH bounds AS (SELECT min(reward) AS lo, max(reward) AS hi FROM episodes),
        bucketed AS (
            SELECT e.run_id, e.iteration, e.phase, b.lo, b.hi,
                   CASE WHEN b.hi = b.lo THEN 0
                        ELSE least(floor((e.reward - b.lo) / (b.hi - b.lo) * {REWARD_BUCKETS}),
                                   {REWARD_BUCKETS - 1})::INTEGER END AS bucket
            FROM episodes e, bounds b
            WHERE e.reward IS NOT NULL)
        SELECT run_id, iteration, phase, bucket,
               lo + bucket * (hi - lo) / {REWARD_BUCKETS}                                   AS reward_from,
               CASE WHEN hi = lo THEN hi ELSE lo + (bucket + 1) * (hi - lo) / {REWARD_BUCKETS} END AS reward_to,
               count(*)                                                                     AS episodes,
               count(*) / sum(count(*)) OVER (PARTITION BY run_id, iteration, phase)        AS fraction
        FROM bucketed
        GROUP BY run_id, iteration, phase, bucket, lo, hi
        ORDER BY run_id, iteration, phase, bucket""",
    # Calls and error rate per tool name (unknown names the model made up show up here too).
    "tool_usage": """
        SELECT run_id, name AS tool,
               count(*)                                          AS calls,
               count(error)                                      AS errors,
               count(error) / count(*)                           AS error_rate,
               avg(latency_s)                                    AS mean_latency_s,
               quantile_cont(latency_s, 0.95)                    AS p95_latency_s
        FROM tool_calls
        GROUP BY run_id, name
        ORDER BY run_id, calls DESC, tool""",
    # Latency percentiles: per episode (total, model, tool seconds) and per model call (turn).
    "latency": """
        WITH samples AS (
            SELECT run_id, phase, metric, v FROM (
                UNPIVOT (SELECT run_id, phase, total_s, model_s, tool_s FROM episodes)
                ON total_s AS 'episode_total_s', model_s AS 'episode_model_s', tool_s AS 'episode_tool_s'
                INTO NAME metric VALUE v)
            UNION ALL
            SELECT run_id, phase, 'turn_model_latency_s' AS metric, model_latency_s AS v FROM turns)
        SELECT run_id, phase, metric, count(v) AS n, avg(v) AS mean,
               quantile_cont(v, 0.50) AS p50, quantile_cont(v, 0.95) AS p95,
               quantile_cont(v, 0.99) AS p99, max(v) AS max
        FROM samples
        GROUP BY run_id, phase, metric
        ORDER BY run_id, phase, metric""",
    # Tokens per episode.
    "tokens": """
        SELECT run_id, phase, metric, count(v) AS episodes, avg(v) AS mean,
               quantile_cont(v, 0.50) AS p50, quantile_cont(v, 0.95) AS p95, max(v) AS max
        FROM (UNPIVOT (SELECT run_id, phase, prompt_tokens, response_tokens, total_tokens FROM episodes)
              ON prompt_tokens, response_tokens, total_tokens INTO NAME metric VALUE v)
        GROUP BY run_id, phase, metric
        ORDER BY run_id, phase, metric""",
    # Why episodes ended (answer, no_action, max_turns, max_new_tokens, max_total_tokens, error).
    "stop_reasons": """
        SELECT run_id, iteration, phase, coalesce(stop_reason, '(null)') AS stop_reason,
               count(*) AS episodes,
               count(*) / sum(count(*)) OVER (PARTITION BY run_id, iteration, phase) AS fraction
        FROM episodes
        GROUP BY run_id, iteration, phase, stop_reason
        ORDER BY run_id, iteration, phase, episodes DESC, stop_reason""",
}


@dataclass
class ReportResult:
    name: str
    table: pa.Table
    seconds: float


def resolve_names(names: str | list[str] | None) -> list[str]:
    """``None``/``"all"`` -> every report; otherwise the given names, checked."""
    if names is None or names == "all" or names == ["all"]:
        return list(REPORTS)
    wanted = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in REPORTS]
    if unknown:
        raise QueryError(f"unknown report(s) {unknown}; known: {', '.join(REPORTS)} (or 'all')")
    return wanted


def run_report(con: duckdb.DuckDBPyConnection, name: str) -> ReportResult:
    (name,) = resolve_names(name)
    t0 = time.perf_counter()
    table = sql(con, REPORTS[name])
    return ReportResult(name, table, time.perf_counter() - t0)


def run_reports(location: StorageLocation, run_id: str | None,
                names: str | list[str] | None = None) -> list[ReportResult]:
    """Run the named canned reports (default: all) over one run, or every run when ``run_id`` is None."""
    wanted = resolve_names(names)
    con = connect(location, run_id)
    try:
        return [run_report(con, n) for n in wanted]
    finally:
        con.close()
