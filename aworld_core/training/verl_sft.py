"""Warm start / rejection-sampling SFT through verl's own SFT trainer (``verl.trainer.sft_trainer``).

The in-process warm start (:mod:`aworld_core.training.sft`) trains on token-faithful demonstrations.
This is the same step on verl's stack, for when the recipe runs next to a verl cluster or the model is
too large for one process: a multi-turn ``messages`` Parquet (verl's SFT format, written by
:func:`aworld_core.export.verl_format.sft_table` from an iteration's successful trajectories, or by
:func:`demonstrations_parquet` from an environment's gold transcripts) is trained with::

    torchrun --standalone --nproc_per_node=N -m verl.trainer.sft_trainer   (config sft_trainer_engine)

verl's ``MultiTurnSFTDataset`` renders each message with the chat template (loss on assistant
turns only) and checks that the concatenation equals the whole conversation rendered at once.

On CPU the run uses the FIELD_NOTES recipe: our CPU platform module (:mod:`.verl_cpu_platform`),
``VERL_ENGINE_DEVICE=cuda``, ``+model.override_config.attn_implementation=sdpa``, FSDP2,
``trainer.device=cpu``, no ``torch.compile``, no dataloader worker processes.

The output: verl's checkpoint manager writes the full model as HuggingFace safetensors
(``checkpoint.save_contents=[hf_model]``, fp32 as trained); we install it at ``ckpt_out`` atomically
with the input's ``config.json`` and tokenizer (:func:`verl_engine.install_hf_checkpoint`), so vLLM
serves it as is. If a verl build writes only FSDP shards, ``python -m verl.model_merger merge
--backend fsdp`` rebuilds the HF weights (note: the merger saves bf16).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from aworld_core.envs.base import Environment
from aworld_core.errors import TrainingError
from aworld_core.training.sft import SFTReport
from aworld_core.training.verl_engine import default_nproc, install_hf_checkpoint, run_torchrun, worker_env

log = logging.getLogger(__name__)

_STEP_LINE = re.compile(r"step:(\d+) - .*?train/loss:([-0-9.eE+naif]+)")


def demonstration_messages(env: Environment, task) -> dict[str, Any]:
    """One verl multi-turn SFT row (``messages`` + ``tools``) from an environment's gold transcript."""
    msgs = [{"role": "system", "content": env.system_prompt()}, {"role": "user", "content": task.question}]
    return {"messages": msgs + env.demonstration(task), "tools": [t.schema() for t in env.tools()],
            "task_id": task.task_id}


def demonstrations_parquet(env: Environment, n: int, path: Path, offset: int = 1_000_000) -> Path:
    """Write ``n`` demonstrations (train split, from ``offset``: far from RL's tasks) in verl's SFT format."""
    from aworld_core.export.verl_format import write_parquet

    rows = [demonstration_messages(env, t) for t in env.tasks("train", n, offset)]
    return write_parquet(rows, Path(path))


