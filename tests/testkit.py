"""Small helpers shared by tests and fixtures (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


from aworld_core.inference.server import find_free_port as free_port  # noqa: E402,F401
from aworld_core.processes import stop_process_group  # noqa: E402,F401


def load_scripted_policy():
    """The scripted OpenAI-compatible policy + web servers (tests/integration/scripted_policy.py)."""
    import importlib.util
    import sys

    path = REPO / "tests" / "integration" / "scripted_policy.py"
    spec = importlib.util.spec_from_file_location("scripted_policy", path)
    assert spec is not None and spec.loader is not None
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def fake_model_dir(root: Path) -> Path:
    """A directory that passes ``check_model_dir`` (for command-line and fleet tests that never load it)."""
    d = root / "model"
    d.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (d / name).write_text("{}")
    return d
