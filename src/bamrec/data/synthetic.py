"""Planted-interest synthetic data: users with one dominant and several minor interests.

Real logs do not say which interests a user has, so whether a multi-interest model keeps its minor
interests (the imbalance BaM, Lee et al. BigData 2024, is about) cannot be measured on them. This
generator plants the interests, so the diagnostics in ``bamrec.evaluation.diagnostics`` can ask:
was the test target from the user's dominant or a minor interest, and was it retrieved?

Generative process (all draws from one ``numpy.random.Generator(seed)``, in arrays, no loop per
user or per interaction):

1. **Topics and items.** The ``items`` items are split into ``topics`` topics of near-equal size
   (``items // topics`` or one more), the assignment shuffled so that item ids carry no topic order.
   Inside a topic, items have a Zipf popularity: the item of popularity rank ``r`` (1-based, a random
   order) has weight ``r ** -item_skew``.
2. **Users' interests.** Each user gets ``interests_per_user`` = m distinct topics, drawn uniformly
   without replacement, and weights ``w_j ∝ j ** -imbalance`` for ``j = 1..m`` (the same profile for
   every user): topic 1 is the dominant interest, the others are minor. With the defaults (m = 4,
   imbalance 1) the weights are 0.48, 0.24, 0.16, 0.12.
3. **Lengths and sessions.** A user's sequence length is uniform in ``[min_len, max_len]``. The
   sequence is cut into sessions: each position after the first starts a new session with probability
   ``1 / session_len`` (geometric session lengths, mean ``session_len``). Each session's topic is one
   of the user's m topics, drawn by weight, independently of the previous session.
4. **Items.** Within each (user, topic) the user consumes the topic's items without replacement in a
   popularity-weighted random order (Efraimidis-Spirakis keys ``E / weight``, E ~ Exp(1)), so a user
   never repeats an item and popular items tend to come first. This needs every topic to hold at
   least ``max_len`` items, which the configuration check enforces.
5. **Noise.** Each position is, with probability ``noise``, replaced by an item drawn uniformly from
   the topics the user has *not* planted (and not already in the user's sequence): an interaction
   unrelated to the user's interests.

The test target (last item) therefore comes from a minor interest for about ``(1 - noise) *
(1 - w_1)`` of the users (about half with the defaults); the manifest records the measured shares.

Output: a prepared dataset (``SequenceDataset.save``) whose manifest holds the parameters under
``"generator"``, plus the ground truth in the same directory:

    truth_item_topic.npy    int64 [N]      topic of internal item i at index i - 1
    truth_user_topics.npy   int64 [U, m]   each user's planted topics, dominant first
    truth_user_weights.npy  float64 [U, m] their weights (each row sums to 1)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bamrec import files, locks
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import ConfigError, DataError

TRUTH_FILES = {
    "item_topic": "truth_item_topic.npy",
    "user_topics": "truth_user_topics.npy",
    "user_weights": "truth_user_weights.npy",
}
_NOISE_ROUNDS = 1000  # redraw rounds for noise items colliding with the user's other items


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the planted-interest generator (one field per ``bamrec data synthetic`` flag)."""

    users: int = 3000  # U, users
    items: int = 2000  # N, items
    topics: int = 20  # latent topics the items are grouped into
    interests_per_user: int = 4  # m, planted topics per user (one dominant, m - 1 minor)
    imbalance: float = 1.0  # Zipf exponent of the user's interest weights (0 = balanced)
    item_skew: float = 1.0  # Zipf exponent of item popularity inside a topic (0 = uniform)
    session_len: float = 3.0  # mean session length (consecutive items from one topic)
    noise: float = 0.05  # probability that an interaction is a random item off the user's topics
    min_len: int = 20  # shortest sequence
    max_len: int = 100  # longest sequence
    seed: int = 2021  # seeds every draw

    def validate(self) -> "SyntheticConfig":
        """Return self, or raise a ConfigError saying which parameter to change."""
        for name in ("users", "items", "topics", "interests_per_user", "min_len", "max_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"synthetic {name} must be positive, got {getattr(self, name)}")
        if self.min_len < 4:
            raise ConfigError(f"min_len must be at least 4 (leave-one-out needs 4 items to train), got {self.min_len}")
        if self.min_len > self.max_len:
            raise ConfigError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        if self.interests_per_user >= self.topics:
            raise ConfigError(
                f"interests_per_user ({self.interests_per_user}) must be smaller than topics ({self.topics}) "
                "so that noise items have topics to come from"
            )
        if self.imbalance < 0 or self.item_skew < 0:
            raise ConfigError("imbalance and item_skew must be >= 0")
        if not self.session_len >= 1:
            raise ConfigError(f"session_len must be at least 1, got {self.session_len}")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"noise must be in [0, 1), got {self.noise}")
        smallest_topic = self.items // self.topics
        if smallest_topic < self.max_len:
            raise ConfigError(
                f"each topic needs at least max_len ({self.max_len}) items so users never repeat an item, "
                f"but {self.items} items / {self.topics} topics leaves {smallest_topic}: raise --items, "
                "or lower --topics or --max-len"
            )
        return self


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The planted structure of a synthetic dataset (internal ids: item i at index i - 1, user u at u - 1)."""

    item_topic: np.ndarray  # int64 [N]
    user_topics: np.ndarray  # int64 [U, m], dominant first
    user_weights: np.ndarray  # float64 [U, m]

    @property
    def num_topics(self) -> int:
        return int(self.item_topic.max()) + 1 if len(self.item_topic) else 0

    @property
    def interests_per_user(self) -> int:
        return int(self.user_topics.shape[1])

    def target_rank(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Planted rank of each item's topic for its user: 0 = dominant, 1.. = minor, -1 = not planted.

        ``users`` and ``items`` are internal 1-based ids of equal length; returns int64 of that length.
        """
        topics = self.item_topic[np.asarray(items, dtype=np.int64) - 1]  # [U_e]
        planted = self.user_topics[np.asarray(users, dtype=np.int64) - 1]  # [U_e, m]
        match = planted == topics[:, None]  # [U_e, m]
        return np.where(match.any(axis=1), match.argmax(axis=1), -1).astype(np.int64)

    def save(self, out_dir: str | Path) -> None:
        """Write the three ``truth_*.npy`` files into ``out_dir``."""
        out = Path(out_dir)
        for name, file in TRUTH_FILES.items():
            with files.atomic_write(out / file) as handle:
                np.save(handle, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)


