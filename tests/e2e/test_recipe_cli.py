"""End to end, as a user runs it: `aworld recipe run` with a real vLLM CPU server, a real Dask
LocalCluster and Prefect (ephemeral API), 1 iteration with a handful of episodes."""

import json
import subprocess

import pyarrow.parquet as pq
import pytest

from testkit import REPO, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recipe_run(cli_recipe_run, clean_env_module):
    """The session's one `aworld recipe run` (tests/e2e/conftest.py, shared with test_secrets.py):
    run id ``e2e``, 1 iteration, 6 prompts x 4 samples in 3 shards, 10 held-out episodes, 2 Dask
    workers, a 60-step warm start of the base model the run created; its stdout parsed as JSON."""
    return cli_recipe_run.result, cli_recipe_run.run_dir


def _rows(run_dir, table):
    files = sorted((run_dir / table).rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f, partitioning=None).to_pylist()]


def test_rows_have_expected_counts(recipe_run):
    result, run_dir = recipe_run
    episodes = _rows(run_dir, "episodes")
    rollout = [e for e in episodes if e["phase"] == "rollout"]
    evals = [e for e in episodes if e["phase"] == "eval"]
    assert len(rollout) == 6 * 4, "prompts x samples rollout episodes in iteration 0"
    assert {e["iteration"] for e in rollout} == {0}
    assert len(evals) == 10 * 2, "held-out episodes for iteration 0 and for the trained checkpoint"
    assert len({e["episode_id"] for e in episodes}) == len(episodes), "episode ids are unique"
    assert sum(e["num_turns"] for e in episodes) == len(_rows(run_dir, "turns"))
    assert sum(e["num_tool_calls"] for e in episodes) == len(_rows(run_dir, "tool_calls"))
    assert all(e["split"] == "train" for e in rollout) and all(e["split"] == "heldout" for e in evals)
    assert [e["iteration"] for e in result["evaluations"]] == [0, 1]


def test_new_checkpoint_exists_and_was_served(recipe_run):
    result, run_dir = recipe_run
    ckpt1 = run_dir / "checkpoints" / "iter-1"
    assert (ckpt1 / "config.json").exists() and list(ckpt1.glob("*.safetensors"))
    evals = [e for e in _rows(run_dir, "episodes") if e["phase"] == "eval" and e["iteration"] == 1]
    assert {e["policy_checkpoint"] for e in evals} == {"e2e/iter-1"}
    # one server for the run (started on iteration 0's checkpoint), iteration 1's loaded into it in place
    assert not (run_dir / "logs" / "vllm-iter-1.log").exists()
    log = (run_dir / "logs" / "vllm-iter-0.log").read_text()
    assert f"now serving checkpoint {ckpt1.resolve()} (loaded in place)" in log, log[-3000:]
    stored = _rows(run_dir, "evaluations")
    assert sorted((r["iteration"], r["episodes"]) for r in stored) == [(0, 10), (1, 10)]


def test_trajectories_are_token_faithful_and_masked(recipe_run):
    _, run_dir = recipe_run
    turns = {}
    for t in _rows(run_dir, "turns"):
        turns.setdefault(t["episode_id"], []).append(t)
    for e in _rows(run_dir, "episodes"):
        rebuilt = list(e["prompt_ids"])
        mask = [0] * len(rebuilt)
        for t in sorted(turns.get(e["episode_id"], []), key=lambda t: t["turn_index"]):
            rebuilt += t["response_ids"] + t["observation_ids"]
            mask += [1] * len(t["response_ids"]) + [0] * len(t["observation_ids"])
        assert rebuilt == e["token_ids"] and mask == e["loss_mask"]
        assert len(e["logprobs"]) == len(e["token_ids"])
        assert all(lp == 0 for lp, m in zip(e["logprobs"], e["loss_mask"]) if not m)
        assert all(lp <= 0 for lp in e["logprobs"])


def test_summary_and_config_are_stored(recipe_run):
    result, run_dir = recipe_run
    assert json.loads((run_dir / "summary.json").read_text())["run_id"] == "e2e"
    assert json.loads((run_dir / "config.json").read_text())["rollout"]["samples_per_prompt"] == 4
    assert result["training"][0]["samples"] > 0


def _aworld(*args, timeout=300):
    return subprocess.run([str(REPO / ".venv/bin/aworld"), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_train_cli_retrains_an_iteration_from_stored_rollouts(recipe_run, tmp_path):
    _, run_dir = recipe_run
    out_dir = tmp_path / "iter1-again"
    proc = _aworld("train", "e2e", "-i", "0", "--output", str(out_dir), "--set", f"storage.uri={run_dir.parent}",
                   "--set", "train.lr=1e-4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["samples"] == 6 * 4 and report["checkpoint"] == str(out_dir)
    assert (out_dir / "config.json").exists() and (out_dir / "tokenizer.json").exists()
    # the run's own checkpoint is never overwritten without --force
    again = _aworld("train", "e2e", "-i", "0", "--set", f"storage.uri={run_dir.parent}")
    assert again.returncode == 2 and "--force" in again.stderr
    missing = _aworld("train", "e2e", "-i", "7", "--output", str(tmp_path / "x"),
                      "--set", f"storage.uri={run_dir.parent}")
    assert missing.returncode == 2 and "iter-7" in missing.stderr


def test_serve_cli_serves_a_checkpoint_until_interrupted(recipe_run, tmp_path):
    import signal
    import time

    import httpx

    _, run_dir = recipe_run
    port = free_port()
    proc = subprocess.Popen([str(REPO / ".venv/bin/aworld"), "serve", "--checkpoint",
                             str(run_dir / "checkpoints" / "iter-1"), "--port", str(port),
                             "--log-dir", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()[-3000:]
            lines.append(line)
            if line.startswith("ready"):
                break
        assert any(f"http://127.0.0.1:{port}/v1" in ln for ln in lines), lines
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["policy"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("command,phase", [("rollout", "rollout"), ("eval", "eval")])
def test_single_checkpoint_commands_store_their_episodes(command, phase, vllm_server, warm_model_dir, tmp_path,
                                                          clean_env_module):
    """`aworld rollout` / `aworld eval` against the session's server: JSON result, rows committed."""
    sets = ["serve.mode=external", f"serve.endpoints=[{vllm_server.url}]", f"storage.uri={tmp_path / 'runs'}",
            "rollout.prompts_per_iteration=4", "rollout.samples_per_prompt=2", "rollout.shards=2",
            "eval.episodes=6", "dask.n_workers=1"]
    proc = subprocess.run([str(REPO / ".venv/bin/aworld"), command, "-c", str(REPO / "configs/local.yaml"),
                           "--checkpoint", str(warm_model_dir),
                           "--run-id", f"cli-{command}", *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["run_id"] == f"cli-{command}"
    episodes = _rows(tmp_path / "runs" / f"cli-{command}", "episodes")
    assert len(episodes) == (8 if phase == "rollout" else 6) and {e["phase"] for e in episodes} == {phase}
    assert result["episodes"] == len(episodes)
