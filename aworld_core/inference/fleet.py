"""Start N vLLM replicas of one checkpoint (one per GPU on a node, or several on a CPU box).

Why a fleet: one CPU or GPU server saturates long before the rollout does, and the client already
balances over many endpoints (least outstanding requests). Replicas start concurrently because each
spends most of its start-up time in engine warm-up, and a replica that fails to start stops the others:
a half-started fleet would silently halve throughput.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aworld_core.config import ServeConfig
from aworld_core.inference.server import VLLMServer

log = logging.getLogger(__name__)


def replica_env(serve: ServeConfig, index: int) -> dict[str, str]:
    """Environment for replica ``index``: its GPU(s) when ``serve.gpu_ids`` is set, else nothing."""
    if not serve.gpu_ids:
        return {}
    return {"CUDA_VISIBLE_DEVICES": serve.gpu_ids[index % len(serve.gpu_ids)]}


class ServerFleet:
    """``serve.replicas`` servers on consecutive ports from ``serve.port``; ``urls`` lists them."""

    def __init__(self, serve: ServeConfig, model_dir: Path, *, served_name: str, python: Path,
                 log_dir: Path, log_prefix: str = "vllm") -> None:
        reloadable = serve.reload_in_place
        self.servers = [
            VLLMServer(model_dir, python=python, served_name=served_name, host=serve.host, port=serve.port + k,
                       kv_cache_gib=serve.kv_cache_gib, max_model_len=serve.max_model_len,
                       startup_timeout_s=serve.startup_timeout_s, extra_args=serve.extra_args,
                       env=replica_env(serve, k), reloadable=reloadable,
                       log_path=Path(log_dir) / (f"{log_prefix}.log" if serve.replicas == 1
                                                 else f"{log_prefix}-replica{k}.log"))
            for k in range(serve.replicas)]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self) -> "ServerFleet":
        # Launch in this thread (the servers die with their parent thread's process, see
        # VLLMServer.launch), then wait for all of them concurrently: warm-up dominates start time.
        try:
            for s in self.servers:
                s.launch()
        except BaseException:
            self.stop()
            raise
        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            futures = [pool.submit(s.wait_ready) for s in self.servers]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise failed[0]
        return self

    def load_checkpoint(self, model_dir: Path) -> None:
        """Load a new checkpoint into every replica, in place (see VLLMServer.load_checkpoint)."""
        for s in self.servers:
            s.load_checkpoint(model_dir)

    @property
    def reloadable(self) -> bool:
        return all(s.reloadable and s.running for s in self.servers)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> "ServerFleet":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
