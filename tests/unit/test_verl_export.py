"""``aworld export verl``: an iteration in verl's RL and multi-turn SFT formats, loaded by verl's own
dataset classes; and the documented ``main_ppo`` launch composed against verl's config."""

from __future__ import annotations

import json
import re
import shlex

import pyarrow.parquet as pq
import pytest
from testkit import REPO
from verl_testkit import demo_episodes

from aworld_core.config import RecipeConfig
from aworld_core.storage.store import RunStore, ShardKey
from aworld_core.storage.uri import StorageLocation

TASKS, SAMPLES = 4, 4


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


@pytest.fixture
def stored_run(tmp_path, base_model_dir, env):
    """A run with committed rollout episodes for iterations 0 and 1 and its config.json."""
    loc = StorageLocation(str(tmp_path / "runs"))
    store = RunStore(loc, "r1")
    tables = {}
    for it in (0, 1):
        tables[it] = demo_episodes(base_model_dir, env, run_id="r1", iteration=it, tasks=TASKS, samples=SAMPLES)
        store.commit_shard(ShardKey(it, "rollout", 0), {"episodes": tables[it]})
    cfg = RecipeConfig.model_validate({"run_id": "r1", "rollout": {"prompts_per_iteration": TASKS,
                                                                   "samples_per_prompt": SAMPLES},
                                       "env": {"seed": env.seed}})
    store.write_json("config.json", cfg.model_dump(mode="json"))
    return loc, tables


def test_export_writes_verl_rl_and_sft_datasets(stored_run, tmp_path, tokenizer):
    from omegaconf import OmegaConf
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from aworld_core.export.verl_format import export_iteration

    loc, tables = stored_run
    res = export_iteration(loc, "r1", 1, tmp_path / "out")
    assert (res.rl_rows, res.sft_rows, res.episodes) == (TASKS, TASKS * SAMPLES // 2, TASKS * SAMPLES)
    episodes = {r["episode_id"]: r for r in tables[1].to_pylist()}
    first_by_task = {}
    for r in tables[1].to_pylist():
        first_by_task.setdefault(r["task_id"], r)

    # RL: verl's RLHFDataset reads it; the prompt + tools re-render to the exact prompt ids sampled from
    rl = RLHFDataset(data_files=res.rl_path, tokenizer=tokenizer,
                     config=OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024,
                                              "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts": True,
                                              "filter_overlong_prompts_workers": 1, "return_raw_chat": True}))
    assert len(rl) == TASKS
    for i in range(TASKS):
        row = rl[i]
        info = row["extra_info"]
        ep = first_by_task[info["task_id"]]
        assert row["index"] == i and row["agent_name"] == "aworld_tool_agent"
        assert row["data_source"] == "aworld/arithmetic"
        assert row["reward_model"] == {"style": "rule", "ground_truth": ep["answer"]}  # the correct sample's
        assert [m["role"] for m in row["raw_prompt"]] == ["system", "user"]
        assert info["question"] == ep["question"] and info["iteration"] == 1
        assert info["environment"] == "arithmetic" and json.loads(info["env_params"]) == {}
        ids = tokenizer.apply_chat_template(row["raw_prompt"], tools=json.loads(info["tools"]),
                                            add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        assert ids == ep["prompt_ids"]

    # SFT: successes only; verl's MultiTurnSFTDataset (per-message rendering + its own sanity check that
    # it equals the whole conversation) reproduces the tokens the episode was sampled as
    sft_table = pq.read_table(res.sft_path)
    assert set(sft_table.column_names) >= {"messages", "tools"}
    sft = MultiTurnSFTDataset(parquet_files=res.sft_path, tokenizer=tokenizer,
                              config=OmegaConf.create({"max_length": 1024, "pad_mode": "no_padding",
                                                       "truncation": "error", "messages_key": "messages",
                                                       "tools_key": "tools"}))
    assert len(sft) == TASKS * SAMPLES // 2
    newline = tokenizer.encode("\n", add_special_tokens=False)
    for i, eid in enumerate(sft_table.column("episode_id").to_pylist()):
        ep = episodes[eid]
        assert ep["success"]
        item = sft[i]
        ids, loss = item["input_ids"].tolist(), item["loss_mask"].tolist()
        # the template closes the last turn with "<|im_end|>\n"; the sampled episode stops at <|im_end|>
        assert ids == ep["token_ids"] + newline
        # loss on what the model wrote (verl also trains the "\n" after each <|im_end|>, ours is mask 0)
        trained = [t for t, m in zip(ids, loss) if m]
        sampled = [t for t, m in zip(ep["token_ids"], ep["loss_mask"]) if m]
        assert [t for t in trained if t not in newline] == [t for t in sampled if t not in newline]
        assert "<answer>" + ep["answer"] + "</answer>" in tokenizer.decode(trained)


def test_export_checks_ground_truth_against_stored_questions(stored_run, tmp_path):
    from aworld_core.export.verl_format import ExportError, export_iteration

    loc, _ = stored_run
    store = RunStore(loc, "r1")
    cfg = store.read_json("config.json")
    cfg["env"]["seed"] += 1  # a config that no longer describes the run's tasks
    store.write_json("config.json", cfg)
    with pytest.raises(ExportError, match="cannot rebuild the tasks"):
        export_iteration(loc, "r1", 0, tmp_path / "out")


def test_export_cli(stored_run, tmp_path):
    import typer
    from typer.testing import CliRunner

    from aworld_cli.export import register

    app = typer.Typer()
    register(app)
    loc, _ = stored_run
    out = tmp_path / "cli-out"
    runner = CliRunner()
    res = runner.invoke(app, ["export", "verl", "r1", "--iteration", "0", "--out", str(out), "--uri", loc.uri,
                              "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["rl_rows"] == TASKS and (out / "rl.parquet").exists() and (out / "sft.parquet").exists()
    res = runner.invoke(app, ["export", "verl", "r1", "-i", "7", "--out", str(out), "--uri", loc.uri])
    assert res.exit_code == 2 and "iteration 7" in res.output
    res = runner.invoke(app, ["export", "verl", "nope", "-i", "0", "--out", str(out), "--uri", loc.uri])
    assert res.exit_code == 2


def _documented_main_ppo_overrides() -> list[str]:
    text = (REPO / "docs" / "verl.md").read_text()
    block = re.search(r"<!-- verl-launch.*?```bash\n(.*?)```", text, re.S).group(1)
    args = shlex.split(block.replace("\\\n", " "))
    assert args[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    return args[3:]


def test_documented_main_ppo_launch_composes_against_verl_config():
    """Every override in docs/verl.md exists in verl's ppo_trainer config and validates; the agent loop
    config file points at an importable AgentLoopBase registered under the exported agent_name."""
    import hydra
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase
    from verl.utils.config import omega_conf_to_dataclass

    from aworld_core.export.verl_format import AGENT_NAME

    overrides = _documented_main_ppo_overrides()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="verl.trainer.config", version_base=None):
            cfg = compose(config_name="ppo_trainer", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
    rollout = cfg.actor_rollout_ref.rollout
    assert cfg.algorithm.adv_estimator == "grpo" and rollout.agent.default_agent_loop == AGENT_NAME
    omega_conf_to_dataclass(rollout)  # verl's own validation of the rollout section
    entries = OmegaConf.load(REPO / rollout.agent.agent_loop_config_path)
    (entry,) = [e for e in entries if e.name == AGENT_NAME]
    assert issubclass(hydra.utils.get_class(entry._target_), AgentLoopBase)