def load_ground_truth(path: str | Path) -> GroundTruth | None:
    """The ground truth stored beside a prepared dataset, or None when the dataset is not synthetic."""
    path = Path(path)
    present = {name: (path / file).is_file() for name, file in TRUTH_FILES.items()}
    if not any(present.values()):
        return None
    if not all(present.values()):
        missing = ", ".join(TRUTH_FILES[n] for n, ok in present.items() if not ok)
        raise DataError(f"{path} has partial ground truth (missing {missing}); generate the dataset again")
    arrays = {name: np.load(path / file, allow_pickle=False) for name, file in TRUTH_FILES.items()}
    truth = GroundTruth(**arrays)
    if truth.user_topics.ndim != 2 or truth.user_topics.shape != truth.user_weights.shape:
        raise DataError(f"ground truth in {path} has inconsistent shapes; generate the dataset again")
    return truth


def generate(config: SyntheticConfig) -> tuple[SequenceDataset, GroundTruth]:
    """Draw a planted-interest dataset (see the module docstring for the process)."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    item_topic, topic_table, weight_table = _item_topics(config, rng)
    user_topics, user_weights = _user_interests(config, rng)
    lengths = rng.integers(config.min_len, config.max_len + 1, size=config.users)  # [U]
    offsets = np.zeros(config.users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    user_of_pos = np.repeat(np.arange(config.users), lengths)  # [nnz] 0-based users
    rank = _session_ranks(config, rng, offsets, user_of_pos, user_weights)  # [nnz] planted rank per position
    items = _topic_items(config, rng, user_of_pos, rank, user_topics, topic_table, weight_table)  # [nnz]
    noise = rng.random(len(items)) < config.noise  # [nnz]
    items[noise] = _noise_items(config, rng, user_of_pos, noise, user_topics, item_topic)
    truth = GroundTruth(item_topic=item_topic, user_topics=user_topics, user_weights=user_weights)
    dataset = SequenceDataset(
        offsets=offsets,
        items=(items + 1).astype(np.int32),
        user_ids=np.arange(1, config.users + 1, dtype=np.int64),
        item_ids=np.arange(1, config.items + 1, dtype=np.int64),
    )
    manifest = {
        "source": "synthetic",
        "generator": dataclasses.asdict(config),
        "truth": target_origin_shares(dataset, truth),
    }
    return dataclasses.replace(dataset, manifest=manifest), truth


def write_synthetic(
    out_dir: str | Path, config: SyntheticConfig, overwrite: bool = False
) -> tuple[Path, SequenceDataset]:
    """Generate a dataset and save it with its ground truth; returns the directory and the dataset."""
    dataset, truth = generate(config)
    with locks.write_lock(out_dir, "bamrec data synthetic"):  # the arrays and their truth: one writer
        out = dataset.save(out_dir, overwrite=overwrite)
        truth.save(out)
    return out, dataset


def target_origin_shares(dataset: SequenceDataset, truth: GroundTruth) -> dict[str, Any]:
    """Share of users whose test target (last item) is from their dominant / a minor / no planted topic."""
    users = np.arange(1, dataset.num_users + 1)
    last = dataset.items[dataset.offsets[1:] - 1]  # [U]
    rank = truth.target_rank(users, last)  # [U]
    return {
        "test_target_dominant": float(np.mean(rank == 0)),
        "test_target_minor": float(np.mean(rank > 0)),
        "test_target_unplanted": float(np.mean(rank < 0)),
    }


def _item_topics(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item topics [N] and padded per-topic tables of items and popularity weights [T, n_max]."""
    item_topic = rng.permutation(np.arange(config.items) % config.topics).astype(np.int64)  # [N]
    order = np.argsort(item_topic, kind="stable")  # items grouped by topic, random order inside
    sizes = np.bincount(item_topic, minlength=config.topics)  # [T]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))  # [T]
    n_max = int(sizes.max())
    column = np.arange(config.items) - np.repeat(starts, sizes)  # popularity rank - 1 inside the topic
    topic_table = np.full((config.topics, n_max), -1, dtype=np.int64)  # [T, n_max] 0-based items
    topic_table[item_topic[order], column] = order
    weight_table = np.zeros((config.topics, n_max))  # [T, n_max], 0 marks padding
    weight_table[item_topic[order], column] = (column + 1.0) ** -config.item_skew
    return item_topic, topic_table, weight_table


