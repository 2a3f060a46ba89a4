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


def _spec(loc, run_id, url, model_dir, *, num_shards=1, shard=0, tasks=16, samples=2, latency=0.0,
          tool_faults=None, limits=LoopLimits()):
    params = {"tool_latency_s": latency, **({"tool_faults": tool_faults} if tool_faults else {})}
    return ShardSpec(run_id=run_id, iteration=0, phase="rollout", shard=shard, num_shards=num_shards,
                     env_name="arithmetic", env_params=params, env_seed=1234, split="train",
                     num_tasks=tasks, samples_per_task=samples, endpoints=(url,), served_name="policy",
                     tokenizer_dir=str(model_dir), checkpoint_id="warm", limits=limits, concurrency=8,
                     storage=loc)


def _keys(rows):
    return [(r["task_id"], r["sample_index"]) for r in rows]


def _episode_counts(loc, run_id):
    rows = RunStore(loc, run_id).read("episodes", columns=["task_id", "sample_index", "stop_reason", "error"])
    return Counter((r["task_id"], r["sample_index"]) for r in rows.to_pylist()), rows.to_pylist()


def test_dask_worker_killed_mid_shard(vllm_server, warm_model_dir, tmp_path, fault_ledger):
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
    fault_ledger.record("Dask worker SIGKILLed mid-shard", expected=32, keys=_keys(rows),
                        failed=sum(r["stop_reason"] == "error" for r in rows), outcome="shard rescheduled")
    assert len(counts) == 16 * 2, "every (task, sample) episode is stored"
    assert max(counts.values()) == 1, "and none twice"
    assert sum(s.episodes for s in summaries) == 32


def test_vllm_killed_and_restarted_mid_rollout(warm_model_dir, tmp_path, fault_ledger):
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
    failed = [r for r in rows if r["stop_reason"] == "error"]
    fault_ledger.record("vLLM server killed mid-rollout, restarted", expected=48, keys=_keys(rows),
                        failed=len(failed), outcome="requests retried; failures recorded with reason")
    assert len(counts) == 48 and max(counts.values()) == 1, "no episode disappears or repeats"
    failed = [r for r in rows if r["stop_reason"] == "error"]
    assert all(r["error"] and "no endpoint answered" in r["error"] for r in failed), "failures carry their reason"
    assert result["summary"].errors == len(failed)


def test_tools_that_hang_or_crash_become_error_observations(vllm_server, warm_model_dir, tmp_path, fault_ledger):
    """A quarter of tool calls hang forever, a quarter raise: every episode is still stored once, the
    hung calls end at agent.tool_timeout_s, and both errors are in the tool_calls table."""
    loc = StorageLocation(str(tmp_path / "runs"))
    spec = _spec(loc, "toolfaults", vllm_server.url, warm_model_dir, tasks=16, samples=2,
                 tool_faults={"hang": 0.25, "crash": 0.25}, limits=LoopLimits(tool_timeout_s=1.0))
    t0 = time.monotonic()
    summary = run_shard(spec)
    assert time.monotonic() - t0 < 120, "hung tools are cut off by the timeout, not waited for"
    counts, rows = _episode_counts(loc, "toolfaults")
    calls = RunStore(loc, "toolfaults").read("tool_calls", columns=["error"]).column("error").to_pylist()
    errors = Counter((e or "ok").split(":")[0] for e in calls)
    fault_ledger.record("tool hangs (25%) or crashes (25%)", expected=32, keys=_keys(rows),
                        failed=sum(r["stop_reason"] == "error" for r in rows),
                        outcome=f"tool call outcomes {dict(errors)}")
    assert len(counts) == 32 and max(counts.values()) == 1
    assert errors["tool calculator timed out after 1 s"] > 0 and errors["tool calculator failed"] > 0
    assert errors["ok"] > 0
    assert all(r["stop_reason"] != "error" for r in rows), "a tool fault never kills the episode"
    assert summary.episodes == 32
