"""Token layout of the agent loop: concatenated pieces equal the chat template's own rendering."""

import pytest

from aworld_core.agent.loop import ChatTokens, load_tokenizer
from aworld_core.training.sft import demonstration_sample


@pytest.fixture(scope="module")
def chat(base_model_dir):
    return ChatTokens(load_tokenizer(str(base_model_dir)))


def test_demonstration_tokens_equal_template_rendering(chat, env):
    for task in env.tasks("heldout", 5):
        s = demonstration_sample(chat, env, task)
        msgs = [{"role": "system", "content": env.system_prompt()}, {"role": "user", "content": task.question}]
        msgs += env.demonstration(task)
        rendered = chat.tok.apply_chat_template(msgs, tools=[t.schema() for t in env.tools()], tokenize=False)
        assert chat.tok.decode(s.token_ids) + "\n" == rendered
        sampled = chat.tok.decode([i for i, m in zip(s.token_ids, s.loss_mask) if m])
        assert "<tool_call>" in sampled and f"<answer>{task.answer}</answer>" in sampled
        assert "<tool_response>" not in sampled, "tool results are never trained on"


def test_observation_ids_start_after_end_of_turn(chat):
    obs = chat.tok.decode(chat.observation_ids([{"role": "tool", "name": "c", "content": "42"}]))
    assert obs == "\n<|im_start|>user\n<tool_response>42</tool_response><|im_end|>\n<|im_start|>assistant\n"


def test_vocab_has_no_unreachable_ids(base_model_dir, chat):
    import json
    cfg = json.loads((base_model_dir / "config.json").read_text())
    assert cfg["vocab_size"] == len(chat.tok), "a padded vocab lets the model sample undecodable ids"