def sft_overrides(ckpt_in: Path, parquet: Path, out_dir: Path, steps: int, batch_size: int, lr: float,
                  max_length: int, cpu: bool, max_tokens_per_gpu: int, seed: int) -> list[str]:
    """Hydra overrides for ``verl.trainer.sft_trainer`` (config ``sft_trainer_engine``)."""
    rows = pq.read_metadata(parquet).num_rows
    if rows == 0:
        raise TrainingError(f"{parquet} holds no conversations; nothing to fine-tune on")
    batch_size = min(batch_size, rows)  # the sampler drops the last partial batch
    epochs = math.ceil(steps / max(1, rows // batch_size))
    ov = [
        f"data.train_files={parquet}", "data.val_files=null", f"data.train_batch_size={batch_size}",
        f"data.micro_batch_size_per_gpu={min(batch_size, 8)}", "data.use_dynamic_bsz=True",
        f"data.max_token_len_per_gpu={max_tokens_per_gpu}", f"data.max_length={max_length}",
        "data.truncation=error", "data.num_workers=0", "data.messages_key=messages", "data.tools_key=tools",
        f"model.path={ckpt_in}", "engine.strategy=fsdp2", f"optim.lr={lr}", "optim.weight_decay=0.0",
        "optim.lr_scheduler_type=constant", f"trainer.total_training_steps={steps}",
        f"trainer.total_epochs={epochs}", f"trainer.default_local_dir={out_dir}", "trainer.resume_mode=disable",
        "trainer.logger=[console]", "trainer.save_freq=-1", "trainer.test_freq=-1", f"trainer.seed={seed}",
        "trainer.project_name=aworld-sft", "trainer.experiment_name=warm-start",
        "checkpoint.save_contents=[hf_model]", "checkpoint.load_contents=[hf_model]",
    ]
    if cpu:
        ov += ["+model.override_config.attn_implementation=sdpa", "engine.use_torch_compile=False",
               "engine.model_dtype=fp32",
               "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}",
               "model.enable_gradient_checkpointing=False", "trainer.device=cpu"]
    return ov


def verl_sft(ckpt_in: Path, ckpt_out: Path, messages_parquet: Path, steps: int, *, batch_size: int = 32,
             lr: float = 1e-4, max_length: int = 1024, nproc: int | None = None, seed: int = 0,
             workdir: Path | None = None, max_tokens_per_gpu: int = 8192,
             extra_overrides: list[str] | None = None, timeout_s: float = 3600.0) -> SFTReport:
    """Fine-tune ``ckpt_in`` on a verl multi-turn ``messages`` Parquet for ``steps`` optimizer steps.

    Writes a servable HF directory at ``ckpt_out`` (atomically); verl's own checkpoint and the log go
    to ``workdir`` (default ``<ckpt_out>.verl-sft``). Returns first/last training loss from verl's log.
    """
    t0 = time.perf_counter()
    ckpt_in, ckpt_out, parquet = Path(ckpt_in).resolve(), Path(ckpt_out), Path(messages_parquet).resolve()
    if steps < 1:
        raise TrainingError("verl_sft needs steps >= 1")
    work = Path(workdir) if workdir else ckpt_out.with_name(ckpt_out.name + ".verl-sft")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cpu = not torch.cuda.is_available()
    overrides = sft_overrides(ckpt_in, parquet, (work / "ckpt").resolve(), steps, batch_size, lr, max_length,
                              cpu, max_tokens_per_gpu, seed) + list(extra_overrides or [])
    (work / "overrides.json").write_text(json.dumps(overrides, indent=2))
    log_path = work / "sft.log"
    run_torchrun(["-m", "verl.trainer.sft_trainer", *overrides], nproc or default_nproc(), worker_env(cpu),
                 log_path, timeout_s, "verl SFT trainer")
    losses = [float(m.group(2)) for m in _STEP_LINE.finditer(log_path.read_text(errors="replace"))]
    step_dir = work / "ckpt" / f"global_step_{steps}"
    hf_dir = step_dir / "huggingface"
    if not any(hf_dir.glob("*.safetensors")):
        hf_dir = _merge_shards(step_dir, work / "merged", cpu)
    install_hf_checkpoint(hf_dir, ckpt_in, ckpt_out)
    shutil.rmtree(work / "ckpt", ignore_errors=True)
    if not losses:
        raise TrainingError(f"verl SFT finished but logged no losses; see {log_path}")
    log.info("verl SFT: %d steps, loss %.3f -> %.3f", len(losses), losses[0], losses[-1])
    return SFTReport(str(ckpt_out), len(losses), losses[0], losses[-1], time.perf_counter() - t0)


def _merge_shards(step_dir: Path, target: Path, cpu: bool) -> Path:
    """verl's model merger: FSDP shards -> HF safetensors (bf16)."""
    cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(step_dir),
           "--target_dir", str(target)]
    proc = subprocess.run(cmd, env=worker_env(cpu), capture_output=True, text=True)
    if proc.returncode != 0 or not any(target.glob("*.safetensors")):
        raise TrainingError(f"verl model merger failed on {step_dir}: {proc.stderr[-2000:]}")
    return target

