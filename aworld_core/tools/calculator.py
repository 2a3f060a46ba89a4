"""A calculator tool: evaluates arithmetic safely (an AST walk, never ``eval``).

The built-in environment needs a tool whose use is verifiable, and model-written expressions are
untrusted input, so only numbers, + - * / // % ** and parentheses are accepted.
"""

from __future__ import annotations

import ast
import asyncio
import operator
import random
from typing import Any

from aworld_core.tools.base import Tool, ToolError, register_tool

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 64


def evaluate_expression(expression: str) -> int | float:
    """Evaluate an arithmetic expression or raise ToolError saying what is not allowed."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolError(f"cannot parse expression {expression!r}") from None

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
                raise ToolError(f"exponent larger than {MAX_EXPONENT}")
            try:
                return _BINOPS[type(node.op)](left, right)
            except ZeroDivisionError:
                raise ToolError("division by zero") from None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise ToolError("only numbers, + - * / // % ** and parentheses are allowed")

    value = walk(tree)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


FAULT_KINDS = ("hang", "crash")


@register_tool("calculator")
class Calculator(Tool):
    """Arithmetic tool with an optional simulated latency (to model slow web-like tools)."""

    name = "calculator"
    description = "Evaluate an arithmetic expression."
    parameters = {"type": "object",
                  "properties": {"expression": {"type": "string", "description": "e.g. 12*34"}},
                  "required": ["expression"]}

    def __init__(self, latency_s: float | tuple[float, float] | list[float] = 0.0, seed: int = 0,
                 faults: dict[str, float] | None = None) -> None:
        if isinstance(latency_s, (list, tuple)):
            lo, hi = float(latency_s[0]), float(latency_s[1])
        else:
            lo = hi = float(latency_s)
        if lo < 0 or hi < lo:
            raise ToolError(f"latency_s must be a number >= 0 or [low, high], got {latency_s!r}")
        self._latency = (lo, hi)
        self._rng = random.Random(seed)
        self._faults = dict(faults or {})
        unknown = set(self._faults) - set(FAULT_KINDS)
        if unknown or any(not 0 <= p <= 1 for p in self._faults.values()) or sum(self._faults.values()) > 1:
            raise ToolError(f"faults must map {FAULT_KINDS} to probabilities summing to <= 1, got {faults!r}")
        self._fault_rng = random.Random(f"faults:{seed}")

    async def run(self, **arguments: Any) -> str:
        if self._faults:
            await self._maybe_fail()
        lo, hi = self._latency
        if hi > 0:
            await asyncio.sleep(self._rng.uniform(lo, hi))
        return str(evaluate_expression(str(arguments["expression"])))

    async def _maybe_fail(self) -> None:
        """Injected faults, to test that the agent loop survives tools that hang or crash.

        ``hang`` never returns (the loop's ``agent.tool_timeout_s`` must end it); ``crash`` raises a
        non-ToolError exception, like a tool with a bug.
        """
        draw, edge = self._fault_rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += self._faults.get(kind, 0.0)
            if draw < edge:
                if kind == "hang":
                    await asyncio.Event().wait()
                raise RuntimeError("injected tool crash")
