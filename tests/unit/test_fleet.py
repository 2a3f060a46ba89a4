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
