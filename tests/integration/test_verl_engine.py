"""verl's real trainers on the tiny model, on CPU: the ``verl-fsdp`` RL backend (torchrun + verl's FSDP2
engine + verl's ppo_loss) and the SFT warm start through ``verl.trainer.sft_trainer``.

Each test runs one torchrun (never two at once; the 2-rank case is one torchrun with two processes)
and produces a directory vLLM can serve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from verl_testkit import checkpoint_weights as _weights, demo_episodes

pytestmark = pytest.mark.slow


def _assert_servable_and_changed(out: Path, base: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aworld_core.model.tiny import check_model_dir

    check_model_dir(out)  # config.json + tokenizer.json + *.safetensors
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (base / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text()) == json.loads((base / "config.json").read_text())
    assert not list(out.parent.glob(out.name + ".tmp")), "the atomic-install temp dir was left behind"
    before, after = _weights(base), _weights(out)
    assert set(after) == set(before)
    assert all(after[k].dtype == before[k].dtype and after[k].shape == before[k].shape for k in before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) // 2, f"only {len(changed)}/{len(before)} tensors changed"
    AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    AutoTokenizer.from_pretrained(out)


@pytest.fixture(scope="module")
def rl_case(tmp_path_factory, base_model_dir, env):
    """16 episodes and the in-process ``torch`` backend's checkpoint for the same update."""
    from aworld_core.config import TrainConfig
    from aworld_core.training.trainer import get_trainer

    episodes = demo_episodes(base_model_dir, env, tasks=4, samples=4)
    # one mini-batch of all 16 episodes, two epochs: two optimizer steps whose batches do not depend on
    # either backend's shuffling, so the two backends must agree
    cfg = TrainConfig(lr=1e-3, epochs=2, minibatch_size=16)
    ref_dir = tmp_path_factory.mktemp("torch_ref") / "iter-1"
    ref = get_trainer("torch")(base_model_dir, ref_dir, episodes, cfg, 4)
    assert ref.steps == 2
    return episodes, cfg, ref, ref_dir


@pytest.mark.parametrize("nproc", [1, 2])
def test_verl_fsdp_backend_runs_ppo_steps_on_verl_engine(nproc, rl_case, tmp_path, base_model_dir):
    """Two PPO steps on verl's engine (FSDP2 over 1 or 2 gloo ranks); the result equals the in-process
    ``torch`` backend's (the same GRPO advantages, verl policy loss, AdamW and clipping), which pins down
    the batch layout, the log-prob alignment and the loss aggregation across data-parallel ranks."""
    from aworld_core.config import VerlEngineConfig
    from aworld_core.training.trainer import get_trainer
    from aworld_core.training.verl_engine import train_verl_fsdp  # noqa: F401  (registers verl-fsdp)

    episodes, cfg, ref, ref_dir = rl_case
    out = tmp_path / "iter-1"
    report = get_trainer("verl-fsdp")(base_model_dir, out, episodes, cfg.model_copy(update={"backend": "verl-fsdp", "verl": VerlEngineConfig(nproc=nproc)}), 4)

    assert report.checkpoint == str(out) and report.samples == report.trained_samples == 16
    assert report.steps == 2
    m = report.metrics
    for key in ("actor/pg_loss", "grad_norm", "actor/ppo_kl", "actor/pg_clipfrac", "torchrun_wall_s"):
        assert key in m and math.isfinite(m[key]), key
    assert m["grad_norm"] > 0 and m["nproc"] == nproc
    work = out.with_name(out.name + ".verl")
    assert json.loads((work / "result.json").read_text())["steps"] == 2
    _assert_servable_and_changed(out, base_model_dir)

    assert m["loss"] == pytest.approx(ref.metrics["loss"], rel=1e-3, abs=1e-5)
    assert m["grad_norm"] == pytest.approx(ref.metrics["grad_norm"], rel=1e-3)
    base, verl_w, torch_w = _weights(base_model_dir), _weights(out), _weights(ref_dir)
    update = torch.cat([(torch_w[k] - base[k]).abs().flatten() for k in base]).mean()
    gap = torch.cat([(torch_w[k] - verl_w[k]).abs().flatten() for k in base]).mean()
    assert gap < 0.01 * update, (float(gap), float(update))


def test_verl_sft_trainer_warm_start(tmp_path, base_model_dir, env):
    from aworld_core.training.verl_sft import demonstrations_parquet, verl_sft

    parquet = demonstrations_parquet(env, 32, tmp_path / "demos.parquet")
    out = tmp_path / "warm"
    report = verl_sft(base_model_dir, out, parquet, steps=3, batch_size=8, lr=1e-3)
    assert report.steps == 3 and report.checkpoint == str(out)
    assert math.isfinite(report.first_loss) and report.last_loss < report.first_loss
    _assert_servable_and_changed(out, base_model_dir)
