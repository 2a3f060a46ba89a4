"""The AWorld recipe, one screen: serve -> evaluate -> roll out -> store -> train -> next iteration.

One vLLM server serves the whole run: each iteration's new checkpoint is loaded into it in place
(``serve.reload``), so an iteration pays no server start.

Every stage is resumable: shards, evaluations and checkpoints that a run already committed are
skipped, so ``aworld recipe resume RUN`` (or re-running with the same ``run_id``) continues where a
crash stopped it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from aworld_core import recipe
from flows.common import PolicyServing, config_from_params, dask_cluster, run_phase, stop_all_servers
from tasks.artifacts import publish_iteration_artifacts
from tasks.evaluate import summarize
from tasks.train import prepare_model, train


@flow(name="aworld-recipe", flow_run_name="recipe-{run_id}", log_prints=True)
def aworld_recipe(config_path: str | None = "configs/local.yaml", overrides: list[str] | None = None,
                  iterations: int | None = None, run_id: str | None = None) -> dict[str, Any]:
    cfg = config_from_params(config_path, overrides, iterations=iterations, run_id=run_id)
    logger = get_run_logger()
    store = recipe.run_store(cfg)
    store.write_json("config.json", cfg.model_dump(mode="json"))
    logs = Path(recipe.checkpoint_dir(cfg, 0)).parent.parent / "logs"
    logger.info("run %s -> %s", cfg.run_id, store.display())
    evals: list[recipe.EvalSummary] = []
    trains: list[dict[str, Any]] = []
    warm = prepare_model(cfg)
    serving = PolicyServing(cfg, logs)
    try:
        with dask_cluster(cfg) as dask_address:
            for i in range(cfg.iterations + 1):
                ckpt = recipe.checkpoint_dir(cfg, i)
                tokenizer_dir = ckpt
                endpoints = serving.serve(ckpt, i)
                shards = run_phase(recipe.shard_specs(cfg, i, recipe.EVAL_PHASE, endpoints, tokenizer_dir),
                                   dask_address)
                evals.append(summarize(cfg, i, shards))
                publish_iteration_artifacts(cfg, i, evals)  # table + chart in the Prefect UI
                if i == cfg.iterations:
                    break
                run_phase(recipe.shard_specs(cfg, i, recipe.ROLLOUT_PHASE, endpoints, tokenizer_dir), dask_address)
                serving.pause()
                trains.append(train(cfg, i))
                store.write_json("state.json", {"completed_iterations": i + 1})
    finally:
        serving.close()
        stop_all_servers()
    result = {"run_id": cfg.run_id, "data": store.display(), "warm_start": warm,
              "evaluations": [e.__dict__ for e in evals], "training": trains,
              "checkpoints": [str(recipe.checkpoint_dir(cfg, i)) for i in range(cfg.iterations + 1)]}
    store.write_json("summary.json", result)
    return result
