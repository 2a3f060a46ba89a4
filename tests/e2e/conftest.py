"""End-to-end session fixtures.

``cli_recipe_run``: ONE real ``aworld recipe run`` (vLLM CPU, Dask LocalCluster, Prefect's ephemeral API),
1 iteration with a handful of episodes, shared by ``test_recipe_cli.py`` (what the run produced) and
``test_secrets.py`` (that none of the fake credentials set in its environment ends up in anything it
wrote). Each recipe run starts its own vLLM server (and warm-starts a model), so running it once instead
of once per module saves minutes of the suite.

The run is set up the way test_secrets needs it: its own working directory (every file written relative
to the cwd is searched), its own PREFECT_HOME (the ephemeral API's database is searched), no PREFECT_* /
AWS_* settings inherited, the fake secrets in its environment, the base model created by the run itself
under that working directory, local storage, ``serve.api_key_env`` naming one of the secrets, and
``--json --log-json`` (the result as JSON on stdout, JSON log lines on stderr).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import REPO, free_port

KEY_ENV = "AWORLD_TEST_POLICY_API_KEY"  # named by serve.api_key_env: the client sends it to vLLM
RUN_ID = "e2e"


def _fake_secrets() -> dict[str, str]:
    rnd = secrets.SystemRandom()
    upper = string.ascii_uppercase + string.digits
    return {
        "AWS_ACCESS_KEY_ID": "AKIA" + "".join(rnd.choice(upper) for _ in range(16)),
        "AWS_SECRET_ACCESS_KEY": "awsSecret" + secrets.token_urlsafe(30),
        "OPENAI_API_KEY": "sk-proj-leakcheck" + secrets.token_hex(20),
        "HF_TOKEN": "hf_leakcheck" + secrets.token_hex(16),
        KEY_ENV: "aworld-policy-key-" + secrets.token_hex(16),
    }


@dataclass(frozen=True)
class RecipeRun:
    proc: subprocess.CompletedProcess  # the CLI's exit code, stdout (result JSON) and stderr (JSON logs)
    result: dict                       # stdout parsed
    fake: dict[str, str]               # env var -> fake secret value set for the run
    key_env: str                       # serve.api_key_env
    work: Path                         # the CLI's cwd
    run_dir: Path                      # <storage.uri>/<run id>
    prefect_home: Path                 # the subprocess' own PREFECT_HOME


@pytest.fixture(scope="session")
def cli_recipe_run(tmp_path_factory) -> RecipeRun:
    root = tmp_path_factory.mktemp("recipe_cli")
    work, prefect_home = root / "cwd", root / "prefect_home"
    work.mkdir()
    prefect_home.mkdir()
    fake = _fake_secrets()
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PREFECT_") or k.startswith("AWS_"))}
    env.update(fake)
    env["PREFECT_HOME"] = str(prefect_home)  # the ephemeral API's database lands here
    data = work / "runs"
    cmd = [str(REPO / ".venv/bin/aworld"), "recipe", "run", "-c", str(REPO / "configs" / "local.yaml"),
           "--run-id", RUN_ID, "--iterations", "1", "--json", "--log-json",
           "--set", f"model.path={work / 'model'}",          # created by the run itself
           "--set", f"serve.python={REPO / '.venv-vllm/bin/python'}",
           "--set", f"storage.uri={data}",                   # local: the fake AWS keys are never used
           "--set", f"serve.port={free_port()}", "--set", f"serve.api_key_env={KEY_ENV}",
           "--set", "train.warm_start.steps=60",
           "--set", "rollout.prompts_per_iteration=6", "--set", "rollout.samples_per_prompt=4",
           "--set", "rollout.shards=3", "--set", "eval.episodes=10", "--set", "dask.n_workers=2"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return RecipeRun(proc, result, fake, KEY_ENV, work, data / RUN_ID, prefect_home)
