"""A CPU platform for verl, loaded by verl itself through its external-module hook.

verl 0.9.1 knows CUDA, NPU and ROCm platforms only; on a machine without an accelerator it falls back
to "nvidia" and NCCL and its trainers die in ``init_process_group``. verl loads extra modules named
in ``VERL_USE_EXTERNAL_MODULES`` at ``import verl`` time (``verl/__init__.py``), and picks the
platform named in ``VERL_PLATFORM``. So a CPU process runs verl's real trainers with::

    VERL_USE_EXTERNAL_MODULES=aworld_core.training.verl_cpu_platform
    VERL_PLATFORM=cpu
    VERL_ENGINE_DEVICE=cuda      # verl's engines register for device "cuda"/"npu" only; this built-in
                                 # override makes the engine registry hand out the FSDP engine anyway
                                 # (every tensor still lives on the CPU: see current_device below)

``aworld_core.training.verl_engine.CPU_ENV`` holds exactly these variables; the trainer backends set
them for their torchrun workers when the machine has no CUDA device. On GPU nodes nothing of this is
set and this module is never imported. Import it only inside a verl process: importing it imports verl.

What the module does (FIELD_NOTES, "verl"):

* registers :class:`PlatformCPU` (device ``cpu``, backend ``gloo``, ``current_device()`` ->
  ``torch.device("cpu")``, memory statistics and streams as no-ops, seeds through ``torch``);
* makes verl's process-group setup use plain ``gloo``: ``verl.utils.distributed`` hard-codes the
  backend string ``f"cpu:gloo,{device}:{backend}"``, which becomes ``"cpu:gloo,cpu:gloo"`` here and
  ``torch.distributed`` rejects it ("Duplicate device type cpu"). We wrap
  ``torch.distributed.init_process_group`` so that exactly that duplicate collapses to ``"gloo"``;
  every other backend string passes through untouched.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Optional

import torch
import torch.distributed

from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _zero(*_a: Any, **_k: Any) -> int:
    return 0


def _none(*_a: Any, **_k: Any) -> None:
    return None


class _NullStream:
    """What ``torch.cuda.Stream``/``current_stream`` give on a GPU; on CPU every op is already ordered."""

    def __init__(self, *_a: Any, **_k: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait_stream(self, _other: Any) -> None:
        pass

    def wait_event(self, _event: Any) -> None:
        pass

    def record_event(self, event: Any = None) -> Any:
        return event or _NullEvent()


class _NullEvent:
    def __init__(self, *_a: Any, **_k: Any) -> None:
        pass

    def record(self, *_a: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait(self, *_a: Any) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, _other: Any) -> float:
        return 0.0


@contextmanager
def _null_stream_ctx(_stream: Any = None):
    yield


def _device_module() -> SimpleNamespace:
    """The ``torch.<device>`` stand-in verl calls through ``get_torch_device()``: every attribute verl
    uses (grep ``get_torch_device()\\.`` in verl 0.9.1) exists; memory figures read 0."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 1, current_device=lambda: 0,
        set_device=_none, synchronize=_none, empty_cache=_none, ipc_collect=_none,
        get_device_name=lambda *_: "cpu", manual_seed=torch.manual_seed, manual_seed_all=torch.manual_seed,
        get_rng_state=lambda *_a, **_k: torch.get_rng_state(),
        set_rng_state=lambda state, *_a, **_k: torch.set_rng_state(state),
        memory_allocated=_zero, memory_reserved=_zero, max_memory_allocated=_zero, max_memory_reserved=_zero,
        reset_peak_memory_stats=_none, set_per_process_memory_fraction=_none,
        mem_get_info=lambda *_: (total, total),
        Stream=_NullStream, Event=_NullEvent, current_stream=lambda *_: _NullStream(),
        stream=_null_stream_ctx,
    )


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """verl platform for CPU-only processes: gloo collectives, tensors on ``cpu``."""

    _module = None

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self):
        if PlatformCPU._module is None:
            PlatformCPU._module = _device_module()
        return PlatformCPU._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: only VERL_PLATFORM=cpu selects it, so a GPU node is unaffected even
        # if this module were imported there.
        return False

    def current_device(self):  # verl uses it as ``tensor.to(get_device_id())``
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: Optional[int] = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    # Ray: a CPU cluster that declares logical "GPU" resources (``ray_init.num_gpus``) can place
    # verl's GPU-shaped actors; FIELD_NOTES describes that (fragile) main_ppo-on-CPU run.
    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def _plain_gloo(backend: Any) -> Any:
    """``"cpu:gloo,cpu:gloo"`` (verl's string on this platform) -> ``"gloo"``; anything else unchanged."""
    if not isinstance(backend, str) or "," not in backend:
        return backend
    parts = {p.strip() for p in backend.split(",")}
    return "gloo" if parts == {"cpu:gloo"} else backend


def _patch_init_process_group() -> None:
    original = torch.distributed.init_process_group
    if getattr(original, "_aworld_cpu", False):
        return

    @functools.wraps(original)
    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (_plain_gloo(args[0]), *args[1:])
        if "backend" in kwargs:
            kwargs["backend"] = _plain_gloo(kwargs["backend"])
        return original(*args, **kwargs)

    init_process_group._aworld_cpu = True  # type: ignore[attr-defined]
    torch.distributed.init_process_group = init_process_group


_patch_init_process_group()
