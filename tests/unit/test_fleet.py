"""vLLM replica fleet: ports, per-replica GPUs and logs, and all-or-nothing start."""

import sys
import time

import pytest

from aworld_core.config import ServeConfig
from aworld_core.errors import VLLMNotReady
from aworld_core.inference.fleet import ServerFleet, replica_env
from testkit import fake_model_dir, free_port


@pytest.fixture
def model_dir(tmp_path):
    return fake_model_dir(tmp_path)


def test_replicas_get_consecutive_ports_their_gpus_and_own_logs(model_dir, tmp_path):
    serve = ServeConfig(port=9100, replicas=3, gpu_ids=["0", "1,2"])
    fleet = ServerFleet(serve, model_dir, served_name="p", python=sys.executable, log_dir=tmp_path)
    assert fleet.urls == [f"http://127.0.0.1:{p}/v1" for p in (9100, 9101, 9102)]
    assert [s.env_overrides for s in fleet.servers] == [{"CUDA_VISIBLE_DEVICES": g} for g in ("0", "1,2", "0")]
    assert [s.log_path.name for s in fleet.servers] == ["vllm-replica0.log", "vllm-replica1.log",
                                                        "vllm-replica2.log"]
    assert replica_env(ServeConfig(), 0) == {}


def test_a_replica_that_fails_to_start_stops_the_fleet_with_its_log(model_dir, tmp_path):
    # a "python" that exits at once: every replica fails; the error names the log to read
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'boom: no vllm here' >&2\nexit 3\n")
    fake.chmod(0o755)
    serve = ServeConfig(port=free_port(), replicas=2)
    fleet = ServerFleet(serve, model_dir, served_name="p", python=fake, log_dir=tmp_path)
    t0 = time.monotonic()
    with pytest.raises(VLLMNotReady, match="exited with code 3") as err:
        fleet.start()
    assert "boom: no vllm here" in str(err.value)
    assert time.monotonic() - t0 < 30
    assert all(s.pid is None for s in fleet.servers)


def test_in_place_reload_enables_vllm_dev_endpoints_on_loopback_only(model_dir, tmp_path):
    """serve.reload: the dev endpoints it needs (/collective_rpc) must never face a network."""
    from pydantic import ValidationError

    from aworld_core.errors import ConfigError
    from aworld_core.inference.server import WORKER_EXTENSION, VLLMServer

    local = ServerFleet(ServeConfig(port=9100), model_dir, served_name="p", python=sys.executable, log_dir=tmp_path)
    assert local.servers[0].reloadable and WORKER_EXTENSION in local.servers[0].command()
    wide = ServerFleet(ServeConfig(port=9100, host="0.0.0.0"), model_dir, served_name="p", python=sys.executable,
                       log_dir=tmp_path)  # auto -> restart: a fresh server per checkpoint, no dev endpoints
    assert not wide.servers[0].reloadable and WORKER_EXTENSION not in wide.servers[0].command()
    with pytest.raises(ValidationError, match="serve.reload=restart"):
        ServeConfig(host="0.0.0.0", reload="inplace")
    with pytest.raises(ConfigError, match="loopback"):
        VLLMServer(model_dir, python=sys.executable, host="0.0.0.0", reloadable=True)
    with pytest.raises(ConfigError, match="reloadable"):
        VLLMServer(model_dir, python=sys.executable).load_checkpoint(model_dir)


def test_worker_extension_is_a_standalone_file_the_vllm_process_can_import():
    """It is imported by the vLLM server's own interpreter, from its directory on PYTHONPATH: it may
    import nothing from aworld_core (not installed there)."""
    import ast

    from aworld_core.inference.server import WORKER_EXTENSION, WORKER_EXTENSION_DIR

    module, cls = WORKER_EXTENSION.split(".")
    tree = ast.parse((WORKER_EXTENSION_DIR / f"{module}.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all("aworld" not in ast.unparse(n) for n in imports), [ast.unparse(n) for n in imports]
    methods = {f.name for c in tree.body if isinstance(c, ast.ClassDef) and c.name == cls for f in c.body
               if isinstance(f, ast.FunctionDef)}
    assert "aworld_reload_checkpoint" in methods
