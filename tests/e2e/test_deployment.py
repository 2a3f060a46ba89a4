"""Deployments, as an operator uses them: a real local Prefect server and process worker,
`bash deployments/deploy.sh`, then `prefect deployment run 'aworld-recipe/local' --param iterations=1`.

What is under test is the deployment mechanism (prefect.yaml, work pool, worker, `prefect deployment run`
to Completed with data stored), and what a person then sees of that run in the Prefect UI: the
per-iteration artifacts (chart and table) of the real recipe flow run, rendered in headless Chromium. The recipe itself, with a vLLM server started per iteration, is covered
by test_recipe_cli.py; here the deployed flow run uses the session's vLLM server (``serve.mode=external``)
instead of starting two of its own (~35-75 s each on 2 cores). That server serves the session's
warm-started model, so the run starts from that model (``model.path``) with no warm start of its own:
iteration 0's checkpoint is then the very weights being served, and no SFT steps are spent in the flow.
"""

import json
import re
import subprocess

import httpx
import pyarrow.parquet as pq
import pytest

from browser import assert_not_blank, render
from testkit import REPO, stop_process_group

pytestmark = pytest.mark.slow
PREFECT = str(REPO / ".venv/bin/prefect")


def test_recipe_deployment_runs_to_completed(prefect_server, warm_model_dir, vllm_server, tmp_path):
    env = {**prefect_server["env"], "PREFECT_WORKER_QUERY_SECONDS": "2"}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    deploy = subprocess.run(["bash", "deployments/deploy.sh"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]

    # the worker starts up (seconds of imports) while the deployments are inspected
    worker_log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen(["bash", "deployments/worker.sh"], cwd=REPO, env=env, stdout=worker_log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        names = ("aworld-recipe/local", "aworld-recipe/nightly", "aworld-rollout/local", "aworld-evaluate/local")
        inspects = {name: subprocess.Popen([PREFECT, "deployment", "inspect", name], env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True) for name in names}
        for name, proc in inspects.items():
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"{name} not deployed: {stdout[-500:]}{stderr[-500:]}"

        params = {"iterations": 1, "run_id": "deployed", "overrides": [
            f"model.path={warm_model_dir}", "train.warm_start.enabled=false", f"storage.uri={tmp_path / 'runs'}",
            "serve.mode=external", f"serve.endpoints=[{vllm_server.url}]",
            "rollout.prompts_per_iteration=4", "rollout.samples_per_prompt=2", "rollout.shards=2", "eval.episodes=4"]}
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

    # The deployed recipe's flow run, as its operator sees it in the Prefect UI: the progress artifact
    # (chart + per-iteration table) on its page, and both artifacts on the run's Artifacts tab.
    from aworld_core.analysis.iterations import artifact_key

    api = prefect_server["url"]
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"any_": ["recipe-deployed"]}}},
                      timeout=30).raise_for_status().json()
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", runs
    found = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [runs[0]["id"]]}}},
                       timeout=30).raise_for_status().json()
    # each update of a keyed artifact is a new version: the page to look at is the newest
    by_key = {a["key"]: a for a in sorted(found, key=lambda a: a["created"])}
    md_key, table_key = artifact_key("progress", "deployed"), artifact_key("iterations", "deployed")
    assert {md_key, table_key} <= set(by_key), sorted(by_key)
    ui = api.removesuffix("/api")
    page, dom, text = render(f"{ui}/artifacts/artifact/{by_key[md_key]['id']}", tmp_path / "recipe-artifact.png",
                             tmp_path)
    assert "success and reward per iteration" in text and "deployed/iter-1" in text, text[:2000]
    assert re.search(r'<img[^>]+src="data:image/png;base64,', dom), "the chart is not an <img> on the page"
    tab, _, tab_text = render(f"{ui}/v2/runs/flow-run/{runs[0]['id']}?tab=Artifacts",
                              tmp_path / "recipe-flow-run-artifacts.png", tmp_path)
    assert md_key in tab_text and table_key in tab_text, tab_text[:2000]
    for png in (page, tab):
        assert_not_blank(png)