def _user_interests(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Planted topics [U, m] (distinct, uniform) and Zipf weights [U, m], dominant first."""
    m = config.interests_per_user
    keys = rng.random((config.users, config.topics))  # [U, T]
    user_topics = np.argsort(keys, axis=1)[:, :m].astype(np.int64)  # [U, m]
    profile = np.arange(1, m + 1, dtype=np.float64) ** -config.imbalance  # [m]
    user_weights = np.broadcast_to(profile / profile.sum(), (config.users, m)).copy()  # [U, m]
    return user_topics, user_weights


def _session_ranks(
    config: SyntheticConfig,
    rng: np.random.Generator,
    offsets: np.ndarray,
    user_of_pos: np.ndarray,
    user_weights: np.ndarray,
) -> np.ndarray:
    """Planted-interest rank (0..m-1) of every position: one weighted draw per session."""
    nnz = len(user_of_pos)
    starts = rng.random(nnz) < 1.0 / config.session_len  # [nnz] new session here
    starts[offsets[:-1]] = True  # a user's first item always opens a session
    session = np.cumsum(starts) - 1  # [nnz] session index
    session_user = user_of_pos[starts]  # [S]
    cumulative = np.cumsum(user_weights[session_user], axis=1)  # [S, m]
    draw = rng.random(len(session_user)) * cumulative[:, -1]  # [S]
    session_rank = np.minimum((draw[:, None] >= cumulative).sum(axis=1), config.interests_per_user - 1)  # [S]
    return session_rank[session]


def _topic_items(
    config: SyntheticConfig,
    rng: np.random.Generator,
    user_of_pos: np.ndarray,
    rank: np.ndarray,
    user_topics: np.ndarray,
    topic_table: np.ndarray,
    weight_table: np.ndarray,
) -> np.ndarray:
    """0-based item of every position: the j-th visit of (user, topic) takes the j-th item of a
    popularity-weighted random order of the topic, so items never repeat within a user."""
    m = config.interests_per_user
    group = user_of_pos * m + rank  # [nnz] (user, planted rank) group, positions in time order
    order = np.argsort(group, kind="stable")  # [nnz] grouped, time order kept inside a group
    sorted_group = group[order]
    first = np.searchsorted(sorted_group, sorted_group, side="left")  # [nnz] start of own group
    visit = np.empty_like(group)
    visit[order] = np.arange(len(group)) - first  # [nnz] j: how many earlier visits to the group
    items = np.empty(len(group), dtype=np.int64)
    chunk = max(1, 2_000_000 // topic_table.shape[1])  # groups per block: bounds the key matrix
    for lo in range(0, config.users * m, chunk):  # blocks of groups, not users: a handful of rounds
        hi = min(lo + chunk, config.users * m)
        topics = user_topics.reshape(-1)[lo:hi]  # [G] topic of each group
        weights = weight_table[topics]  # [G, n_max]
        with np.errstate(divide="ignore"):
            keys = rng.exponential(size=weights.shape) / weights  # [G, n_max], padding -> inf
        ranking = np.argsort(keys, axis=1)  # [G, n_max] weighted order without replacement
        inside = order[np.searchsorted(sorted_group, lo) : np.searchsorted(sorted_group, hi)]  # positions
        local = group[inside] - lo
        column = ranking[local, visit[inside]]
        items[inside] = topic_table[topics[local], column]
    return items


def _noise_items(
    config: SyntheticConfig,
    rng: np.random.Generator,
    user_of_pos: np.ndarray,
    noise: np.ndarray,
    user_topics: np.ndarray,
    item_topic: np.ndarray,
) -> np.ndarray:
    """Uniform items off the user's planted topics for the noise positions, distinct within the user.

    Rejection in vectorised rounds: a draw is redone when it lands on a planted topic or repeats
    another noise draw of the same user. (Topic items are on planted topics, so they never clash.)"""
    users = user_of_pos[noise]  # [Z]
    draws = np.zeros(len(users), dtype=np.int64)  # [Z]
    pending = np.ones(len(users), dtype=bool)
    for _ in range(_NOISE_ROUNDS):
        draws[pending] = rng.integers(0, config.items, size=int(pending.sum()))
        planted = (user_topics[users] == item_topic[draws][:, None]).any(axis=1)  # [Z]
        _, first = np.unique(users * np.int64(config.items) + draws, return_index=True)
        repeat = np.ones(len(users), dtype=bool)
        repeat[first] = False  # of equal draws, one stays and the others are redone
        pending = planted | repeat
        if not pending.any():
            return draws
    raise ConfigError("could not draw distinct noise items; lower --noise or raise --items")
