"""Scale-out on a real Dask deployment, started the way the README tells a cluster user to.

A ``dask scheduler`` and two ``dask worker`` processes on loopback, the rollout flow pointed at the
scheduler with ``dask.address`` and at the session's vLLM server with ``serve.mode=external``. Checks:
every episode is stored exactly once, and the shards ran on both worker processes (each shard's
manifest records the address of the Dask worker that ran it).
"""

import os
import subprocess
from collections import Counter

import pytest

from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from testkit import REPO, free_port, stop_process_group

pytestmark = pytest.mark.slow

DASK = str(REPO / ".venv/bin/dask")
PROMPTS, SAMPLES, SHARDS = 8, 2, 4


@pytest.fixture
def dask_deployment(tmp_path, clean_env):
    """A scheduler and two single-process workers (4 threads each) as subprocesses; yields
    ``(scheduler address, {worker address: worker pid})``."""
    from distributed import Client

    from tasks.rollout import close_clients

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, *args: str) -> None:
        logs.append(open(tmp_path / f"{name}.log", "wb"))
        procs.append(subprocess.Popen([DASK, *args], cwd=REPO, stdout=logs[-1], stderr=subprocess.STDOUT,
                                      start_new_session=True))  # own process group: nanny + worker

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        for i in range(2):
            start(f"worker-{i}", "worker", address, "--nworkers", "1", "--nthreads", "4", "--no-dashboard",
                  "--host", "127.0.0.1")
        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            pids = client.run(os.getpid)  # library functions only: workers cannot import test modules
        assert len(pids) == 2 and len(set(pids.values())) == 2, f"two worker processes, got {pids}"
        yield address, pids
    finally:
        close_clients(address)  # the flow's cached client to this scheduler, before the scheduler goes
        for proc in reversed(procs):
            stop_process_group(proc, grace_s=10)
        for log in logs:
            log.close()


def test_rollout_flow_on_scheduler_and_two_worker_processes(vllm_server, warm_model_dir, dask_deployment,
                                                            tmp_path):
    from flows.rollout import aworld_rollout

    address, workers = dask_deployment
    uri, run_id = str(tmp_path / "runs"), "scaleout"
    out = aworld_rollout(
        config_path=str(REPO / "configs/local.yaml"), checkpoint=str(warm_model_dir), run_id=run_id,
        overrides=[f"dask.address={address}", f"storage.uri={uri}", "serve.mode=external",
                   f"serve.endpoints=[{vllm_server.url}]", f"rollout.prompts_per_iteration={PROMPTS}",
                   f"rollout.samples_per_prompt={SAMPLES}", f"rollout.shards={SHARDS}"])
    assert out["episodes"] == PROMPTS * SAMPLES

    store = RunStore(StorageLocation(uri), run_id)
    rows = store.read("episodes", columns=["task_id", "sample_index", "shard"]).to_pylist()
    counts = Counter((r["task_id"], r["sample_index"]) for r in rows)
    assert len(rows) == PROMPTS * SAMPLES and len(counts) == PROMPTS * SAMPLES, "every episode stored"
    assert max(counts.values()) == 1, "and none twice"
    assert {r["shard"] for r in rows} == set(range(SHARDS))

    manifests = store.manifests(0, "rollout")
    assert sorted(m["shard"] for m in manifests) == list(range(SHARDS)), "each shard committed once"
    ran_on = Counter(m["summary"]["worker"] for m in manifests)
    assert set(ran_on) == set(workers), f"shards ran on both worker processes: {dict(ran_on)}"
