"""Prefect tasks that start and stop the vLLM server for a checkpoint.

The server is a subprocess of the flow's process; its handle stays here, keyed by port, so the flow
can stop it in a ``finally`` even when a later task fails.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aworld_core.config import RecipeConfig
from aworld_core.inference.server import VLLMServer

_SERVERS: dict[int, VLLMServer] = {}


@task(name="serve-checkpoint", task_run_name="serve-iter-{iteration}")
def start_server(cfg: RecipeConfig, model_dir: str, iteration: int, log_dir: str) -> list[str]:
    """Start vLLM on ``model_dir`` and return the endpoint list the rollout uses."""
    s = cfg.serve
    server = VLLMServer(Path(model_dir), python=cfg.resolve(s.python), served_name=cfg.model.served_name,
                        host=s.host, port=s.port, kv_cache_gib=s.kv_cache_gib, max_model_len=s.max_model_len,
                        startup_timeout_s=s.startup_timeout_s, extra_args=s.extra_args,
                        log_path=Path(log_dir) / f"vllm-iter-{iteration}.log")
    server.start()
    _SERVERS[s.port] = server
    get_run_logger().info("serving %s at %s", model_dir, server.url)
    return [server.url]


@task(name="stop-server", task_run_name="stop-server-{port}")
def stop_server(port: int) -> None:
    server = _SERVERS.pop(port, None)
    if server is not None:
        server.stop()


def stop_all_servers() -> None:
    """Last-resort cleanup (flow crash, Ctrl-C): never leave a vLLM server behind."""
    for port in list(_SERVERS):
        _SERVERS.pop(port).stop()
