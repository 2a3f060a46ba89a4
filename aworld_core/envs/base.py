"""Environments: where tasks come from, which tools an agent gets, and how an episode is scored.

Registered by name (``@register_env("arithmetic")``) and chosen in config, so a new environment is
one module and one decorator; nothing else in the recipe changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

from aworld_core.errors import ConfigError
from aworld_core.tools.base import Tool

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class Task:
    """One verifiable task: the user's message and what counts as solving it."""

    task_id: str
    question: str
    answer: str
    split: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How an episode scored."""

    reward: float
    success: bool


class Environment(ABC):
    """A task distribution with tools and a verifier."""

    name: str

    @abstractmethod
    def tasks(self, split: Split, n: int, offset: int = 0) -> list[Task]:
        """Deterministic tasks ``offset .. offset+n-1`` of a split; splits never share a task."""

    @abstractmethod
    def tools(self) -> list[Tool]:
        """Fresh tool instances for one shard."""

    @abstractmethod
    def system_prompt(self) -> str:
        """The system message every episode starts with."""

    @abstractmethod
    def score(self, task: Task, answer: str | None, tool_calls_ok: int) -> Outcome:
        """Reward an episode from its extracted answer and the number of valid tool calls."""

    def demonstration(self, task: Task) -> list[dict[str, Any]]:
        """A gold multi-turn transcript (OpenAI messages after the user turn), for warm starts."""
        raise NotImplementedError(f"environment {self.name!r} has no demonstrations")


_E = TypeVar("_E", bound=type[Environment])
_ENVS: dict[str, Callable[..., Environment]] = {}


def register_env(name: str) -> Callable[[_E], _E]:
    def deco(cls: _E) -> _E:
        if name in _ENVS:
            raise ValueError(f"environment {name!r} registered twice")
        _ENVS[name] = cls
        return cls

    return deco


def build_env(name: str, seed: int = 0, **params: Any) -> Environment:
    """Construct a registered environment; unknown names and parameters fail with the valid ones."""
    _import_builtin_envs()
    try:
        factory = _ENVS[name]
    except KeyError:
        raise ConfigError(f"unknown environment {name!r} (env.name); registered: {sorted(_ENVS)}") from None
    try:
        return factory(seed=seed, **params)
    except TypeError as exc:
        raise ConfigError(f"env.params for {name!r} are invalid: {exc}") from None


def _import_builtin_envs() -> None:
    from aworld_core.envs import arithmetic  # noqa: F401  (registers itself)
