"""Advantage math, token masks and logprob alignment: the parts where a silent off-by-one ruins RL."""

import pyarrow as pa
import pytest
import torch

from aworld_core.training import algos
from aworld_core.training.batch import Sample, collate, response_logprobs, samples_from_table


def test_outcome_reward_lands_on_last_sampled_token():
    mask = torch.tensor([[1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float32)
    r = algos.outcome_token_rewards(torch.tensor([1.0, 0.5, 2.0]), mask)
    assert r[0].tolist() == [0, 0, 0, 0, 1, 0]
    assert r[1].tolist() == [0.5, 0, 0, 0, 0, 0]
    assert r[2].sum() == 0, "an episode with no sampled tokens gets no reward"


def test_grpo_advantages_are_group_normalised_and_masked():
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.float32)
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    adv = algos.compute_advantages("grpo", rewards, mask, ["g1", "g1", "g2", "g2"])
    # group g1: rewards {1, 0} -> +/- 1/sqrt(2) (unbiased std); g2 uniform -> 0
    assert adv[0, 0] == pytest.approx(0.7071, abs=1e-3) and adv[1, 0] == pytest.approx(-0.7071, abs=1e-3)
    assert torch.all(adv[2:] == 0)
    assert torch.all(adv[mask == 0] == 0), "tool/prompt tokens never get an advantage"
    assert torch.all(adv[0][mask[0] > 0] == adv[0, 0]), "outcome advantage is the same on every sampled token"


def test_uniform_groups():
    u = algos.uniform_groups(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0]), ["a", "a", "b", "b", "c"])
    assert u.tolist() == [True, True, False, False, True]


def test_ppo_clip_through_verl_gives_expected_gradient_sign():
    cfg = algos.actor_config(0.2, "token-mean", 2)
    mask = torch.ones(2, 3)
    old = torch.zeros(2, 3)
    new = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0] * 3, [-1.0] * 3])
    loss, metrics = algos.policy_loss("vanilla", old, new, adv, mask, "token-mean", cfg)
    loss.backward()
    assert new.grad[0].lt(0).all() and new.grad[1].gt(0).all(), "raise logprob of positive-advantage tokens"
    assert "actor/pg_clipfrac" in metrics


def _sample(ids, prompt_len, mask, reward=1.0, group="g"):
    return Sample("e", group, ids, prompt_len, mask, [0.0] * len(ids), reward)


def test_collate_aligns_response_columns():
    s1 = _sample([5, 6, 7, 8, 9], 2, [0, 0, 1, 0, 1])
    s2 = _sample([5, 6, 7], 1, [0, 1, 1])
    b = collate([s1, s2], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]
    assert b.response_index.tolist() == [[2, 3, 4], [1, 2, 0]]
    assert b.response_mask.tolist() == [[1, 0, 1], [1, 1, 0]]


class _Bigram(torch.nn.Module):
    """logits at position t depend only on token t: makes the expected logprobs easy to compute.
    (Hidden state at t = one-hot of token t; the output head is the table.)"""

    def __init__(self, vocab=11):
        super().__init__()
        torch.manual_seed(0)
        self.vocab = vocab
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab))

    def get_decoder(self):
        def decoder(input_ids, attention_mask):
            hidden = torch.nn.functional.one_hot(input_ids, self.vocab).float()
            return type("Out", (), {"last_hidden_state": hidden})()
        return decoder

    def get_output_embeddings(self):
        return lambda hidden: hidden @ self.table


