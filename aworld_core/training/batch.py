"""Turn stored trajectories into padded training tensors.

An episode's "response" is everything after its first prompt: model turns (loss mask 1) interleaved
with tool observations (mask 0). Tensors are laid out verl-style: ``input_ids`` [B, L] right-padded,
and response-aligned tensors [B, R] where column k is token ``prompt_len + k`` of that episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import torch


@dataclass
class Sample:
    """One episode, ready for training."""

    episode_id: str
    group: str  # GRPO group: the task within the iteration
    token_ids: list[int]
    prompt_len: int
    loss_mask: list[int]  # over the whole sequence
    logprobs: list[float]  # rollout logprobs over the whole sequence
    reward: float
    success: bool = False  # the environment's verdict (reward may be shaped; success is exact)


def samples_from_table(episodes: pa.Table) -> list[Sample]:
    """Samples from an ``episodes`` table; episodes that ended in an error carry no signal and are dropped."""
    cols = episodes.select(["episode_id", "iteration", "task_id", "token_ids", "prompt_tokens", "loss_mask",
                            "logprobs", "reward", "success", "stop_reason"]).to_pylist()
    out = []
    for r in cols:
        if r["stop_reason"] == "error" or not any(r["loss_mask"]):
            continue
        out.append(Sample(r["episode_id"], f"{r['iteration']}/{r['task_id']}", r["token_ids"],
                          r["prompt_tokens"], r["loss_mask"], r["logprobs"], float(r["reward"]),
                          bool(r["success"])))
    return out


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] long
    response_index: torch.Tensor  # [B, R] long: position in input_ids of response token k
    response_mask: torch.Tensor  # [B, R] float: 1 where the model sampled the token
    rollout_logprobs: torch.Tensor  # [B, R] float
    rewards: torch.Tensor  # [B] float
    successes: torch.Tensor  # [B] float, 1.0 where the episode succeeded
    groups: list[str]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, idx: torch.Tensor) -> "Batch":
        """The rows ``idx``, with the padding columns that none of them uses cut off.

        The full batch is padded to its longest episode (a rare long failure can be 2-3x the median);
        a minibatch only needs its own longest, and the forward pass costs what it is padded to. The
        response tensors keep their width, so per-row results line up with the full batch's.
        """
        attn = self.attention_mask[idx]
        width = max(int(attn.sum(dim=1).max()), 1) if len(idx) else self.input_ids.shape[1]
        return Batch(self.input_ids[idx, :width], attn[:, :width], self.response_index[idx],
                     self.response_mask[idx], self.rollout_logprobs[idx], self.rewards[idx],
                     self.successes[idx], [self.groups[i] for i in idx.tolist()])


def collate(samples: list[Sample], pad_id: int) -> Batch:
    """Pad samples into one Batch."""
    if not samples:
        raise ValueError("no samples to train on")
    L = max(len(s.token_ids) for s in samples)
    R = max(len(s.token_ids) - s.prompt_len for s in samples)
    B = len(samples)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    r_index = torch.zeros((B, R), dtype=torch.long)
    r_mask = torch.zeros((B, R), dtype=torch.float32)
    r_lp = torch.zeros((B, R), dtype=torch.float32)
    for i, s in enumerate(samples):
        n, p = len(s.token_ids), s.prompt_len
        input_ids[i, :n] = torch.tensor(s.token_ids, dtype=torch.long)
        attn[i, :n] = 1
        k = n - p
        r_index[i, :k] = torch.arange(p, n)
        r_mask[i, :k] = torch.tensor(s.loss_mask[p:], dtype=torch.float32)
        r_lp[i, :k] = torch.tensor(s.logprobs[p:], dtype=torch.float32)
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
    successes = torch.tensor([float(s.success) for s in samples], dtype=torch.float32)
    return Batch(input_ids, attn, r_index, r_mask, r_lp, rewards, successes, [s.group for s in samples])


def response_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Log-probability the model assigns to each response token: [B, R] (0 where padded).

    The output head runs only at the positions that score a response token (the hidden state at
    position p-1 predicts token p), not over the whole prompt: same numbers, less work.
    """
    hidden = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    prev = (batch.response_index - 1).clamp(min=0)
    picked = torch.gather(hidden, 1, prev.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    picked_logits = model.get_output_embeddings()(picked).float()
    targets = torch.gather(batch.input_ids, 1, batch.response_index)
    lp = torch.log_softmax(picked_logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return lp * (batch.response_index > 0).float()
