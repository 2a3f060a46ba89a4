"""Deployments, as an operator uses them: a real local Prefect server and process worker,
`bash deployments/deploy.sh`, then `prefect deployment run 'aworld-recipe/local' --param iterations=1`."""

import json
import subprocess

import pyarrow.parquet as pq
import pytest

from testkit import REPO, free_port, stop_process_group

pytestmark = pytest.mark.slow
PREFECT = str(REPO / ".venv/bin/prefect")


def test_recipe_deployment_runs_to_completed(prefect_server, base_model_dir, tmp_path):
    env = {**prefect_server["env"], "PREFECT_WORKER_QUERY_SECONDS": "2"}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    deploy = subprocess.run(["bash", "deployments/deploy.sh"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
    for name in ("aworld-recipe/local", "aworld-recipe/nightly", "aworld-rollout/local", "aworld-evaluate/local"):
        found = subprocess.run([PREFECT, "deployment", "inspect", name], env=env, capture_output=True, text=True,
                               timeout=60)
        assert found.returncode == 0, f"{name} not deployed: {found.stdout[-500:]}{found.stderr[-500:]}"

    worker_log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(["bash", "deployments/worker.sh"], cwd=REPO, env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        params = {"iterations": 1, "run_id": "deployed", "overrides": [
            f"model.path={base_model_dir}", f"storage.uri={tmp_path / 'runs'}", f"serve.port={free_port()}",
            "train.warm_start.steps=10", "rollout.prompts_per_iteration=4", "rollout.samples_per_prompt=2",
            "rollout.shards=2", "eval.episodes=4"]}
        run = subprocess.run([PREFECT, "deployment", "run", "aworld-recipe/local", "--param", "iterations=1",
                              "--params", json.dumps(params), "--watch", "--watch-timeout", "600"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=700)
        out = run.stdout + run.stderr
        assert run.returncode == 0 and "Completed" in out, out[-3000:] + (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        stop_process_group(worker)
    files = sorted((tmp_path / "runs" / "deployed" / "episodes").rglob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert rows == 4 * 2 + 4 * 2, "rollout (4 prompts x 2) + held-out evals of iterations 0 and 1"
    assert (tmp_path / "runs" / "deployed" / "checkpoints" / "iter-1" / "config.json").exists()
