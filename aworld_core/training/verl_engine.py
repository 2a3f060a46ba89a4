"""The ``verl-fsdp`` trainer backend: the policy update runs on verl's own training engine.

The parent process (a Prefect task, or a test) turns one iteration's episodes into a verl batch, with
GRPO advantages from verl's ``core_algos`` (:mod:`aworld_core.training.algos`), and launches::

    python -m torch.distributed.run --standalone --nproc_per_node=N -m aworld_core.training.verl_engine --job JOB

Each rank then does what verl's PPO trainer does for its actor (``ray_trainer._compute_old_log_prob``
and ``_update_actor``, without Ray): it builds :class:`verl.workers.engine_workers.TrainingWorker`,
whose engine comes from verl's ``EngineRegistry`` (``FSDPEngineWithLMHead``, FSDP2), sets verl's
``ppo_loss`` (the registered policy loss named by ``train.policy_loss``, ``vanilla`` = PPO-clip,
aggregated by ``train.loss_agg_mode``), computes "old" log-probs with a forward-only
``infer_batch``, runs ``train_mini_batch`` for ``train.epochs`` epochs of mini-batches, and saves
with verl's checkpoint manager (``save_contents=[hf_model]``: a full HuggingFace model). The parent
turns that into a servable directory at ``ckpt_out`` atomically (``<ckpt_out>.tmp`` then a rename),
with the input's tokenizer files and ``config.json``.

Batch layout (exactly what ``AgentLoopWorker`` hands verl's trainer): ``prompts`` [B, P] left-padded
(the episode's first prompt), ``responses`` [B, R] right-padded (every token after it: model turns
and tool observations), ``response_mask`` [B, R] (1 only where the model sampled the token),
``input_ids``/``attention_mask``/``position_ids`` [B, P+R], ``advantages`` [B, R],
``rollout_log_probs`` [B, R]. Ranks take contiguous equal shares (data parallel).

On CPU (no CUDA device in the parent) the workers get :data:`CPU_ENV` and these settings; the engine
code path is the one a GPU uses:

* ``VERL_PLATFORM=cpu`` + our platform module: verl has no CPU platform (it would pick NCCL);
* ``attn_implementation=sdpa``: verl defaults to flash-attention-2, which has no CPU kernels;
* FSDP2 (``strategy=fsdp2``, also used on GPU): verl's FSDP1 path cannot build on CPU (below);
* fp32 parameters without autocast (``mixed_precision`` all fp32) and no ``torch.compile``: bf16
  autocast on CPU is slow and lossy for a tiny model, and compiling costs more than it saves here.

What runs for real on CPU (tests/integration/test_verl_engine.py): verl's engine build (HF model
load, FSDP2 sharding, optimizer, LR scheduler), its remove-padding forward over packed sequences, the
forward-only log-prob pass, ``ppo_loss`` with the registered policy loss, backward, FSDP2 gradient
clipping, AdamW steps and the ``hf_model`` checkpoint save, with one rank or two data-parallel ranks
(FSDP2 over gloo). Nothing of verl's engine is replaced, and the result equals the in-process ``torch``
backend's on the same mini-batches (same loss and grad norm, parameters within 1e-8 on average).
What does not run on CPU, and why: NCCL collectives (no CUDA; gloo stands in, so multi-node sharding
at scale is exercised only on GPU nodes), flash-attention-2 (no CPU kernels; sdpa stands in), bf16
autocast and ``torch.compile`` (turned off for speed and precision; both are verl's GPU defaults), FSDP1
(``engine.strategy=fsdp``: verl's ``_build_fsdp_module`` passes ``sync_module_states=True`` and torch
raises "The module has CPU parameters or buffers when `sync_module_states=True`, which requires them to
be on GPU"; checked). Gradient checkpointing is off on CPU only because a
tiny model does not need it. verl's weight sync into a colocated vLLM is not used at all: the recipe
loads the saved checkpoint into its vLLM server (in place, or by a restart).

Launch settings live in ``train.verl`` (:class:`aworld_core.config.VerlEngineConfig`): ``nproc``
(ranks; default: the number of visible CUDA devices, or 1 on CPU), ``max_tokens_per_gpu`` (dynamic
micro-batching budget, default 8192) and ``timeout_s`` (default 3600).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from aworld_core.config import TrainConfig
from aworld_core.errors import TrainingError
from aworld_core.training import algos
from aworld_core.training.batch import Sample, collate, samples_from_table
from aworld_core.training.trainer import TrainReport, copy_tokenizer, register_trainer

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
LOG_TAIL_CHARS = 4000
# What makes a verl process run on CPU (FIELD_NOTES "verl"): verl imports the module named here at
# ``import verl``; it registers the "cpu" platform that VERL_PLATFORM selects. verl's engines register
# for devices "cuda"/"npu" only; VERL_ENGINE_DEVICE (a verl override) makes the registry hand out the
# FSDP engine, whose tensors still live on the CPU (the platform's current_device()).
CPU_ENV = {"VERL_USE_EXTERNAL_MODULES": "aworld_core.training.verl_cpu_platform", "VERL_PLATFORM": "cpu",
           "VERL_ENGINE_DEVICE": "cuda"}


@dataclass
class EngineJob:
    """Everything a worker rank needs, written as JSON next to the batch file."""

    model_path: str
    batch_path: str
    out_dir: str  # verl's checkpoint dir (``<out_dir>/huggingface`` is the HF model)
    lr: float
    epochs: int
    minibatch_size: int  # episodes per optimizer step, over all ranks
    clip_ratio: float
    clip_ratio_high: float | None
    loss_agg_mode: str
    policy_loss: str
    kl_coef: float
    max_grad_norm: float
    rollout_n: int
    seed: int
    cpu: bool
    pad_token_id: int = 0
    max_tokens_per_gpu: int = 8192
    temperature: float = 1.0


# -- parent side -----------------------------------------------------------------------------------

def verl_batch(samples: list[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Samples -> verl's padded layout (left-padded prompts, right-padded responses).

    Shapes: prompts [B, P], responses/response_mask/rollout_log_probs [B, R], input_ids/attention_mask/
    position_ids [B, P+R]. ``response_mask`` is 1 only on model-sampled tokens (tool observations 0).
    """
    if not samples:
        raise ValueError("no samples")
    P = max(s.prompt_len for s in samples)
    R = max(len(s.token_ids) - s.prompt_len for s in samples)
    B = len(samples)
    prompts = torch.full((B, P), pad_id, dtype=torch.long)
    responses = torch.full((B, R), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + R), dtype=torch.long)
    r_mask = torch.zeros((B, R), dtype=torch.long)
    r_lp = torch.zeros((B, R), dtype=torch.float32)
    for i, s in enumerate(samples):
        p, k = s.prompt_len, len(s.token_ids) - s.prompt_len
        prompts[i, P - p:] = torch.tensor(s.token_ids[:p], dtype=torch.long)
        responses[i, :k] = torch.tensor(s.token_ids[p:], dtype=torch.long)
        attn[i, P - p:P + k] = 1
        r_mask[i, :k] = torch.tensor(s.loss_mask[p:], dtype=torch.long)
        r_lp[i, :k] = torch.tensor(s.logprobs[p:], dtype=torch.float32)
    position_ids = torch.clip(torch.cumsum(attn, dim=-1) - 1, min=0)  # verl's compute_position_id_with_mask
    return {"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], dim=1),
            "attention_mask": attn, "position_ids": position_ids, "response_mask": r_mask,
            "rollout_log_probs": r_lp}


