"""Prefect tasks that start and stop the vLLM server(s) for a checkpoint.

The servers are subprocesses of the flow's process; their handle stays here, keyed by first port, so
the flow can stop them in a ``finally`` even when a later task fails.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aworld_core.config import RecipeConfig
from aworld_core.errors import VLLMNotReady
from aworld_core.inference.fleet import ServerFleet

_FLEETS: dict[int, ServerFleet] = {}


@task(name="serve-checkpoint", task_run_name="serve-iter-{iteration}")
def start_server(cfg: RecipeConfig, model_dir: str, iteration: int, log_dir: str) -> list[str]:
    """Start ``serve.replicas`` vLLM servers on ``model_dir``; return the endpoints the rollout uses."""
    fleet = ServerFleet(cfg.serve, Path(model_dir), served_name=cfg.model.served_name,
                        python=cfg.resolve(cfg.serve.python), log_dir=Path(log_dir),
                        log_prefix=f"vllm-iter-{iteration}")
    fleet.start()
    _FLEETS[cfg.serve.port] = fleet
    get_run_logger().info("serving %s at %s", model_dir, ", ".join(fleet.urls))
    return fleet.urls


@task(name="load-checkpoint", task_run_name="load-checkpoint-iter-{iteration}")
def load_checkpoint(cfg: RecipeConfig, model_dir: str, iteration: int, log_dir: str) -> list[str]:
    """Serve ``model_dir`` from the running fleet by loading its weights in place (``serve.reload=inplace``).

    Without a running reloadable fleet, or if loading fails, it falls back to a fresh fleet: a run never
    continues on the previous checkpoint's weights.
    """
    logger = get_run_logger()
    fleet = _FLEETS.get(cfg.serve.port)
    if fleet is not None and fleet.reloadable:
        try:
            fleet.load_checkpoint(Path(model_dir))
            logger.info("serving %s at %s (weights loaded in place)", model_dir, ", ".join(fleet.urls))
            return fleet.urls
        except VLLMNotReady as exc:
            logger.warning("in-place load failed, restarting the server instead: %s", exc)
    stop_server.fn(cfg.serve.port)
    return start_server.fn(cfg, model_dir, iteration, log_dir)


@task(name="stop-server", task_run_name="stop-server-{port}")
def stop_server(port: int) -> None:
    fleet = _FLEETS.pop(port, None)
    if fleet is not None:
        fleet.stop()


def stop_all_servers() -> None:
    """Last-resort cleanup (flow crash, Ctrl-C): never leave a vLLM server behind."""
    for port in list(_FLEETS):
        _FLEETS.pop(port).stop()
