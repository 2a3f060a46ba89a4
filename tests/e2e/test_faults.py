"""Faults during a real rollout: nothing lost, nothing duplicated.

Each test injects one fault into a rollout against a real vLLM CPU server and checks the committed
rows: every (task, sample) episode appears exactly once, stored normally or recorded as failed with
its reason.
"""

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from aworld_core.agent.loop import LoopLimits
from aworld_core.inference.server import VLLMServer, find_free_port
from aworld_core.rollout.shard import ShardSpec, run_shard
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from testkit import VLLM_PYTHON

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def _spec(loc, run_id, url, model_dir, *, num_shards=1, shard=0, tasks=16, samples=2, latency=0.0):
    return ShardSpec(run_id=run_id, iteration=0, phase="rollout", shard=shard, num_shards=num_shards,
                     env_name="arithmetic", env_params={"tool_latency_s": latency}, env_seed=1234, split="train",
                     num_tasks=tasks, samples_per_task=samples, endpoints=(url,), served_name="policy",
                     tokenizer_dir=str(model_dir), checkpoint_id="warm", limits=LoopLimits(), concurrency=8,
                     storage=loc)


def _episode_counts(loc, run_id):
    rows = RunStore(loc, run_id).read("episodes", columns=["task_id", "sample_index", "stop_reason", "error"])
    return Counter((r["task_id"], r["sample_index"]) for r in rows.to_pylist()), rows.to_pylist()


def test_dask_worker_killed_mid_shard(vllm_server, warm_model_dir, tmp_path):
    from distributed import Client, LocalCluster

    loc = StorageLocation(str(tmp_path / "runs"))
    specs = [_spec(loc, "killworker", vllm_server.url, warm_model_dir, num_shards=2, shard=k, latency=[0.3, 0.6])
             for k in range(2)]
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        futures = [client.submit(run_shard, s, pure=False, key=f"shard-{s.shard}") for s in specs]
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = next((w for w, keys in client.processing().items() if keys), None)
            time.sleep(0.2)
        assert victim, "no shard started"
        time.sleep(1.0)  # mid-shard: episodes are in flight, nothing committed yet
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)  # the worker process dies; its nanny restarts it, Dask reschedules
        summaries = client.gather(futures)
    counts, rows = _episode_counts(loc, "killworker")
    assert len(counts) == 16 * 2, "every (task, sample) episode is stored"
    assert max(counts.values()) == 1, "and none twice"
    assert sum(s.episodes for s in summaries) == 32


def test_vllm_killed_and_restarted_mid_rollout(warm_model_dir, tmp_path):
    loc = StorageLocation(str(tmp_path / "runs"))
    port = find_free_port()
    server = VLLMServer(warm_model_dir, python=VLLM_PYTHON, port=port, log_path=tmp_path / "vllm.log")
    server.start()
    spec = _spec(loc, "killvllm", server.url, warm_model_dir, tasks=24, samples=2, latency=[0.5, 1.0])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("summary", run_shard(spec)))
    t.start()
    time.sleep(2.0)
    server.stop(grace_s=0)  # SIGTERM then SIGKILL: requests in flight fail
    server = VLLMServer(warm_model_dir, python=VLLM_PYTHON, port=port, log_path=tmp_path / "vllm2.log")
    server.start()
    try:
        t.join(timeout=300)
    finally:
        server.stop()
    assert not t.is_alive()
    counts, rows = _episode_counts(loc, "killvllm")
    assert len(counts) == 48 and max(counts.values()) == 1, "no episode disappears or repeats"
    failed = [r for r in rows if r["stop_reason"] == "error"]
    assert all(r["error"] and "no endpoint answered" in r["error"] for r in failed), "failures carry their reason"
    assert result["summary"].errors == len(failed)
