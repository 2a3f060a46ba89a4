"""Trainer backends, registered by name: one iteration's trajectories in, a new checkpoint out.

``torch`` runs the update in-process on CPU: verl's GRPO advantages and PPO-clip policy loss over
our token-faithful batches, AdamW, gradient clipping, and a HuggingFace checkpoint that vLLM serves
next. It is the default for the embedded tiny model because it needs no launcher.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import torch

from aworld_core.config import TrainConfig
from aworld_core.errors import ConfigError, TrainingError
from aworld_core.training import algos
from aworld_core.training.batch import collate, response_logprobs, samples_from_table

log = logging.getLogger(__name__)

# AdamW moments carried from one iteration's update to the next (the RL optimizer only; the warm
# start's SFT optimizer is not carried). Not a weight file: vLLM and the in-place loader ignore it.
OPTIMIZER_FILE = "optimizer.pt"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")


@dataclass
class TrainReport:
    checkpoint: str
    samples: int
    trained_samples: int
    steps: int
    wall_s: float
    mean_reward: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


Backend = Callable[[Path, Path, pa.Table, TrainConfig, int], TrainReport]
_BACKENDS: dict[str, Backend] = {}


def register_trainer(name: str) -> Callable[[Backend], Backend]:
    def deco(fn: Backend) -> Backend:
        _BACKENDS[name] = fn
        return fn

    return deco


def get_trainer(name: str) -> Backend:
    if name not in _BACKENDS and name.startswith("verl"):
        import aworld_core.training.verl_engine  # noqa: F401  (registers "verl-fsdp"; imports verl lazily)
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown train.backend {name!r}; registered: {sorted(_BACKENDS)}") from None


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def _load(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


@register_trainer("torch")
def train_torch(ckpt_in: Path, ckpt_out: Path, episodes: pa.Table, cfg: TrainConfig,
                rollout_n: int) -> TrainReport:
    """One RL iteration: PPO-clip with GRPO advantages, verl's functions, plain torch."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    samples = samples_from_table(episodes)
    if not samples:
        raise TrainingError("no trainable episodes in this iteration (all errored or empty); check "
                            "the rollout stage's stop reasons with `aworld query`")
    model = _load(ckpt_in)
    pad_id = model.config.pad_token_id or 0
    full = collate(samples, pad_id)
    keep = torch.arange(len(full))
    if cfg.skip_uniform_groups:
        keep = (~algos.uniform_groups(full.rewards, full.groups)).nonzero().squeeze(-1)
    mean_reward = float(full.rewards.mean())
    metrics: dict[str, float] = {"groups_with_signal_frac": len(keep) / max(len(full), 1)}
    steps = 0
    if len(keep) > 0:
        batch = full.select(keep)
        adv = algos.compute_advantages(cfg.adv_estimator, batch.rewards, batch.response_mask, batch.groups)
        actor_cfg = algos.actor_config(cfg.clip_ratio, cfg.loss_agg_mode, rollout_n, cfg.clip_ratio_high)
        model.eval()
        with torch.no_grad():  # "old" logprobs from the trainer's own forward (not vLLM's) = on-policy ratio 1
            old_lp = torch.cat([response_logprobs(model, batch.select(idx))
                                for idx in torch.arange(len(batch)).split(cfg.minibatch_size)])
            ref_lp = old_lp.clone() if cfg.kl_coef > 0 else None
        metrics["rollout_vs_trainer_logprob_abs_diff"] = float(
            ((old_lp - batch.rollout_logprobs).abs() * batch.response_mask).sum() / batch.response_mask.sum())
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
        if cfg.persist_optimizer:
            metrics["optimizer_resumed"] = float(_resume_optimizer(opt, ckpt_in / OPTIMIZER_FILE, cfg.lr))
        gen = torch.Generator().manual_seed(cfg.seed)
        for _epoch in range(cfg.epochs):
            for idx in torch.randperm(len(batch), generator=gen).split(cfg.minibatch_size):
                mb = batch.select(idx)
                lp = response_logprobs(model, mb)
                loss, m = algos.policy_loss(cfg.policy_loss, old_lp[idx], lp, adv[idx], mb.response_mask,
                                            cfg.loss_agg_mode, actor_cfg)
                if cfg.self_imitation_coef > 0:
                    sil = algos.self_imitation_loss(lp, mb.response_mask, mb.successes)
                    loss = loss + cfg.self_imitation_coef * sil
                    metrics["self_imitation_nll"] = float(sil.detach())
                if ref_lp is not None:
                    loss = loss + cfg.kl_coef * algos.kl_loss(lp, ref_lp[idx], mb.response_mask,
                                                              cfg.loss_agg_mode)
                opt.zero_grad()
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                steps += 1
                metrics["loss"] = float(loss.detach())
                metrics["grad_norm"] = float(gn)
                metrics.update({k: float(v) for k, v in m.items() if isinstance(v, (int, float))})
    else:
        log.warning("every group had identical rewards; checkpoint is unchanged this iteration")
    _save(model, ckpt_in, ckpt_out, opt.state_dict() if steps and cfg.persist_optimizer else None,
          carry_optimizer=cfg.persist_optimizer)
    return TrainReport(str(ckpt_out), len(samples), len(keep), steps, time.perf_counter() - t0,
                       mean_reward, metrics)


def _resume_optimizer(opt: torch.optim.Optimizer, path: Path, lr: float) -> bool:
    """Load the previous iteration's AdamW moments, if it left them; True when loaded.

    Why: a fresh AdamW takes its first steps at about ``lr`` in every coordinate, whatever the
    gradient's scale (bias-corrected m/sqrt(v) is ~sign(g)), so restarting it every iteration adds a
    burst of noise at each iteration's start. verl's actor keeps its optimizer across steps; so do we.
    The learning rate is always the configured one, never the saved one.
    """
    if not path.is_file():
        return False
    try:
        opt.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (ValueError, RuntimeError, KeyError) as e:  # another architecture or a damaged file
        log.warning("not resuming optimizer state from %s (%s); starting AdamW fresh", path, e)
        opt.state.clear()
        return False
    for group in opt.param_groups:
        group["lr"] = lr
    return True


def _save(model: torch.nn.Module, ckpt_in: Path, ckpt_out: Path, optimizer_state: dict | None = None,
          carry_optimizer: bool = False) -> None:
    """Write the checkpoint atomically: a half-written directory must never be served."""
    tmp = ckpt_out.with_name(ckpt_out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    copy_tokenizer(ckpt_in, tmp)
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    elif carry_optimizer and (ckpt_in / OPTIMIZER_FILE).is_file():
        # no update this iteration: the moments carry over as they are
        shutil.copy2(ckpt_in / OPTIMIZER_FILE, tmp / OPTIMIZER_FILE)
    shutil.rmtree(ckpt_out, ignore_errors=True)
    tmp.rename(ckpt_out)
