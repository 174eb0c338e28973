"""Far targets: the model-independent affinity of a test item to the history, by hand."""

from __future__ import annotations

import math

import numpy as np

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.evaluation.far_targets import far_recall, far_users, history_affinity


def test_affinity_is_the_mean_cosine_of_training_cooccurrence():
    # Internal ids equal the file's ids here (1..5 all occur). Training prefixes (the last two items
    # of each user are validation and test): u1 [1, 2], u2 [1, 2, 3], u3 [3, 4].
    sequences = [[1, 2, 5, 3], [1, 2, 3, 4, 1], [3, 4, 1, 2]]
    split = LeaveOneOut(SequenceDataset.from_sequences(sequences))
    items = split.dataset.item_ids  # internal id i + 1 -> file id
    assert [str(v) for v in items] == ["1", "2", "3", "4", "5"]
    users, affinity = history_affinity(split, seq_len=10)
    # Item columns over users (u1, u2, u3): 1 -> (1,1,0), 2 -> (1,1,0), 3 -> (0,1,1), 4 -> (0,0,1), 5 -> none.
    cos = {(1, 2): 1.0, (1, 3): 0.5, (2, 3): 0.5, (3, 4): 1 / math.sqrt(2), (1, 4): 0.0, (2, 4): 0.0}

    def c(a, b):
        return 1.0 if a == b else cos.get((min(a, b), max(a, b)), 0.0)

    # u1: test 3, history [1, 2, 5] (5 never in a training prefix: cosine 0).
    # u2: test 1, history [1, 2, 3, 4]. u3: test 2, history [3, 4, 1].
    expected = [(c(3, 1) + c(3, 2) + 0.0) / 3, (c(1, 1) + c(1, 2) + c(1, 3) + c(1, 4)) / 4,
                (c(2, 3) + c(2, 4) + c(2, 1)) / 3]
    np.testing.assert_allclose(affinity, expected, rtol=1e-6)
    # A window of the last item only.
    _, last = history_affinity(split, seq_len=1)
    np.testing.assert_allclose(last, [0.0, c(1, 4), c(2, 1)], rtol=1e-6)
    far, cutoff = far_users(users, affinity)
    assert far.tolist() == [int(users[0])] and cutoff == affinity[0]


def test_far_recall_counts_only_the_far_users():
    ranks = np.array([0, 15, 3, 40])
    users = np.array([1, 2, 3, 4])
    got = far_recall(ranks, users, np.array([2, 4]), (10, 20, 50))
    assert got == {"recall@10": 0.0, "recall@20": 0.5, "recall@50": 1.0}