def test_minibatch_is_cut_to_its_own_longest_row_and_scores_the_same():
    """select() drops padding no selected row uses; on a real (tiny, random) Qwen3 the response
    logprobs of a trimmed minibatch equal those from the full-width batch and from full logits."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, head_dim=16)).eval()
    short = [_sample([3, 4, 5, 6, 7], 2, [0, 0, 1, 1, 1]), _sample([3, 4, 8, 9], 2, [0, 0, 1, 1])]
    long = _sample(list(range(1, 21)), 3, [0] * 3 + [1] * 17)
    full = collate(short + [long], pad_id=0)
    mb = full.select(torch.tensor([0, 1]))
    assert full.input_ids.shape[1] == 20 and mb.input_ids.shape[1] == 5
    assert mb.response_index.shape == (2, full.response_index.shape[1])  # response width kept: rows line up
    with torch.no_grad():
        trimmed = response_logprobs(model, mb)
        wide = response_logprobs(model, collate(short + [long], pad_id=0))[:2]
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask).logits
    assert torch.allclose(trimmed, wide, atol=1e-5)
    logp = torch.log_softmax(logits, -1)
    expected = logp[0, 1:4].gather(-1, torch.tensor([[5], [6], [7]])).squeeze(-1)  # tokens 5,6,7 at positions 2-4
    assert torch.allclose(trimmed[0, :3], expected, atol=1e-5)


def test_response_logprobs_score_token_p_with_logits_at_p_minus_1():
    model = _Bigram()
    s = _sample([1, 2, 3, 4, 5], 2, [0, 0, 1, 1, 1])
    b = collate([s], pad_id=0)
    lp = response_logprobs(model, b)[0]
    logp = torch.log_softmax(model.table, -1)
    expected = [logp[2, 3], logp[3, 4], logp[4, 5]]
    assert torch.allclose(lp, torch.stack(expected))


def test_samples_from_table_drops_errored_and_empty():
    rows = [
        dict(episode_id="a", iteration=0, task_id="t", token_ids=[1, 2, 3], prompt_tokens=1, loss_mask=[0, 1, 1],
             logprobs=[0, -1, -1], reward=1.0, success=True, stop_reason="answer"),
        dict(episode_id="b", iteration=0, task_id="t", token_ids=[1, 2], prompt_tokens=1, loss_mask=[0, 1],
             logprobs=[0, -1], reward=0.0, success=False, stop_reason="error"),
        dict(episode_id="c", iteration=0, task_id="t", token_ids=[1], prompt_tokens=1, loss_mask=[0],
             logprobs=[0], reward=0.0, success=False, stop_reason="max_total_tokens"),
    ]
    samples = samples_from_table(pa.Table.from_pylist(rows))
    assert [s.episode_id for s in samples] == ["a"] and samples[0].group == "0/t" and samples[0].success


def test_clip_ratio_from_config_reaches_verl():
    """verl reads clip_ratio_low/high; a config clip of 0.1 must clip at 0.9/1.1, not verl's default 0.2."""
    cfg = algos.actor_config(0.1, "token-mean", 2)
    mask = torch.ones(1, 1)
    old = torch.zeros(1, 1)
    new = torch.full((1, 1), 0.15)  # ratio e^0.15 = 1.16: clipped at 1.1, not at 1.2
    _, metrics = algos.policy_loss("vanilla", old, new, torch.ones(1, 1), mask, "token-mean", cfg)
    assert metrics["actor/pg_clipfrac"] == 1.0


def test_clip_higher_lets_positive_advantage_tokens_grow_further():
    """DAPO clip-higher: with clip 0.1 / high 0.28, a ratio of 1.16 with positive advantage is not clipped,
    while the lower bound stays at 0.9."""
    cfg = algos.actor_config(0.1, "token-mean", 2, clip_ratio_high=0.28)
    mask, old = torch.ones(1, 1), torch.zeros(1, 1)
    _, up = algos.policy_loss("vanilla", old, torch.full((1, 1), 0.15), torch.ones(1, 1), mask, "token-mean", cfg)
    assert up["actor/pg_clipfrac"] == 0.0
    _, down = algos.policy_loss("vanilla", old, torch.full((1, 1), -0.15), -torch.ones(1, 1), mask,
                                "token-mean", cfg)
    assert down["actor/pg_clipfrac"] == 1.0


def test_self_imitation_is_token_mean_nll_over_successful_sampled_tokens():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [1, 1, 1], [1, 1, 0]], dtype=torch.float32)
    succ = torch.tensor([1.0, 0.0, 1.0])
    loss = algos.self_imitation_loss(lp, mask, succ)
    # rows 0 and 2 succeeded; their sampled tokens: -1, -3, -7, -8 -> mean NLL 19/4
    assert loss.item() == pytest.approx(19 / 4)
    loss.backward()
    assert lp.grad[1].eq(0).all(), "a failed episode is not imitated"
    assert lp.grad[0, 1] == 0 and lp.grad[2, 2] == 0, "tool/padding tokens are not imitated"
    assert lp.grad[0, 0] == pytest.approx(-0.25), "raise the logprob of imitated tokens"
    none = algos.self_imitation_loss(lp, mask, torch.zeros(3))
    assert none.item() == 0.0 and torch.isfinite(none)


def test_batch_carries_success_separately_from_shaped_reward():
    won = Sample("e", "g", [5, 6], 1, [0, 1], [0.0, 0.0], 1.0, True)
    b = collate([_sample([5, 6, 7], 1, [0, 1, 1], reward=0.4), won], pad_id=0)
    assert b.successes.tolist() == [0.0, 1.0] and b.rewards.tolist() == pytest.approx([0.4, 1.0])
    assert b.select(torch.tensor([1])).successes.tolist() == [1.0]


def test_self_imitation_needs_the_torch_backend():
    from aworld_core.config import TrainConfig

    with pytest.raises(ValueError, match="torch backend only"):
        TrainConfig(backend="verl-fsdp", self_imitation_coef=0.1)
    assert TrainConfig(backend="verl-fsdp").self_imitation_coef == 0.0
