"""A checkpoint loaded into a running vLLM server (serve.reload=inplace) serves exactly its weights.

The recipe keeps one server for a whole run and loads each iteration's checkpoint into it. If any
weight stayed behind (vLLM's CPU backend pre-packs the tied output head, which a plain
``reload_weights`` leaves stale), the stored rollout logprobs would disagree with the checkpoint the
trajectories are attributed to, and PPO's importance ratios with them. So: load a checkpoint whose
tied embedding differs clearly from the served one, roll out, and compare the stored logprobs with a
HuggingFace recomputation on that checkpoint; then load the warm model back and check again.
"""

import pytest
import torch

from aworld_core.agent.loop import LoopLimits
from aworld_core.rollout.shard import ShardSpec, run_shard
from aworld_core.storage.store import RunStore
from aworld_core.storage.uri import StorageLocation
from aworld_core.training.batch import collate, response_logprobs, samples_from_table
from aworld_core.training.trainer import copy_tokenizer

pytestmark = pytest.mark.slow
LOGPROB_TOL = 2e-3  # as in test_token_faithfulness: float32 both sides, kernel order differs


def perturbed_copy(src, dst):
    """``src`` with noise on its (tied) embedding: a stale output head shows up as ~0.1 logprob errors."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    assert model.config.tie_word_embeddings, "the test is about the tied head"
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.add_(0.5 * emb.std() * torch.randn(emb.shape, generator=gen))
    model.save_pretrained(dst)
    copy_tokenizer(src, dst)
    return dst


def max_logprob_error(server, model_dir, loc, run_id):
    from transformers import AutoModelForCausalLM

    spec = ShardSpec(run_id=run_id, iteration=0, phase="rollout", shard=0, num_shards=1, env_name="arithmetic",
                     env_params={}, env_seed=1234, split="train", num_tasks=16, samples_per_task=2,
                     endpoints=(server.url,), served_name="policy", tokenizer_dir=str(model_dir),
                     checkpoint_id=run_id, limits=LoopLimits(), concurrency=16, storage=loc)
    assert run_shard(spec).episodes == 32
    batch = collate(samples_from_table(RunStore(loc, run_id).read("episodes")), 0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        hf = response_logprobs(model, batch)
    assert batch.response_mask.sum() > 100
    return float(((hf - batch.rollout_logprobs).abs() * batch.response_mask).max())


def test_checkpoint_loaded_in_place_serves_exactly_its_weights(vllm_server, warm_model_dir, tmp_path):
    other = perturbed_copy(warm_model_dir, tmp_path / "perturbed")
    loc = StorageLocation(str(tmp_path / "runs"))
    try:
        vllm_server.load_checkpoint(other)
        assert vllm_server.model_dir == other.resolve()
        err_other = max_logprob_error(vllm_server, other, loc, "other")
    finally:
        vllm_server.load_checkpoint(warm_model_dir)  # the session's other tests expect the warm model
    err_back = max_logprob_error(vllm_server, warm_model_dir, loc, "back")
    assert err_other < LOGPROB_TOL, f"after loading the perturbed checkpoint: max |vLLM - HF| = {err_other:.2e}"
    assert err_back < LOGPROB_TOL, f"after loading the warm model back: max |vLLM - HF| = {err_back:.2e}"


def test_loading_a_missing_checkpoint_fails_clearly_and_keeps_serving(vllm_server, tmp_path):
    from aworld_core.errors import ModelNotFound

    before = vllm_server.model_dir
    with pytest.raises(ModelNotFound):
        vllm_server.load_checkpoint(tmp_path / "no-such-checkpoint")
    assert vllm_server.model_dir == before and vllm_server.running