def default_nproc(configured: int | None = None) -> int:
    if configured:
        return configured
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def worker_env(cpu: bool) -> dict[str, str]:
    """The environment of torchrun workers: ours, plus the CPU platform settings on a CPU machine."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("VERL_LOGGING_LEVEL", "WARN")
    if cpu:
        env.update(CPU_ENV)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1))))
    return env


def run_torchrun(module_args: list[str], nproc: int, env: dict[str, str], log_path: Path,
                 timeout_s: float, what: str) -> float:
    """Run ``torchrun --standalone --nproc_per_node=N <module_args>``; raise TrainingError with the log's
    tail if it fails. Returns the wall time."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           *module_args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TrainingError(f"{what} did not finish in {timeout_s:g} s (raise train.verl.timeout_s); "
                                f"see {log_path}") from None
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        raise TrainingError(f"{what} failed (exit {rc}); full log: {log_path}\n--- log tail ---\n{tail}")
    return wall


def install_hf_checkpoint(hf_dir: Path, ckpt_in: Path, ckpt_out: Path) -> None:
    """Make ``ckpt_out`` a servable HF dir from verl's saved weights, atomically (tmp dir, rename).

    Weights come from ``hf_dir`` (verl's ``hf_model`` save or model merger output). ``config.json``,
    ``generation_config.json`` and the tokenizer come from ``ckpt_in``: training does not change the
    architecture, and verl writes ``dtype: bfloat16`` into the config (it builds its save model in bf16)
    even when the weights are fp32, which would make vLLM serve a different precision than before.
    """
    weights = sorted(hf_dir.glob("*.safetensors")) + sorted(hf_dir.glob("*.safetensors.index.json"))
    if not any(p.suffix == ".safetensors" for p in weights):
        raise TrainingError(f"verl wrote no *.safetensors under {hf_dir}; cannot build {ckpt_out}")
    tmp = ckpt_out.with_name(ckpt_out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for p in weights:
        shutil.copy2(p, tmp / p.name)
    src_config = ckpt_in / "config.json" if (ckpt_in / "config.json").exists() else hf_dir / "config.json"
    shutil.copy2(src_config, tmp / "config.json")
    copy_tokenizer(hf_dir, tmp)  # whatever verl saved, then the input's files win
    copy_tokenizer(ckpt_in, tmp)
    shutil.rmtree(ckpt_out, ignore_errors=True)
    tmp.rename(ckpt_out)


def _copy_unchanged(ckpt_in: Path, ckpt_out: Path) -> None:
    tmp = ckpt_out.with_name(ckpt_out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt_in, tmp)
    shutil.rmtree(ckpt_out, ignore_errors=True)
    tmp.rename(ckpt_out)


@register_trainer("verl-fsdp")
def train_verl_fsdp(ckpt_in: Path, ckpt_out: Path, episodes: pa.Table, cfg: TrainConfig,
                    rollout_n: int) -> TrainReport:
    """One RL iteration on verl's FSDP engine (torchrun subprocess); GRPO advantages, PPO-clip."""
    t0 = time.perf_counter()
    ckpt_in, ckpt_out = Path(ckpt_in), Path(ckpt_out)
    samples = samples_from_table(episodes)
    if not samples:
        raise TrainingError("no trainable episodes in this iteration (all errored or empty); check "
                            "the rollout stage's stop reasons with `aworld query`")
    pad_id = _pad_id(ckpt_in)
    full = collate(samples, pad_id)
    mean_reward = float(full.rewards.mean())
    keep = torch.arange(len(full))
    if cfg.skip_uniform_groups:
        keep = (~algos.uniform_groups(full.rewards, full.groups)).nonzero().squeeze(-1)
    metrics: dict[str, float] = {"groups_with_signal_frac": len(keep) / max(len(full), 1)}
    if len(keep) == 0:
        log.warning("every group had identical rewards; checkpoint is unchanged this iteration")
        _copy_unchanged(ckpt_in, ckpt_out)
        return TrainReport(str(ckpt_out), len(samples), 0, 0, time.perf_counter() - t0, mean_reward, metrics)

    kept = [samples[i] for i in keep.tolist()]
    sub = full.select(keep)
    adv_r = algos.compute_advantages(cfg.adv_estimator, sub.rewards, sub.response_mask, sub.groups)  # [B, R]
    batch = verl_batch(kept, pad_id)
    # collate's response axis and verl_batch's share the same R (max response length) and alignment
    batch["advantages"] = adv_r[:, :batch["responses"].shape[1]].float()

    work = ckpt_out.with_name(ckpt_out.name + ".verl")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    torch.save(batch, work / "batch.pt")
    cpu = not torch.cuda.is_available()
    job = EngineJob(model_path=str(ckpt_in.resolve()), batch_path=str(work / "batch.pt"),
                    out_dir=str(work / "actor"), lr=cfg.lr, epochs=cfg.epochs,
                    minibatch_size=cfg.minibatch_size, clip_ratio=cfg.clip_ratio, clip_ratio_high=cfg.clip_ratio_high,
                    loss_agg_mode=cfg.loss_agg_mode, policy_loss=cfg.policy_loss, kl_coef=cfg.kl_coef,
                    max_grad_norm=cfg.max_grad_norm, rollout_n=rollout_n, seed=cfg.seed, cpu=cpu,
                    pad_token_id=pad_id,
                    max_tokens_per_gpu=cfg.verl.max_tokens_per_gpu)
    (work / "job.json").write_text(json.dumps(asdict(job), indent=2))
    nproc = default_nproc(cfg.verl.nproc)
    wall = run_torchrun(["-m", __name__, "--job", str(work / "job.json")], nproc, worker_env(cpu),
                        work / "train.log", cfg.verl.timeout_s,
                        "verl FSDP policy update")
    result = json.loads((work / RESULT_FILE).read_text())
    install_hf_checkpoint(Path(job.out_dir) / "huggingface", ckpt_in, ckpt_out)
    metrics.update({k: float(v) for k, v in result["metrics"].items()})
    metrics["torchrun_wall_s"] = wall
    metrics["nproc"] = float(nproc)
    shutil.rmtree(work / "actor", ignore_errors=True)  # keep job.json, batch.pt, train.log, result.json
    return TrainReport(str(ckpt_out), len(samples), int(result["trained_samples"]), int(result["steps"]),
                       time.perf_counter() - t0, mean_reward, metrics)


def _pad_id(model_dir: Path) -> int:
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot read {model_dir / 'config.json'}: {exc}") from exc
    pad = cfg.get("pad_token_id")
    return int(pad) if isinstance(pad, int) else 0


# -- worker side (one process per rank, started by torchrun) --------------------------------------

def _mini_batch_plan(n_rank: int, minibatch_size: int, world: int) -> tuple[int, int]:
    """(rows used per rank, mini-batch rows per rank): verl needs the mini-batch to divide the batch."""
    per_gpu = max(1, minibatch_size // world)
    n_mb = max(1, -(-n_rank // per_gpu))  # ceil
    per_gpu = n_rank // n_mb
    return per_gpu * n_mb, per_gpu


def build_training_worker(job: EngineJob, total_steps: int):
    """verl's TrainingWorker (engine from EngineRegistry: FSDP2, language model) with verl's ppo_loss."""
    from functools import partial

    from verl.trainer.config import CheckpointConfig
    from verl.workers.config import (ActorConfig, FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig,
                                     PolicyLossConfig, TrainingWorkerConfig)
    from verl.workers.engine_workers import TrainingWorker
    from verl.workers.utils.losses import ppo_loss

    override: dict[str, Any] = {"attn_implementation": "sdpa"} if job.cpu else {}
    model_cfg = HFModelConfig(path=job.model_path, override_config=override, use_remove_padding=True,
                              enable_gradient_checkpointing=not job.cpu)
    engine_kwargs: dict[str, Any] = dict(
        strategy="fsdp2", use_dynamic_bsz=True, max_token_len_per_gpu=job.max_tokens_per_gpu,
        infer_max_token_len_per_gpu=job.max_tokens_per_gpu, seed=job.seed,
        use_no_sync_for_gradient_accumulation=False)
    if job.cpu:
        engine_kwargs.update(model_dtype="fp32", use_torch_compile=False,
                             mixed_precision={"param_dtype": "fp32", "reduce_dtype": "fp32",
                                              "buffer_dtype": "fp32"})
    engine_cfg = FSDPEngineConfig(**engine_kwargs)
    optim_cfg = FSDPOptimizerConfig(lr=job.lr, weight_decay=0.0, clip_grad=job.max_grad_norm,
                                    total_training_steps=max(1, total_steps), lr_scheduler_type="constant")
    ckpt_cfg = CheckpointConfig(save_contents=["hf_model"], load_contents=["hf_model"])
    actor_cfg = ActorConfig(strategy="fsdp", rollout_n=job.rollout_n, clip_ratio=job.clip_ratio,
                            clip_ratio_low=job.clip_ratio,
                            clip_ratio_high=job.clip_ratio if job.clip_ratio_high is None else job.clip_ratio_high,
                            loss_agg_mode=job.loss_agg_mode, policy_loss=PolicyLossConfig(loss_mode=job.policy_loss),
                            use_kl_loss=job.kl_coef > 0, kl_loss_coef=job.kl_coef, kl_loss_type="low_var_kl",
                            entropy_coeff=0.0, use_dynamic_bsz=True, ppo_max_token_len_per_gpu=job.max_tokens_per_gpu,
                            ppo_mini_batch_size=max(1, job.minibatch_size // max(1, job.rollout_n)))
    worker = TrainingWorker(config=TrainingWorkerConfig(
        model_type="language_model", model_config=model_cfg, engine_config=engine_cfg,
        optimizer_config=optim_cfg, checkpoint_config=ckpt_cfg))
    worker.set_loss_fn(partial(ppo_loss, config=actor_cfg))
    worker.reset()  # builds the model, FSDP2 wrapping, optimizer, scheduler
    return worker


def _worker_main(job: EngineJob) -> None:
    from verl.utils import tensordict_utils as tu
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group
    from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

    _local_rank, rank, world = initialize_global_process_group()
    torch.manual_seed(job.seed)
    full: dict[str, torch.Tensor] = torch.load(job.batch_path)
    B = full["input_ids"].shape[0]
    n_rank = B // world
    if n_rank == 0:
        raise SystemExit(f"{B} trainable episodes cannot be split over {world} ranks")
    used, mb_per_gpu = _mini_batch_plan(n_rank, job.minibatch_size, world)
    rows = torch.arange(rank * n_rank, rank * n_rank + used)
    mine = {k: v[rows] for k, v in full.items()}
    steps = (used // mb_per_gpu) * job.epochs
    worker = build_training_worker(job, steps)

    def td(extra: dict[str, Any]) -> Any:
        t = tu.get_tensordict({k: v.clone() for k, v in mine.items()},
                              {"temperature": job.temperature, "pad_token_id": job.pad_token_id, **extra})
        return left_right_2_no_padding(t)

    # 1. old log-probs from the engine itself (verl's _compute_old_log_prob): forward only
    data = td({"calculate_entropy": False, "compute_loss": False,
               "global_token_num": mine["attention_mask"].sum(-1).tolist()})
    out = worker.infer_batch(data)
    old_lp = no_padding_2_padding(tu.get(out, "log_probs"), data).float() if out is not None else None
    if old_lp is None:  # non-collecting ranks (model-parallel) get no output; not the case with FSDP
        raise SystemExit("infer_batch returned no log-probs on this rank")
    mask = mine["response_mask"].float()
    diff = float(((old_lp - mine["rollout_log_probs"]).abs() * mask).sum() / mask.sum().clamp(min=1))

    # 2. the PPO update (verl's _update_actor): epochs x mini-batches, each one optimizer step
    mine["old_log_probs"] = old_lp
    if job.kl_coef > 0:
        mine["ref_log_prob"] = old_lp.clone()  # reference = the policy at the start of the iteration
    data = td({"calculate_entropy": False, "compute_loss": True, "global_batch_size": mb_per_gpu * world,
               "mini_batch_size": mb_per_gpu * world, "epochs": job.epochs, "seed": job.seed,
               "dataloader_kwargs": {"shuffle": True}})
    out = worker.train_mini_batch(data)
    metrics: dict[str, float] = {"rollout_vs_trainer_logprob_abs_diff": diff}
    if out is not None:
        for k, v in tu.get(out, "metrics").items():
            vals = v if isinstance(v, list) else [v]
            vals = [float(x.item() if hasattr(x, "item") else x) for x in vals
                    if isinstance(x, (int, float)) or hasattr(x, "item")]
            if vals:
                metrics[k] = vals[-1]
                if k in ("loss", "actor/pg_loss"):
                    metrics[f"{k}_first"] = vals[0]

    # 3. save (verl's checkpoint manager, hf_model contents)
    worker.save_checkpoint(job.out_dir, global_step=steps)
    if rank == 0:
        result = {"steps": steps, "trained_samples": used * world, "dropped_samples": B - used * world,
                  "metrics": metrics}
        Path(job.out_dir).parent.joinpath(RESULT_FILE).write_text(json.dumps(result, indent=2))
    destroy_global_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="verl FSDP policy update (one torchrun rank)")
    ap.add_argument("--job", required=True, help="job.json written by train_verl_fsdp")
    args = ap.parse_args(argv)
    _worker_main(EngineJob(**json.loads(Path(args.job).read_text())))


if __name__ == "__main__":
    main()
