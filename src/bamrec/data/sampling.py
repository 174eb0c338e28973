"""Vectorised training-batch sampling from the CSR arrays (no per-example Python).

Follows the original protocol (docs/method.md, "Task and data protocol"): draw a user uniformly among the users
with training examples, draw a target position ``k`` uniformly in ``[1, len(train_seq) - 1]``, and
use the ``seq_len`` items before ``k`` as the history (left-aligned, zero-padded, with a mask).
``WindowSampler`` draws the other training scheme, SASRec's (Kang & McAuley, ICDM 2018): a user
uniformly, and the most recent ``seq_len + 1`` items of their training prefix as one window whose
every position predicts the next item. All draws use one ``torch.Generator`` on the sampler's device, so a seed fixes the batches, and on a
GPU no host-device synchronisation is needed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bamrec.data.split import LeaveOneOut, gather_windows


class Batch(NamedTuple):
    history: torch.Tensor  # int64 [B, L]
    mask: torch.Tensor  # bool [B, L]
    target: torch.Tensor  # int64 [B], or [B, L] from WindowSampler (the next item per position, 0 = none)
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


class WindowSampler(TrainSampler):
    """Draws SASRec's training batches: a next-item target at every position of the window.

    For a user with training prefix ``s_1 .. s_n``, the window is its last ``m = min(n, seq_len + 1)``
    items; position ``j`` of the history holds ``s_{n-m+1+j}`` and its target is the item after it.
    ``history [B, L]`` and ``target [B, L]`` are left-aligned; ``mask [B, L]`` marks the ``m - 1``
    positions that have a target (the last item of the window is a target only). Padded positions
    hold 0 in both.
    """

    def sample(self) -> Batch:
        """One batch of ``batch_size`` windows."""
        size = self.batch_size
        pick = torch.randint(len(self.users), (size,), generator=self.generator, device=self.device)  # [B]
        starts = self.starts[pick]  # [B]
        window, window_mask = gather_windows(self.items, starts, starts + self.train_lengths[pick],
                                             self.seq_len + 1)  # [B, L + 1]
        mask = window_mask[:, 1:]  # [B, L]: position j has a target when item j + 1 exists
        history = window[:, :-1] * mask  # [B, L]
        target = window[:, 1:]  # [B, L], 0 where the window has ended
        return Batch(history, mask, target, self.users[pick])
