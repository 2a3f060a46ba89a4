"""The flow process is killed mid-iteration (SIGKILL, its whole process group): `aworld recipe resume`
continues from the committed work, redoes none of it and duplicates no row; no vLLM server is left
behind by the killed flow.

The killed run serves its checkpoint itself (``serve.mode=local``: that is the server that must not be
left behind). It starts from the session's warm-started model with no warm start of its own, and the
resumed run is pointed at the session's vLLM server on that same model (``serve.mode=external``)
instead of starting two more servers (~35-75 s each on 2 cores): the commits, rows and checkpoints
checked here do not depend on who serves, and a recipe that serves each iteration itself is covered by
test_recipe_cli.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from aworld_core.inference.server import port_is_free
from testkit import REPO, free_port

pytestmark = [pytest.mark.slow, pytest.mark.faults]
AWORLD = str(REPO / ".venv/bin/aworld")


def _wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the recipe exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_flow_killed_mid_iteration_resumes_without_redoing_or_duplicating(warm_model_dir, vllm_server, tmp_path,
                                                                          clean_env, fault_ledger):
    data, port = tmp_path / "runs", free_port()
    sets = [f"model.path={warm_model_dir}", f"storage.uri={data}", f"serve.port={port}",
            "train.warm_start.enabled=false", "rollout.prompts_per_iteration=8", "rollout.samples_per_prompt=4",
            "rollout.shards=4", "rollout.concurrency=4", "eval.episodes=8", "dask.n_workers=1",
            "dask.threads_per_worker=1", "env.params.tool_latency_s=0.2"]  # shards run one after another
    args = [a for s in sets for a in ("--set", s)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([AWORLD, "recipe", "run", "--run-id", "killme", "--iterations", "1", "--quiet", *args],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    commits = data / "killme" / "_commits" / "iteration=0" / "phase=rollout"
    try:
        _wait_for(lambda: any(commits.glob("*.json")), 600, "the first rollout shard's commit", proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the flow, its Dask workers, its Prefect API: all at once
        proc.wait()
    before = {p.name: json.loads(p.read_text())["attempt"] for p in commits.glob("*.json")}
    assert 1 <= len(before) < 4, "killed mid-rollout: some shards committed, some not"
    assert not (data / "killme" / "checkpoints" / "iter-1" / "config.json").exists()
    _wait_for(lambda: port_is_free("127.0.0.1", port), 60, "the orphaned vLLM server to exit")

    resume = subprocess.run([AWORLD, "recipe", "resume", "killme", "--quiet", "--set", f"storage.uri={data}",
                             "--set", "serve.mode=external", "--set", f"serve.endpoints=[{vllm_server.url}]"],
                            cwd=REPO, capture_output=True, text=True, timeout=900)
    assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-3000:]

    after = {p.name: json.loads(p.read_text())["attempt"] for p in commits.glob("*.json")}
    assert len(after) == 4 and all(after[name] == attempt for name, attempt in before.items()), \
        "shards committed before the kill are not redone"
    rows = [r for f in sorted((data / "killme" / "episodes").rglob("*.parquet"))
            for r in pq.read_table(f, columns=["iteration", "phase", "task_id", "sample_index"],
                                   partitioning=None).to_pylist()]
    # only files that manifests reference count: list them (an orphan of the killed attempt may exist)
    from aworld_core.storage.store import RunStore
    from aworld_core.storage.uri import StorageLocation

    stored = RunStore(StorageLocation(str(data)), "killme").read("episodes").to_pylist()
    keys = [(r["iteration"], r["phase"], r["task_id"], r["sample_index"]) for r in stored]
    entry = fault_ledger.record("flow process group SIGKILLed mid-rollout, then `aworld recipe resume`",
                                expected=8 * 4 + 8 * 2, keys=keys,
                                outcome=f"{len(before)}/4 rollout shards kept, rest done on resume")
    assert entry["lost"] == 0 and entry["duplicated"] == 0
    assert len(rows) >= len(stored)
    assert (data / "killme" / "checkpoints" / "iter-1" / "config.json").exists()
    assert "iteration" in resume.stdout and "killme" in resume.stdout
