"""Recall on the users whose test item is far from their history: where a second interest should pay.

A single user vector serves the items that look like the bulk of a history; a multi-interest model
should also reach the items that do not. To measure that the same way for every model (SASRec has one
interest, so "far from the dominant interest" cannot be defined per model), the users are split by a
model-independent affinity between the test item ``t`` and the history window ``H`` the model sees:

    a(u) = mean over h in H of  cos(x_t, x_h)

where ``x_i`` is item i's column of the binary user x item matrix of the training prefixes (two items
are close when the same users interacted with both). The *far* users are the third with the lowest
affinity; every cell of a dataset gets the same users, so their recall compares across models.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bamrec.data.split import LeaveOneOut

FAR_SHARE = 1 / 3  # the far users: this share of the evaluated users with the lowest affinity


def cooccurrence_matrix(split: LeaveOneOut) -> sp.csr_matrix:
    """The binary user x item matrix of the training prefixes ``[U, N + 1]`` (column 0 unused)."""
    dataset = split.dataset
    lengths = np.diff(dataset.offsets)  # [U]
    train_lengths = np.maximum(lengths - 2, 0)  # the prefix before validation and test
    rows = np.repeat(np.arange(len(lengths)), train_lengths)
    position_in_user = np.arange(len(dataset.items)) - np.repeat(dataset.offsets[:-1], lengths)
    keep = position_in_user < np.repeat(train_lengths, lengths)
    cols = dataset.items[keep].astype(np.int64)
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)),
                           shape=(len(lengths), dataset.num_items + 1))
    matrix.data[:] = 1.0  # a repeated interaction counts once
    return matrix


def history_affinity(split: LeaveOneOut, seq_len: int, split_name: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``(users [U_e], affinity [U_e])``: each evaluated user's mean cosine between the target and the
    last ``seq_len`` history items (0 where no history item co-occurs with the target)."""
    view = split.view(split_name)
    matrix = cooccurrence_matrix(split).tocsc()
    norms = np.sqrt(np.asarray(matrix.power(2).sum(axis=0)).ravel())  # [N + 1]
    cooc = (matrix.T @ matrix).tocsr()  # [N + 1, N + 1] co-occurrence counts
    starts = np.maximum(view.history_start, view.history_end - seq_len)  # [U_e]
    lengths = view.history_end - starts  # [U_e]
    owner = np.repeat(np.arange(len(view)), lengths)  # [P] evaluated-user index of each pair
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    history = split.dataset.items[np.repeat(starts, lengths) + offsets].astype(np.int64)  # [P]
    target = view.targets[owner]  # [P]
    counts = np.asarray(cooc[target, history]).ravel()  # [P]
    denominator = norms[target] * norms[history]
    cosine = np.divide(counts, denominator, out=np.zeros_like(counts, dtype=np.float64), where=denominator > 0)
    affinity = np.bincount(owner, weights=cosine, minlength=len(view)) / np.maximum(lengths, 1)
    return view.users, affinity


def far_users(users: np.ndarray, affinity: np.ndarray, share: float = FAR_SHARE) -> tuple[np.ndarray, float]:
    """The ``round(share * U)`` users of lowest affinity (ties in user order) and the largest affinity
    among them."""
    count = max(1, round(share * len(users)))
    order = np.argsort(affinity, kind="stable")[:count]
    return users[order], float(affinity[order[-1]])


def far_recall(ranks: np.ndarray, users: np.ndarray, far: np.ndarray, cutoffs: tuple[int, ...]) -> dict[str, float]:
    """``recall@k`` over the ``far`` users, from per-user 0-based test ``ranks`` aligned with ``users``."""
    selected = np.isin(users, far)
    return {f"recall@{k}": float((ranks[selected] < k).mean()) if selected.any() else float("nan")
            for k in cutoffs}
