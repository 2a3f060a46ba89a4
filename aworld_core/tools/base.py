"""Tools the agent can call, and the registry that finds them by name.

A tool is an async callable with an OpenAI function schema. Async because most real tools wait (web
search, code execution, a remote API): one event loop keeps many episodes' tool calls in flight.
Tools are registered by name so that environments and configs choose them with a string.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, TypeVar

from aworld_core.errors import ConfigError


class ToolError(Exception):
    """A tool could not do what was asked. Its message becomes the observation the agent sees."""


class Tool(ABC):
    """One callable tool. Subclasses set ``name``, ``description``, ``parameters`` and ``run``."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]

    def schema(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry the chat template renders."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters}}

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Check arguments against the schema's required keys and primitive types.

        Raises ToolError with a message the model can act on (it is fed back as the observation).
        """
        if not isinstance(arguments, dict):
            raise ToolError(f"arguments for {self.name} must be a JSON object, got {type(arguments).__name__}")
        props = self.parameters.get("properties", {})
        for key in self.parameters.get("required", []):
            if key not in arguments:
                raise ToolError(f"{self.name} needs argument {key!r}")
        types = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
                 "object": dict, "array": list}
        for key, value in arguments.items():
            if key not in props:
                raise ToolError(f"{self.name} has no argument {key!r}; it takes {sorted(props)}")
            want = types.get(props[key].get("type", ""))
            if want is not None and not isinstance(value, want):
                raise ToolError(f"argument {key!r} of {self.name} must be {props[key]['type']}, "
                                f"got {type(value).__name__}")
        return arguments

    @abstractmethod
    async def run(self, **arguments: Any) -> str:
        """Do the work and return the observation text."""


class SyncTool(Tool):
    """A tool whose work is a quick blocking function; run in a thread so the loop keeps going."""

    @abstractmethod
    def run_sync(self, **arguments: Any) -> str:
        """Blocking implementation."""

    async def run(self, **arguments: Any) -> str:
        return await asyncio.to_thread(self.run_sync, **arguments)


_T = TypeVar("_T", bound=type[Tool])
_TOOLS: dict[str, Callable[..., Tool]] = {}


def register_tool(name: str) -> Callable[[_T], _T]:
    """Class decorator: make a tool constructible by name (``build_tool(name, **params)``)."""

    def deco(cls: _T) -> _T:
        if name in _TOOLS:
            raise ValueError(f"tool {name!r} registered twice")
        _TOOLS[name] = cls
        return cls

    return deco


def build_tool(name: str, **params: Any) -> Tool:
    """Construct a registered tool, or say which names exist."""
    try:
        factory = _TOOLS[name]
    except KeyError:
        raise ConfigError(f"unknown tool {name!r}; registered tools: {sorted(_TOOLS)}") from None
    return factory(**params)


def registered_tools() -> list[str]:
    return sorted(_TOOLS)
