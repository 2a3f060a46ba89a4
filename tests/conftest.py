"""Session fixtures: the tiny model (created + warm-started once) and a real vLLM server on it.

Servers start once per session and listen on loopback only. Tests that need them are marked slow.
"""

from __future__ import annotations

import os

import pytest
from testkit import REPO, VLLM_PYTHON, free_port


@pytest.fixture(scope="session")
def env():
    from aworld_core.envs.base import build_env

    return build_env("arithmetic", seed=1234)


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory, env) -> Path:
    from aworld_core.model.tiny import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen3", env)


@pytest.fixture(scope="session")
def warm_model_dir(tmp_path_factory, base_model_dir, env) -> Path:
    """The tiny model after a short SFT warm start: it makes real tool calls, some correct."""
    from aworld_core.config import WarmStartConfig
    from aworld_core.training.sft import sft_warm_start

    out = tmp_path_factory.mktemp("models") / "warm"
    sft_warm_start(base_model_dir, out, env, WarmStartConfig(steps=120, demonstrations=256), seed=0)
    return out


@pytest.fixture(scope="session")
def vllm_server(warm_model_dir, tmp_path_factory):
    from aworld_core.inference.server import VLLMServer

    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} missing: run bin/setup")
    log = tmp_path_factory.mktemp("logs") / "vllm.log"
    # reloadable: test_inplace_reload loads another checkpoint into it (and then the warm model back)
    server = VLLMServer(warm_model_dir, python=VLLM_PYTHON, port=free_port(), log_path=log, reloadable=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clean_env_module():
    """Module-scoped: subprocesses started by the module's fixtures see no stray Prefect/AWS settings."""
    mp = pytest.MonkeyPatch()
    for k in list(os.environ):
        if k.startswith("PREFECT_API") or k.startswith("AWS_"):
            mp.delenv(k, raising=False)
    yield mp
    mp.undo()


@pytest.fixture
def clean_env(monkeypatch):
    """No stray Prefect/AWS settings leak into a test."""
    for k in list(os.environ):
        if k.startswith("PREFECT_API") or k.startswith("AWS_"):
            monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real local Prefect server (own PREFECT_HOME and database) on a free loopback port."""
    import subprocess
    import time

    import httpx

    home = tmp_path_factory.mktemp("prefect_home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([str(REPO / ".venv/bin/prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"Prefect server did not start; see {home / 'server.log'}")
    yield {"url": url, "env": env, "home": home}
    import signal
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


class FaultLedger:
    """What each fault test injected and what it found stored. ``benchmarks/faults.py`` runs the
    ``faults`` tests with ``AWORLD_FAULT_LEDGER=<file>`` and tabulates these records (one JSON line each)."""

    def __init__(self, path: str | None, test: str) -> None:
        self.path, self.test = path, test

    def record(self, fault: str, *, expected: int, keys: list, failed: int = 0, outcome: str = "") -> dict:
        """``keys``: one (task, sample)-like key per stored row; lost/duplicated are computed from them."""
        import json
        from collections import Counter

        counts = Counter(keys)
        entry = {"test": self.test, "fault": fault, "episodes_expected": expected,
                 "episodes_stored": sum(counts.values()), "lost": max(0, expected - len(counts)),
                 "duplicated": sum(n - 1 for n in counts.values() if n > 1), "failed_recorded": failed,
                 "outcome": outcome}
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(entry) + "\n")
        return entry


@pytest.fixture
def fault_ledger(request):
    return FaultLedger(os.environ.get("AWORLD_FAULT_LEDGER"), request.node.nodeid)
