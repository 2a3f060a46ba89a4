"""Context managers the flows share: the Dask cluster and the served checkpoint."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from aworld_core.config import RecipeConfig, load_config
from tasks.rollout import close_clients, rollout_shard
from tasks.serve import load_checkpoint, start_server, stop_all_servers, stop_server

log = logging.getLogger(__name__)


def config_from_params(config_path: str | None, overrides: list[str] | None, **direct: object) -> RecipeConfig:
    """Flow parameters -> validated config with a run id. ``direct`` values (not None) win."""
    extra = [f"{k}={v}" for k, v in direct.items() if v is not None]
    return load_config(config_path, list(overrides or []) + extra).with_run_id()


@contextmanager
def in_process_settings() -> Iterator[None]:
    """Prefect settings for a flow that this process calls itself, against Prefect's ephemeral API.

    No flow-run heartbeats there: they let a Prefect server mark a run crashed when its worker
    vanished, and nothing watches them in a process-local API; but leaving a flow joins the
    heartbeat thread, which sleeps in 1 s steps, so each flow call paid up to 1 s (measured: a no-op
    flow took 1.0 s to finish; the rollout flow's finish varied from 0.07 to 1.0 s). With
    PREFECT_API_URL set (a real server, deployments run by a worker) nothing changes.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@contextmanager
def dask_cluster(cfg: RecipeConfig) -> Iterator[str]:
    """Yield a scheduler address: ``dask.address`` if set, else a LocalCluster for this flow run."""
    if cfg.dask.address:
        yield cfg.dask.address
        return
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=cfg.dask.n_workers, threads_per_worker=cfg.dask.threads_per_worker,
                           processes=cfg.dask.processes, host="127.0.0.1", dashboard_address=None)
    address = cluster.scheduler_address
    try:
        yield address
    finally:
        close_clients(address)  # before the scheduler goes: no cached client left reconnecting to it
        cluster.close()


@contextmanager
def served(cfg: RecipeConfig, model_dir: Path, iteration: int, log_dir: Path) -> Iterator[list[str]]:
    """Endpoints serving ``model_dir``: a fresh local vLLM server, or the configured external fleet."""
    if cfg.serve.mode == "external":
        yield list(cfg.serve.endpoints)
        return
    urls = start_server(cfg, str(model_dir), iteration, str(log_dir))
    try:
        yield urls
    finally:
        stop_server(cfg.serve.port)


class PolicyServing:
    """The policy server(s) of one recipe run, across its iterations.

    ``serve(ckpt, i)`` returns the endpoints serving checkpoint ``ckpt``: the configured fleet
    (``serve.mode=external``), else a vLLM fleet started for the first checkpoint, into which each later
    checkpoint is loaded in place (``serve.reload``, on loopback: ~0.1 s instead of a ~35 s restart on
    2 CPU cores). ``pause()`` before training stops a fleet that is not reloaded in place: its next
    checkpoint needs a fresh server anyway, and the trainer gets what it held (e.g. GPU memory).
    """

    def __init__(self, cfg: RecipeConfig, log_dir: Path) -> None:
        self.cfg, self.log_dir = cfg, log_dir
        self.urls: list[str] | None = None

    def serve(self, ckpt: Path, iteration: int) -> list[str]:
        if self.cfg.serve.mode == "external":
            return list(self.cfg.serve.endpoints)
        if self.urls is None:
            self.urls = start_server(self.cfg, str(ckpt), iteration, str(self.log_dir))
        else:
            self.urls = load_checkpoint(self.cfg, str(ckpt), iteration, str(self.log_dir))
        return self.urls

    def pause(self) -> None:
        if self.urls is not None and not self.cfg.serve.reload_in_place:
            self.close()

    def close(self) -> None:
        if self.urls is not None:
            stop_server(self.cfg.serve.port)
            self.urls = None


def run_phase(specs: list, dask_address: str) -> list:
    """Submit one Prefect task per shard (they run concurrently) and wait for all."""
    futures = [rollout_shard.submit(spec, dask_address) for spec in specs]
    return [f.result() for f in futures]


__all__ = ["config_from_params", "in_process_settings", "dask_cluster", "served", "PolicyServing", "run_phase",
           "stop_all_servers"]
