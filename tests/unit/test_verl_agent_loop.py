"""The verl agent loop (``aworld_tool_agent``) on a fake verl server manager, no GPU.

The chain is verl's own: rows exported by ``aworld export verl`` are read with ``RLHFDataset``, the loop
is instantiated by hydra from verl's agent-loop registry exactly as ``AgentLoopWorker`` does, and the
fake server returns fixed token ids (the environment's demonstration turns).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from verl_testkit import demo_episodes

from aworld_core.agent.loop import ChatTokens
from aworld_core.training.sft import assistant_ids


class FakeServerManager:
    """verl's ``LLMServerClient.generate`` contract: prompt ids in, ``TokenOutput`` out."""

    def __init__(self, turns: list[list[int]]) -> None:
        self.turns = list(turns)
        self.calls: list[dict] = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.calls.append({"request_id": request_id, "prompt_ids": list(prompt_ids), "params": dict(sampling_params)})
        ids = self.turns.pop(0)[: sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids), stop_reason="completed")


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_dir)


@pytest.fixture(scope="module")
def rl_rows(tmp_path_factory, base_model_dir, env, tokenizer):
    """verl RLHFDataset rows of an exported iteration, plus the episodes they came from."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from aworld_core.export.verl_format import EnvSpec, rebuild_tasks, rl_rows, write_parquet

    episodes = demo_episodes(base_model_dir, env, tasks=2, samples=2)
    spec = EnvSpec("arithmetic", env.seed, {}, prompts_per_iteration=2, max_turns=4)
    tasks = rebuild_tasks(spec, env, episodes, 0, "rollout")
    tmp = tmp_path_factory.mktemp("verl_rl")
    path = write_parquet(rl_rows(episodes, tasks, spec, [t.schema() for t in env.tools()]), tmp / "rl.parquet")
    ds = RLHFDataset(data_files=str(path), tokenizer=tokenizer,
                     config=OmegaConf.create({"cache_dir": str(tmp / "cache"), "filter_overlong_prompts": False}))
    return [ds[i] for i in range(len(ds))], {r["task_id"]: r for r in episodes.to_pylist() if r["success"]}, tasks


def make_loop(server, tokenizer, response_length=256):
    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry
    from verl.utils.dataset.rl_dataset import RLHFDataset

    import aworld_core.integrations.verl_agent_loop  # noqa: F401  (registers aworld_tool_agent)

    cfg = OmegaConf.create({"actor_rollout_ref": {"rollout": {
        "prompt_length": 512, "response_length": response_length,
        "multi_turn": {"max_assistant_turns": None}}}, "data": {}})
    return hydra.utils.instantiate(config=_agent_loop_registry["aworld_tool_agent"],
                                   trainer_config=DictConfigWrap(config=cfg), server_manager=server,
                                   tokenizer=tokenizer, processor=None, hf_model_type="qwen3",
                                   dataset_cls=RLHFDataset, data_config=DictConfigWrap(cfg.data),
                                   tools=ToolListWrap([]))


def demo_turns(tokenizer, env, task) -> list[list[int]]:
    chat = ChatTokens(tokenizer)
    return [assistant_ids(chat, m) for m in env.demonstration(task) if m["role"] == "assistant"]


def test_agent_loop_plays_the_environment_token_faithfully(rl_rows, tokenizer, env):
    rows, episodes, tasks = rl_rows
    row = rows[0]
    ep = episodes[row["extra_info"]["task_id"]]
    server = FakeServerManager(demo_turns(tokenizer, env, tasks[ep["task_id"]]))
    loop = make_loop(server, tokenizer)
    out = asyncio.run(loop.run({"temperature": 1.0, "top_p": 1.0, "logprobs": True}, **row))

    p = ep["prompt_tokens"]
    assert out.prompt_ids == ep["prompt_ids"]
    # sampled turn 1 (mask 1) + the calculator's observation (mask 0) + sampled turn 2 (mask 1): the same ids
    # and mask as the stored, token-faithful episode of this task
    assert out.response_ids == ep["token_ids"][p:]
    assert out.response_mask == ep["loss_mask"][p:]
    assert out.response_logprobs == [(-0.25 if m else 0.0) for m in out.response_mask]
    assert out.reward_score == 1.0 and out.num_turns == 4
    assert out.extra_fields["stop_reason"] == "answer"
    assert out.extra_fields["reward_extra_info"]["success"] == 1.0

    # one sticky request id per episode; turn 2 continues from exactly the concatenated ids
    assert len(server.calls) == 2 and server.calls[0]["request_id"] == server.calls[1]["request_id"]
    first = server.calls[0]
    assert first["prompt_ids"] == ep["prompt_ids"] and first["params"]["logprobs"] is True
    assert first["params"]["stop_token_ids"] == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    turn1 = len(demo_turns(tokenizer, env, tasks[ep["task_id"]])[0])
    assert server.calls[1]["prompt_ids"] == ep["token_ids"][: len(server.calls[1]["prompt_ids"])]
    assert len(server.calls[1]["prompt_ids"]) > p + turn1

    # what verl's AgentLoopWorker makes of it: the reward lands on the last response token (rm_scores)
    d = out.as_dict()
    assert d["rm_scores"][-1] == 1.0 and float(d["rm_scores"].sum()) == 1.0
    assert d["responses"].shape == d["response_mask"].shape == d["rollout_log_probs"].shape


def test_agent_loop_scores_a_wrong_answer_zero(rl_rows, tokenizer, env):
    rows, episodes, tasks = rl_rows
    row = rows[1]
    task = tasks[row["extra_info"]["task_id"]]
    wrong = dataclasses.replace(task, answer=str(int(task.answer) + 5))
    server = FakeServerManager(demo_turns(tokenizer, env, wrong))
    out = asyncio.run(make_loop(server, tokenizer).run({"temperature": 1.0}, **row))
    assert out.reward_score == 0.0 and out.extra_fields["stop_reason"] == "answer"
    assert out.extra_fields["reward_extra_info"]["success"] == 0.0


def test_agent_loop_respects_the_response_budget(rl_rows, tokenizer, env):
    rows, episodes, tasks = rl_rows
    row = rows[0]
    turns = demo_turns(tokenizer, env, tasks[row["extra_info"]["task_id"]])
    budget = len(turns[0]) - 3  # the first tool call does not even fit
    server = FakeServerManager(turns)
    out = asyncio.run(make_loop(server, tokenizer, response_length=budget).run({"temperature": 1.0}, **row))
    assert len(out.response_ids) == budget == len(out.response_mask) and all(out.response_mask)
    assert out.reward_score == 0.0 and out.extra_fields["stop_reason"] in ("max_new_tokens", "max_total_tokens")
    assert server.calls[0]["params"]["max_tokens"] == budget
