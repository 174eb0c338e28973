"""Vectorised training-batch sampling from the CSR arrays (no per-example Python).

Follows the original protocol (``bam-method.md`` section 1): draw a user uniformly among the users
with training examples, draw a target position ``k`` uniformly in ``[1, len(train_seq) - 1]``, and
use the ``seq_len`` items before ``k`` as the history (left-aligned, zero-padded, with a mask).
All draws use one ``torch.Generator`` on the sampler's device, so a seed fixes the batches, and on a
GPU no host-device synchronisation is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bamrec.data.split import LeaveOneOut, gather_windows


class Batch(NamedTuple):
    history: torch.Tensor  # int64 [B, L]
    mask: torch.Tensor  # bool [B, L]
    target: torch.Tensor  # int64 [B]
    user: torch.Tensor  # int64 [B] internal user ids


class TrainSampler:
    """Draws training batches of ``(history, mask, target)``."""

    def __init__(
        self,
        split: LeaveOneOut,
        seq_len: int,
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.device = torch.device(device)
        starts, train_lengths = split.train_bounds()
        self.items = torch.from_numpy(split.dataset.items).to(self.device)  # int32 [nnz]
        self.users = torch.from_numpy(split.train_users).to(self.device)  # int64 [U_t]
        self.starts = torch.from_numpy(starts).to(self.device)  # int64 [U_t]
        self.train_lengths = torch.from_numpy(train_lengths).to(self.device)  # int64 [U_t]
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def sample(self) -> Batch:
        """One batch of ``batch_size`` examples."""
        size = self.batch_size
        pick = torch.randint(len(self.users), (size,), generator=self.generator, device=self.device)  # [B]
        lengths = self.train_lengths[pick]  # [B]
        uniform = torch.rand(size, generator=self.generator, device=self.device)  # [B]
        # k in [1, n_train - 1]: the target and at least one history item lie in the training prefix.
        k = 1 + (uniform * (lengths - 1)).long().clamp(max=lengths - 2)  # [B]
        target_pos = self.starts[pick] + k  # [B]
        history, mask = gather_windows(self.items, self.starts[pick], target_pos, self.seq_len)
        target = self.items[target_pos].long()  # [B]
        return Batch(history, mask, target, self.users[pick])
