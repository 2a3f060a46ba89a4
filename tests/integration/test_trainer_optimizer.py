"""The torch backend carries its AdamW moments from one iteration's update to the next.

Two chained updates on the tiny model: the second must resume the first's optimizer state (and give
a different result than a fresh AdamW would), keep the configured learning rate, and fall back to a
fresh optimizer, with a warning, when the stored state does not fit the model.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from verl_testkit import checkpoint_weights, demo_episodes

from aworld_core.config import TrainConfig
from aworld_core.training.trainer import OPTIMIZER_FILE, get_trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_update(tmp_path_factory, base_model_dir, env):
    cfg = TrainConfig(lr=1e-3, epochs=1, minibatch_size=8)
    out = tmp_path_factory.mktemp("opt") / "iter-1"
    report = get_trainer("torch")(base_model_dir, out, demo_episodes(base_model_dir, env, tasks=4, samples=4),
                                  cfg, 4)
    return cfg, out, report


def test_first_update_starts_fresh_and_stores_its_moments(first_update, base_model_dir):
    cfg, out, report = first_update
    assert not (base_model_dir / OPTIMIZER_FILE).exists()
    assert report.metrics["optimizer_resumed"] == 0.0
    state = torch.load(out / OPTIMIZER_FILE, weights_only=True)
    assert state["state"], "AdamW moments were not saved"
    assert all(s["step"] == report.steps for s in state["state"].values())


def test_second_update_resumes_the_moments_with_the_configured_lr(first_update, tmp_path, env):
    cfg, iter1, report1 = first_update
    episodes = demo_episodes(iter1, env, iteration=1, tasks=4, samples=4)
    resumed = get_trainer("torch")(iter1, tmp_path / "resumed", episodes, cfg.model_copy(update={"lr": 5e-4}), 4)
    assert resumed.metrics["optimizer_resumed"] == 1.0
    state = torch.load(tmp_path / "resumed" / OPTIMIZER_FILE, weights_only=True)
    assert all(s["step"] == report1.steps + resumed.steps for s in state["state"].values())
    assert all(g["lr"] == 5e-4 for g in state["param_groups"]), "the saved lr must not override the config"

    fresh = get_trainer("torch")(iter1, tmp_path / "fresh", episodes,
                                 cfg.model_copy(update={"lr": 5e-4, "persist_optimizer": False}), 4)
    assert fresh.metrics.get("optimizer_resumed") is None
    assert not (tmp_path / "fresh" / OPTIMIZER_FILE).exists()
    a, b = checkpoint_weights(tmp_path / "resumed"), checkpoint_weights(tmp_path / "fresh")
    assert any(not torch.equal(a[k], b[k]) for k in a), "resumed moments made no difference"


def test_state_that_does_not_fit_falls_back_to_fresh(first_update, tmp_path, env, caplog):
    cfg, iter1, _ = first_update
    src = tmp_path / "in"
    shutil.copytree(iter1, src)
    torch.save({"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
                "param_groups": [{"params": [0]}]}, src / OPTIMIZER_FILE)
    report = get_trainer("torch")(src, tmp_path / "out", demo_episodes(src, env, tasks=4, samples=4), cfg, 4)
    assert report.metrics["optimizer_resumed"] == 0.0
    assert "starting AdamW fresh" in caplog.text
