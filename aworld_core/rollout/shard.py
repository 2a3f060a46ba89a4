"""Run one shard of episodes: many in flight at once on an event loop, then one atomic commit.

A shard is the unit of orchestration (one Prefect task, one Dask task) because per-task overhead in
Prefect and Dask is milliseconds to a second (FIELD_NOTES), while an episode mostly waits on the
model and its tools. Inside the shard, ``concurrency`` episodes share one asyncio loop, so a
single Dask worker thread keeps a vLLM server's batch full.

A shard whose commit marker already exists is skipped: retrying a crashed shard, or resuming a run,
never duplicates rows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from aworld_core.agent.loop import ChatTokens, EpisodeResult, LoopLimits, load_tokenizer, run_episode
from aworld_core.envs.base import build_env
from aworld_core.inference.client import PolicyClient
from aworld_core.progress import ThrottledReporter, current_worker
from aworld_core.storage.schema import EpisodeContext, episode_tables
from aworld_core.storage.store import RunStore, ShardKey
from aworld_core.storage.uri import StorageLocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Everything a worker needs to run a shard; plain data so it pickles to any Dask worker."""

    run_id: str
    iteration: int
    phase: str  # "rollout" (train split) or "eval" (held-out split)
    shard: int
    num_shards: int
    env_name: str
    env_params: dict[str, Any]
    env_seed: int
    split: str
    num_tasks: int
    samples_per_task: int
    endpoints: tuple[str, ...]
    served_name: str
    tokenizer_dir: str
    checkpoint_id: str
    limits: LoopLimits
    concurrency: int
    storage: StorageLocation
    seed: int = 0
    task_offset: int = 0
    api_key_env: str | None = None
    max_in_flight_per_endpoint: int = 64
    request_timeout_s: float = 120.0

    @property
    def key(self) -> ShardKey:
        return ShardKey(self.iteration, self.phase, self.shard)

    def work_items(self) -> list[tuple[int, int]]:
        """(task index, sample index) pairs of this shard: round-robin over the whole phase."""
        items = [(t, s) for t in range(self.num_tasks) for s in range(self.samples_per_task)]
        return items[self.shard::self.num_shards]


@dataclass
class ShardSummary:
    shard: int
    episodes: int
    successes: int
    reward_sum: float
    response_tokens: int
    errors: int
    wall_s: float
    episode_s: float
    skipped: bool = False
    stop_reasons: dict[str, int] = field(default_factory=dict)
    commit_s: float = 0.0
    worker: str | None = None  # the Dask worker that ran the shard (its address); None outside Dask

    @classmethod
    def from_manifest(cls, m: dict[str, Any]) -> "ShardSummary":
        s = m.get("summary", {})
        return cls(shard=m["shard"], episodes=s.get("episodes", 0), successes=s.get("successes", 0),
                   reward_sum=s.get("reward_sum", 0.0), response_tokens=s.get("response_tokens", 0),
                   errors=s.get("errors", 0), wall_s=0.0, episode_s=0.0, skipped=True,
                   stop_reasons=s.get("stop_reasons", {}), worker=s.get("worker"))


ProgressFn = Callable[[EpisodeResult], None]


def worker_address() -> str | None:
    """The address of the Dask worker running this code, or None outside a Dask worker."""
    worker = current_worker()
    return worker.address if worker is not None else None


def stable_seed(*parts: object) -> int:
    """A per-episode sampling seed that is the same in every process (``hash()`` of str is not)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


async def run_shard_async(spec: ShardSpec, progress: ProgressFn | None = None) -> list[tuple[int, EpisodeResult]]:
    """Play the shard's episodes concurrently and return ``(sample_index, result)`` in work order."""
    env = build_env(spec.env_name, seed=spec.env_seed, **spec.env_params)
    items = spec.work_items()
    task_ids = sorted({t for t, _ in items})
    tasks = {i: env.tasks(spec.split, 1, offset=spec.task_offset + i)[0] for i in task_ids}
    chat = ChatTokens(load_tokenizer(spec.tokenizer_dir))
    tools = env.tools()
    api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
    gate = asyncio.Semaphore(spec.concurrency)

    async with PolicyClient(list(spec.endpoints), spec.served_name, api_key=api_key,
                            max_in_flight_per_endpoint=spec.max_in_flight_per_endpoint,
                            timeout_s=spec.request_timeout_s) as policy:

        async def one(task_index: int, sample: int) -> tuple[int, EpisodeResult]:
            async with gate:
                seed = stable_seed(spec.seed, spec.iteration, spec.phase, task_index, sample)
                r = await run_episode(policy, chat, env, tasks[task_index], tools, spec.limits, seed=seed)
            if progress is not None:
                progress(r)
            return sample, r

        return list(await asyncio.gather(*(one(t, s) for t, s in items)))


def run_shard(spec: ShardSpec, progress: ProgressFn | None = None) -> ShardSummary:
    """Run (or skip, if already committed) one shard and commit its rows. Dask-submittable."""
    store = RunStore(spec.storage, spec.run_id)
    existing = store.manifest(spec.key)
    if existing is not None:
        log.info("shard %s already committed; skipping", spec.key)
        return ShardSummary.from_manifest(existing)
    t0, started_at = time.perf_counter(), time.time()
    if progress is None:
        progress = ThrottledReporter(spec.run_id, spec.iteration, spec.phase, spec.shard, len(spec.work_items()))
    results = asyncio.run(run_shard_async(spec, progress))
    wall = time.perf_counter() - t0
    ctx = EpisodeContext(spec.run_id, spec.iteration, spec.phase, spec.shard, spec.env_name,
                         spec.checkpoint_id)
    reasons: dict[str, int] = {}
    for _, r in results:
        reasons[r.stop_reason] = reasons.get(r.stop_reason, 0) + 1
    summary = ShardSummary(
        shard=spec.shard, episodes=len(results), successes=sum(r.success for _, r in results),
        reward_sum=float(sum(r.reward for _, r in results)),
        response_tokens=sum(r.response_tokens for _, r in results),
        errors=sum(r.stop_reason == "error" for _, r in results), wall_s=wall,
        episode_s=float(sum(r.total_s for _, r in results)), stop_reasons=reasons, worker=worker_address())
    t_commit = time.perf_counter()
    store.commit_shard(spec.key, episode_tables(results, ctx), extra={"summary": {
        "episodes": summary.episodes, "successes": summary.successes, "reward_sum": summary.reward_sum,
        "response_tokens": summary.response_tokens, "errors": summary.errors, "stop_reasons": reasons,
        "wall_s": wall, "started_at": started_at, "checkpoint": spec.checkpoint_id,
        "worker": summary.worker}})
    summary.commit_s = time.perf_counter() - t_commit
    return summary
