"""GAIA evaluation flows: evaluate an OpenAI-compatible endpoint, and compare two evaluations.

``aworld_eval_gaia`` reads like what it does: check the dataset and endpoint, cut the work into
shards, run one Prefect task per shard on Dask, then report. The library does the work
(``aworld_core.evaluation.gaia_eval``); ``tasks/gaia.py`` wraps it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from prefect import flow, get_run_logger

from aworld_core.evaluation.gaia_eval import GaiaEvalConfig, new_run_id, plan_shards, preflight, write_config
from tasks.gaia import gaia_compare, gaia_report, gaia_shard
from tasks.rollout import close_clients

log = logging.getLogger(__name__)


@contextmanager
def gaia_dask(address: str | None, threads: int) -> Iterator[str]:
    """``address`` if given, else an in-process LocalCluster: shards mostly wait on HTTP and sandboxes."""
    if address:
        yield address
        return
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=max(1, threads), processes=False,
                           dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        close_clients()
        cluster.close()


def make_config(dataset: str, endpoint: str, model: str, run_id: str | None = None,
                settings: dict[str, Any] | None = None, **fields: Any) -> GaiaEvalConfig:
    """A validated config from flow/CLI parameters; ``settings`` holds nested ones (limits, cache, ...)."""
    given = {k: v for k, v in fields.items() if v is not None}
    return GaiaEvalConfig.model_validate({**(settings or {}), **given, "dataset": dataset, "endpoint": endpoint,
                                          "model": model, "run_id": run_id or new_run_id()})


@flow(name="aworld-eval-gaia", flow_run_name="gaia-{split}-{model}", log_prints=True)
def aworld_eval_gaia(dataset: str, endpoint: str, model: str, split: str = "validation",
                     levels: list[int] | None = None, task_ids: list[str] | None = None, samples: int = 1,
                     api_key_env: str | None = None, shards: int = 1, concurrency: int = 4, out: str = "runs",
                     run_id: str | None = None, dask_address: str | None = None,
                     settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``model`` at ``endpoint`` on GAIA (``samples`` per task); results under ``out/run_id/gaia``."""
    cfg = make_config(dataset, endpoint, model, run_id, settings, split=split,
                      levels=tuple(levels) if levels else None, task_ids=tuple(task_ids) if task_ids else None,
                      samples=samples, api_key_env=api_key_env, shards=shards, concurrency=concurrency,
                      storage_uri=out)
    tasks = preflight(cfg)
    specs = plan_shards(cfg, tasks)
    write_config(cfg)
    get_run_logger().info("GAIA %s: %d tasks x %d samples in %d shard(s), run %s", cfg.split, len(tasks), cfg.samples,
                          len(specs), cfg.run_id)
    with gaia_dask(dask_address, threads=min(len(specs), 16)) as address:
        futures = [gaia_shard.submit(spec, address) for spec in specs]
        summaries = [f.result() for f in futures]
    report = gaia_report(cfg)
    return {"run_id": cfg.run_id, "results": cfg.store().display(f"gaia/{cfg.split}"),
            "shards": len(summaries), "report": report}


@flow(name="aworld-compare-gaia", flow_run_name="gaia-compare-{run_a}-vs-{run_b}")
def aworld_compare_gaia(run_a: str, run_b: str, out: str = "runs", out_b: str | None = None,
                        split: str = "validation", name_a: str | None = None,
                        name_b: str | None = None) -> dict[str, Any]:
    """Side-by-side comparison of two evaluations (e.g. two checkpoints) as a Prefect artifact."""
    return gaia_compare(out, run_a, run_b, split, out_b, name_a, name_b)
