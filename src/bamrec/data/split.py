"""Leave-one-out views over a SequenceDataset, without copying the item array.

For a user with sequence ``s[0..n-1]`` (docs/method.md, "Task and data protocol"):
training uses ``s[:-2]``; validation predicts ``s[-2]`` from ``s[:-2]``; test predicts ``s[-1]``
from ``s[:-1]``. A user needs ``n >= 3`` to be evaluated, and ``n >= 4`` to give training
examples (a target position ``k`` in ``[1, n-3]`` needs at least one item before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: `bamrec data` commands must not load it
    import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.errors import DataError

SPLITS = ("valid", "test")
MIN_EVAL_LENGTH = 3
MIN_TRAIN_LENGTH = 4


@dataclass(frozen=True)
class EvalView:
    """One evaluation split: for each evaluated user, the history slice and the target."""

    users: np.ndarray  # int64 [U_e] internal user ids (1-based)
    history_start: np.ndarray  # int64 [U_e] CSR position of the first history item
    history_end: np.ndarray  # int64 [U_e] CSR position one past the last history item
    targets: np.ndarray  # int64 [U_e] target item ids

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, index: np.ndarray) -> "EvalView":
        """The view restricted to positions ``index`` (a fixed validation subset, a chunk)."""
        return EvalView(self.users[index], self.history_start[index], self.history_end[index], self.targets[index])


class LeaveOneOut:
    """Leave-one-out split of a dataset (train prefixes, validation and test targets)."""

    def __init__(self, dataset: SequenceDataset) -> None:
        self.dataset = dataset
        lengths = dataset.lengths
        self.lengths = lengths
        self.evaluated_users = np.flatnonzero(lengths >= MIN_EVAL_LENGTH) + 1  # int64 [U_e]
        self.train_users = np.flatnonzero(lengths >= MIN_TRAIN_LENGTH) + 1  # int64 [U_t]
        self.num_short_users = int((lengths < MIN_EVAL_LENGTH).sum())
        if len(self.train_users) == 0:
            raise DataError(
                f"no user has the {MIN_TRAIN_LENGTH} interactions leave-one-out needs for training "
                f"(dataset has {dataset.num_users} users, longest sequence {int(lengths.max(initial=0))}); "
                "use a larger dataset or lower the k-core filter"
            )

    def describe_short_users(self) -> str | None:
        """A sentence about users too short to evaluate, or None when there are none."""
        if self.num_short_users == 0:
            return None
        return (
            f"{self.num_short_users} of {self.dataset.num_users} users have fewer than {MIN_EVAL_LENGTH} "
            "interactions: they are left out of validation and test (and give no training examples)"
        )

    def train_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR start and train length (``n - 2``) of every training user, int64 [U_t] each."""
        starts = self.dataset.offsets[self.train_users - 1]
        return starts, self.lengths[self.train_users - 1] - 2

    def view(self, split: str) -> EvalView:
        """The validation (``"valid"``) or test (``"test"``) view."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        users = self.evaluated_users
        starts = self.dataset.offsets[users - 1]
        ends = self.dataset.offsets[users]
        history_end = ends - (2 if split == "valid" else 1)
        targets = self.dataset.items[history_end].astype(np.int64)
        return EvalView(users=users, history_start=starts, history_end=history_end, targets=targets)


def gather_windows(
    items: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``seq_len`` items of each CSR slice ``items[start:end]``, left-aligned and zero-padded.

    Returns ``(history [B, L] int64, mask [B, L] bool)``. Vectorised: one gather for the batch.
    """
    import torch

    lengths = torch.clamp(ends - starts, max=seq_len)  # [B]
    window_start = ends - lengths  # [B]
    positions = torch.arange(seq_len, device=items.device)  # [L]
    mask = positions.unsqueeze(0) < lengths.unsqueeze(1)  # [B, L]
    index = window_start.unsqueeze(1) + positions.unsqueeze(0)  # [B, L]
    index = torch.where(mask, index, torch.zeros_like(index))
    history = items[index].long() * mask  # [B, L]
    return history, mask
