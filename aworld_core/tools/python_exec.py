"""``python_exec``: run model-written Python in the sandbox, with the task's files beside it.

The heavy lifting (isolation, limits, what happened) is ``sandbox.run_python``; this tool decides
what the code sees and how the outcome reads to the model:

- every file of the episode's working directory (the attachment, and anything ``read_file``
  extracted from an archive) is copied into the sandbox's fresh working directory under the same
  relative name, so ``open("report.xlsx")`` just works; nothing written there comes back;
- the observation is stdout, then stderr, each labelled; a run that failed (exception, limit,
  timeout) raises ``ToolError`` carrying the same text plus the sandbox's one-line reason, so the
  model sees ``Error: ...`` and the evaluation counts a tool error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aworld_core.tools.base import SyncTool, ToolError, register_tool
from aworld_core.tools.readers import DEFAULT_MAX_CHARS, truncate
from aworld_core.tools.sandbox import SandboxError, SandboxLimits, run_python

log = logging.getLogger(__name__)

__all__ = ["PythonExecTool"]

MAX_COPIED_BYTES = 256 * 1024 * 1024


def collect_files(root: Path, max_bytes: int = MAX_COPIED_BYTES) -> dict[str, bytes]:
    """Regular files under ``root`` by relative POSIX path (symlinks skipped), at most ``max_bytes``."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        if total + size > max_bytes:
            log.warning("python_exec: working directory over %d bytes; %s not copied", max_bytes, path.name)
            continue
        total += size
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


@register_tool("python_exec")
class PythonExecTool(SyncTool):
    """Execute a Python script in an isolated, resource-limited process."""

    name = "python_exec"
    description = ("Run a Python 3 script and return what it prints (use print). Each call is a fresh process "
                   "with no network; the question's attached files are in the current directory. Only the "
                   "standard library is guaranteed to be available.")
    parameters = {"type": "object",
                  "properties": {"code": {"type": "string", "description": "the complete Python script"}},
                  "required": ["code"]}

    def __init__(self, workdir: str | Path | None = None, limits: SandboxLimits | dict[str, Any] | None = None,
                 max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self.workdir = Path(workdir) if workdir is not None else None
        self.limits = limits if isinstance(limits, SandboxLimits) else SandboxLimits(**(limits or {}))
        self.max_chars = max_chars

    def run_sync(self, **arguments: Any) -> str:
        code = str(arguments["code"])
        if not code.strip():
            raise ToolError("code is empty")
        files = collect_files(self.workdir) if self.workdir is not None and self.workdir.is_dir() else {}
        try:
            result = run_python(code, self.limits, files=files)
        except SandboxError as exc:
            raise ToolError(f"the sandbox could not run the code: {exc}") from None
        parts = []
        if result.stdout:
            parts.append(f"[stdout]\n{result.stdout.rstrip()}")
        if result.stderr:
            parts.append(f"[stderr]\n{result.stderr.rstrip()}")
        if not result.ok:
            parts.append(f"[failed: {result.status}] {result.error or ''}".rstrip())
            raise ToolError(truncate("\n".join(parts), self.max_chars))
        if result.output_truncated:
            parts.append("[output was truncated by the sandbox]")
        return truncate("\n".join(parts) or "(no output; print the values you need)", self.max_chars)
