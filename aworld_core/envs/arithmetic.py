"""The built-in environment: arithmetic questions that need a calculator tool call.

Chosen because a tiny model can learn it on two CPU cores (FIELD_NOTES: 3M-parameter probe) while it
still exercises everything an agent needs: a multi-turn loop, a tool call with JSON arguments, a tool
result fed back, and a final ``<answer>``. Reward is exact match, so every number is checkable.

Tasks are a pure function of (seed, split, index). The split of a question is decided by a hash of
its operands, so train and held-out sets are disjoint by construction, whatever their sizes.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from aworld_core.envs.base import Environment, Outcome, Split, Task, register_env
from aworld_core.tools.base import Tool
from aworld_core.tools.calculator import Calculator

PHRASINGS = [
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "Calculate {a} {op} {b}.",
    "What do you get for {a} {op} {b}?",
    "Find the value of {a} {op} {b}.",
    "Evaluate {a} {op} {b}.",
    "Tell me {a} {op} {b}.",
    "How much is {a} {op} {b}?",
]
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
HELDOUT_ONE_IN = 8
SYSTEM_PROMPT = "Use the calculator tool, then reply with <answer>number</answer>."


def _split_of(a: int, op: str, b: int) -> Split:
    digest = hashlib.sha256(f"{a}{op}{b}".encode()).digest()
    return "heldout" if digest[0] % HELDOUT_ONE_IN == 0 else "train"


REWARD_MODES = ("exact", "digits")


def digit_agreement(answer: str, truth: str) -> float:
    """Share of positions, right-aligned over the longer string, where the characters agree."""
    width = max(len(answer), len(truth), 1)
    a, t = answer.rjust(width), truth.rjust(width)
    return sum(x == y for x, y in zip(a, t)) / width


@register_env("arithmetic")
class ArithmeticEnv(Environment):
    """Two operands in [lo, hi], one of + - *, one of eight phrasings."""

    name = "arithmetic"

    def __init__(self, seed: int = 1234, low: int = 10, high: int = 999,
                 tool_latency_s: float | list[float] = 0.0, tool_faults: dict[str, float] | None = None,
                 reward: str = "exact") -> None:
        if not 0 <= low < high:
            raise ValueError(f"need 0 <= low < high, got low={low} high={high}")
        self.seed, self.low, self.high = seed, low, high
        self.tool_latency_s = tool_latency_s
        self.tool_faults = tool_faults  # fault injection for tests: {"hang": p, "crash": p}
        if reward not in REWARD_MODES:
            raise ValueError(f"reward must be one of {REWARD_MODES}, got {reward!r}")
        self.reward_mode = reward

    def _task(self, split: Split, index: int) -> Task:
        rng = random.Random(f"{self.seed}:{split}:{index}")
        while True:  # rejection-sample until the question falls in the wanted split
            a, b = rng.randint(self.low, self.high), rng.randint(self.low, self.high)
            op = rng.choice(list(OPS))
            if _split_of(a, op, b) == split:
                break
        question = rng.choice(PHRASINGS).format(a=a, op=op, b=b)
        return Task(task_id=f"arith-{split}-{self.seed}-{index}", question=question,
                    answer=str(OPS[op](a, b)), split=split,
                    meta={"a": a, "b": b, "op": op})

    def tasks(self, split: Split, n: int, offset: int = 0) -> list[Task]:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return [self._task(split, i) for i in range(offset, offset + n)]

    def tools(self) -> list[Tool]:
        return [Calculator(latency_s=self.tool_latency_s, seed=self.seed, faults=self.tool_faults)]

    def system_prompt(self) -> str:
        return SYSTEM_PROMPT

    def score(self, task: Task, answer: str | None, tool_calls_ok: int) -> Outcome:
        """Success is 1 only for a valid calculator call and the exact answer (no shortcut by guessing).

        ``reward="exact"``: the reward is that success. ``reward="digits"`` (shaped): a failed episode
        that made a valid call and gave an answer earns up to 0.5 for the share of digits in the right
        places (right-aligned), so groups where every sample fails still tell GRPO which copies were
        closer. Success, and so every reported success rate, stays exact match.
        """
        success = answer is not None and answer.strip() == task.answer and tool_calls_ok >= 1
        if success or self.reward_mode == "exact" or answer is None or tool_calls_ok < 1:
            return Outcome(reward=1.0 if success else 0.0, success=success)
        return Outcome(reward=0.5 * digit_agreement(answer.strip(), task.answer), success=False)

    def demonstration(self, task: Task) -> list[dict[str, Any]]:
        m = task.meta
        expr = f"{m['a']}{m['op']}{m['b']}"
        call = {"id": "call_0", "type": "function",
                "function": {"name": "calculator", "arguments": json.dumps({"expression": expr})}}
        return [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "name": "calculator", "content": task.answer},
            {"role": "assistant", "content": f"<answer>{task.answer}</answer>"},
        ]
