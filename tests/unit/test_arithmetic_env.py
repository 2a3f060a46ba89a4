"""The built-in environment: deterministic, disjoint splits, exact-match reward, safe calculator."""

import asyncio

import pytest

from aworld_core.envs.base import build_env
from aworld_core.errors import ConfigError
from aworld_core.tools.base import ToolError, build_tool
from aworld_core.tools.calculator import evaluate_expression


def test_tasks_are_deterministic():
    a, b = build_env("arithmetic", seed=7), build_env("arithmetic", seed=7)
    assert a.tasks("train", 20) == b.tasks("train", 20)
    assert a.tasks("train", 5, offset=3) == a.tasks("train", 8)[3:]
    assert build_env("arithmetic", seed=8).tasks("train", 5) != a.tasks("train", 5)


def test_splits_are_disjoint():
    env = build_env("arithmetic", seed=1)
    key = lambda t: (t.meta["a"], t.meta["op"], t.meta["b"])  # noqa: E731
    train = {key(t) for t in env.tasks("train", 3000)}
    held = {key(t) for t in env.tasks("heldout", 500)}
    assert not train & held


def test_answers_are_correct():
    for t in build_env("arithmetic").tasks("heldout", 50):
        m = t.meta
        assert int(t.answer) == eval(f"{m['a']}{m['op']}{m['b']}")  # trusted test input


def test_reward_needs_exact_answer_and_a_valid_call():
    env = build_env("arithmetic")
    t = env.tasks("train", 1)[0]
    assert env.score(t, t.answer, 1).reward == 1.0
    assert env.score(t, t.answer, 0).reward == 0.0, "guessing without the tool is not rewarded"
    assert env.score(t, str(int(t.answer) + 1), 1).reward == 0.0
    assert env.score(t, None, 1).success is False
    assert env.score(t, f" {t.answer} ", 2).success is True


def test_unknown_env_and_bad_params():
    with pytest.raises(ConfigError, match="registered"):
        build_env("nope")
    with pytest.raises(ConfigError, match="env.params"):
        build_env("arithmetic", bogus=1)


@pytest.mark.parametrize("expr, value", [("1+2", 3), ("12*34", 408), ("7-10", -3), ("(2+3)*4", 20),
                                         ("7/2", 3.5), ("8/2", 4), ("2**10", 1024), ("-5", -5)])
def test_calculator(expr, value):
    assert evaluate_expression(expr) == value


@pytest.mark.parametrize("expr, fragment", [("__import__('os')", "only numbers"), ("1/0", "division"),
                                            ("2**1000", "exponent"), ("1+", "parse"), ("x", "only numbers"),
                                            ("1" * 300, "longer")])
def test_calculator_rejects(expr, fragment):
    with pytest.raises(ToolError, match=fragment):
        evaluate_expression(expr)


def test_tool_validation_and_latency():
    tool = build_tool("calculator", latency_s=0.05)
    with pytest.raises(ToolError, match="needs argument"):
        tool.validate({})
    with pytest.raises(ToolError, match="must be string"):
        tool.validate({"expression": 5})
    with pytest.raises(ToolError, match="no argument"):
        tool.validate({"expression": "1", "extra": 1})
    import time
    t0 = time.perf_counter()
    assert asyncio.run(tool.run(expression="2+2")) == "4"
    assert time.perf_counter() - t0 >= 0.05


def test_injected_tool_faults_hang_or_crash_and_become_error_observations():
    from aworld_core.agent.loop import _run_tool
    from aworld_core.agent.parsing import ToolCall
    from aworld_core.tools.calculator import Calculator

    async def calls(tool, n):
        return [await _run_tool({"calculator": tool}, ToolCall("calculator", {"expression": "2+3"}), 0.05)
                for _ in range(n)]

    hang = asyncio.run(calls(Calculator(faults={"hang": 1.0}), 2))
    assert hang == [("", "tool calculator timed out after 0.05 s")] * 2
    crash = asyncio.run(calls(Calculator(faults={"crash": 1.0}), 1))
    assert crash == [("", "tool calculator failed: RuntimeError: injected tool crash")]
    mixed = asyncio.run(calls(Calculator(faults={"hang": 0.3, "crash": 0.3}, seed=1), 60))
    kinds = {err.split(":")[0] if err else "ok" for _, err in mixed}
    assert kinds == {"ok", "tool calculator timed out after 0.05 s", "tool calculator failed"}


@pytest.mark.parametrize("faults", [{"explode": 0.1}, {"hang": 1.5}, {"hang": 0.6, "crash": 0.6}])
def test_bad_fault_rates_are_refused(faults):
    with pytest.raises(ToolError, match="faults must map"):
        build_env("arithmetic", tool_faults=faults).tools()


def test_digit_shaped_reward_gives_partial_credit_but_success_stays_exact():
    from aworld_core.envs.arithmetic import digit_agreement

    env = build_env("arithmetic", reward="digits")
    task = env.tasks("train", 1)[0]
    truth = task.answer
    assert env.score(task, truth, 1).reward == 1.0 and env.score(task, truth, 1).success
    wrong_last = truth[:-1] + str((int(truth[-1]) + 1) % 10)
    shaped = env.score(task, wrong_last, 1)
    assert not shaped.success and 0.0 < shaped.reward < 0.5
    assert shaped.reward == pytest.approx(0.5 * (len(truth) - 1) / len(truth))
    assert env.score(task, truth, 0).reward == 0.0, "no valid tool call: no credit at all"
    assert env.score(task, None, 1).reward == 0.0
    assert build_env("arithmetic").score(task, wrong_last, 1).reward == 0.0, "exact mode: no partial credit"
    assert digit_agreement("158430", "158403") == pytest.approx(4 / 6)
    assert digit_agreement("-202", "202") == pytest.approx(3 / 4)
    with pytest.raises((ValueError, ConfigError)):
        build_env("arithmetic", reward="bogus")
