"""Create the embedded default model: a tiny Qwen3 with its own tokenizer and tool-call chat template.

Nothing may be downloaded from a model hub on these machines, so the project makes its own model:
a byte-level BPE tokenizer trained locally (digits split one per token, so arithmetic stays
learnable) and a randomly initialised Qwen3-architecture causal LM saved as a HuggingFace directory
that vLLM serves and torch/verl train. Creation is deterministic for a given spec.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aworld_core.config import TinyModelSpec
from aworld_core.envs.base import Environment
from aworld_core.errors import ModelNotFound

log = logging.getLogger(__name__)

CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text()
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added but not "special": they must survive detokenisation (vLLM skips special tokens by default).
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
                 "<answer>", "</answer>", "<think>", "</think>"]


def _corpus(env: Environment, n: int = 3000) -> list[str]:
    """Representative text for BPE merges: prompts, tool schemas, calls, results and answers."""
    # The system block is in every prompt: repeat it so BPE merges it into few tokens.
    header = env.system_prompt() + "\n<tools>\n" + "".join(json.dumps(t.schema()) + "\n" for t in env.tools())
    texts = [header + "</tools>"] * 200
    for task in env.tasks("train", n):
        texts.append(task.question)
        for msg in env.demonstration(task):
            texts.append(msg.get("content") or "")
            for call in msg.get("tool_calls", []):
                fn = call["function"]
                texts.append('{"name": "%s", "arguments": %s}' % (fn["name"], fn["arguments"]))
    texts += ["system", "user", "assistant", "tool", "\n"]
    return texts


def build_tokenizer(env: Environment, vocab_size: int):  # -> PreTrainedTokenizerFast
    """Train a byte-level BPE on the environment's text and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(MARKUP_TOKENS),
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(env), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.add_tokens(MARKUP_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def create_tiny_model(out_dir: Path, env: Environment, spec: TinyModelSpec | None = None) -> Path:
    """Write tokenizer + randomly initialised Qwen3 to ``out_dir`` (a HuggingFace model directory)."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    spec = spec or TinyModelSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(env, spec.vocab_size)
    # Exact vocab (no padding to a multiple of 64): a padded id could be sampled yet not decode.
    vocab = len(tokenizer)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    config = Qwen3Config(
        vocab_size=vocab, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, head_dim=spec.head_dim,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=eos_ids[1], eos_token_id=eos_ids[0], pad_token_id=eos_ids[1],
        rope_theta=10000.0, torch_dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = Qwen3ForCausalLM(config)
    # Stop only at the end of a turn: the agent loop relies on every turn ending with <|im_end|>.
    model.generation_config = GenerationConfig(eos_token_id=eos_ids[0], pad_token_id=eos_ids[1],
                                               bos_token_id=eos_ids[1])
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("created tiny Qwen3 (%.2fM params, vocab %d) at %s", n_params / 1e6, vocab, out_dir)
    return out_dir


def check_model_dir(path: Path) -> Path:
    """Fail early, with the fix, if ``path`` is not a servable HuggingFace model directory."""
    path = Path(path)
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).is_file()]
    if not path.is_dir() or missing:
        raise ModelNotFound(
            f"model directory {path} is missing {missing or 'entirely'}; create the tiny default with "
            f"`aworld model init` (or set model.create_if_missing=true), or point model.path at a "
            f"HuggingFace model directory")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelNotFound(f"model directory {path} has no weights (*.safetensors)")
    return path
