"""The CPU platform module verl loads through VERL_USE_EXTERNAL_MODULES (end to end: the verl
integration tests run verl's trainers with it)."""

from __future__ import annotations

import re
from pathlib import Path

import torch


def test_backend_string_collapses_only_the_cpu_duplicate():
    from aworld_core.training.verl_cpu_platform import _plain_gloo

    assert _plain_gloo("cpu:gloo,cpu:gloo") == "gloo"  # what verl builds on this platform
    for other in ("cpu:gloo,cuda:nccl", "nccl", "gloo", None):
        assert _plain_gloo(other) == other


def test_platform_answers_everything_verl_asks_of_a_device():
    from verl.plugin.platform.platform_manager import PlatformRegistry

    import aworld_core.training.verl_cpu_platform  # noqa: F401  (registers "cpu")

    p = PlatformRegistry.get("cpu")()
    assert p.device_name == "cpu" and p.communication_backend_name() == "gloo"
    assert p.current_device() == torch.device("cpu") and p.is_available()
    assert not p.is_platform_available(use_smi_check=True)  # never auto-detected on a GPU node
    dev = p.device_module
    import verl

    verl_src = Path(verl.__file__).parent
    used = set()
    for f in verl_src.rglob("*.py"):
        used |= set(re.findall(r"get_torch_device\(\)\.([A-Za-z_]+)", f.read_text(errors="ignore")))
    assert used, "verl source not found"
    missing = sorted(a for a in used if not hasattr(dev, a))
    assert not missing, f"verl calls get_torch_device().{missing} which the CPU platform lacks"
    assert dev.max_memory_allocated() == 0 and dev.mem_get_info()[0] > 0
    with dev.stream(dev.Stream()):
        dev.current_stream().synchronize()
