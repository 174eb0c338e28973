"""Candidate generation from a trained model: the one code path behind ``bamrec recommend``
(one user, ``--all-users``), ``Run.recommend`` and the HTTP service (``bamrec.serve``).

A query is a known user (original id; the model reads the last ``seq_len`` items of the user's whole
sequence) or an ad-hoc history of original item ids, oldest first, plus ``k`` and
``exclude_history``. A batch of queries is answered with one forward pass of the interest extractor
and one multi-interest search, exact (``topk_items``) or through a faiss ``ItemIndex``; the results
are in the run's original ids. Scores are ``max_k m_k . e_i`` (MIND, Li et al. CIKM 2019; ComiRec,
Cen et al. KDD 2020), as in ``bamrec.retrieval.recommend``.

A batch's forward pass and search equal one query's up to float rounding (matrix products of other
shapes round differently in the last bit), so scores can differ by about 1e-7 between a query
answered alone and in a batch, and items whose scores are that close can swap. For HNSW and IVF the
over-fetch of a batch also follows its longest exclusion list, so an approximate list can differ
slightly more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import gather_windows
from bamrec.errors import BamrecError, ConfigError, DataError, TooLargeError, UnknownIdError
from bamrec.data.csr import Csr, history_csr
from bamrec.data.metadata import ItemMetadata
from bamrec.models.inference import inference_fn

InterestFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# ``history [B, L], mask [B, L] -> weights [B, K, L]``: what each interest draws from each position.
WeightsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Recommendation:
    """One recommended item."""

    rank: int  # 1-based position in the list
    item: Any  # original item id
    score: float  # max over interests of the inner product
    interest: int  # index of the interest vector that scored it highest
    metadata: dict[str, Any] | None = None  # the item's metadata (title, ...) when the dataset has some

    def as_dict(self) -> dict[str, Any]:
        """``rank, item, score, interest`` and the metadata columns, flat: what ``--json`` prints."""
        fields = {"rank": self.rank, "item": self.item, "score": self.score, "interest": self.interest}
        return {**fields, **(self.metadata or {})}


@dataclass(frozen=True)
class Query:
    """A known ``user`` (original id) or an ad-hoc history ``items`` (original ids, oldest first)."""

    user: Any = None
    items: Sequence[Any] | None = None
    k: int = 20
    exclude_history: bool = False


@dataclass(frozen=True)
class Limits:
    """Bounds on a query batch, so that one request cannot take the service down."""

    max_k: int = 1000  # largest k (capped by the catalogue size); --max-k on serve and recommend raises it
    max_history: int = 10_000  # longest ad-hoc history (only the last seq_len items reach the model)
    max_batch: int = 256  # most queries in one batch

    def __post_init__(self) -> None:
        for name in ("max_k", "max_history", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class Searcher(Protocol):
    """Multi-interest top-k: ``(rows [B, k], scores [B, k], interest [B, k])``, best first."""

    def search(self, interests: Any, k: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ...


class ExactSearch:
    """The exact chunked top-k (``topk_items``) behind the ``Searcher`` interface."""

    kind = "exact"

    def __init__(self, item_embeddings: torch.Tensor, item_chunk_size: int = 16384) -> None:
        from bamrec.evaluation.ranking import check_finite

        self.item_embeddings = item_embeddings.detach()
        self.item_chunk_size = item_chunk_size
        # Once here, not on every request: the check is a pass over the whole item table.
        check_finite("item embeddings", self.item_embeddings)

    def search(self, interests: Any, k: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from bamrec.retrieval.recommend import topk_items

        queries = torch.as_tensor(interests).to(self.item_embeddings.dtype)
        rows, scores, interest = topk_items(queries, self.item_embeddings, k, exclude=exclude,
                                            item_chunk_size=self.item_chunk_size, check_items=False)
        return rows.cpu().numpy(), scores.cpu().float().numpy(), interest.cpu().numpy()


class Candidates:
    """Answers batches of ``Query`` from an interest extractor, an item table and a searcher."""

    def __init__(self, interest_fn: InterestFn, item_ids: Sequence[Any], item_rows: dict[str, int], seq_len: int,
                 searcher: Searcher, dataset: Callable[[], SequenceDataset] | None = None,
                 limits: Limits = Limits(), device: torch.device | str = "cpu",
                 metadata: Callable[[], ItemMetadata | None] | None = None,
                 weights_fn: WeightsFn | None = None, weights_kind: str | None = None) -> None:
        self.interest_fn = interest_fn
        self.weights_fn = weights_fn
        self.weights_kind = weights_kind if weights_fn is not None else None
        self._metadata_fn = metadata
        self._metadata: ItemMetadata | None = None
        self._metadata_loaded = False
        self.item_ids = list(item_ids)  # [N + 1], item_ids[0] is the padding row's (None)
        self.item_rows = item_rows  # str(original id) -> row
        self.seq_len = seq_len
        self.searcher = searcher
        self._dataset_fn = dataset
        self._dataset: SequenceDataset | None = None
        self._user_index: dict[Any, int] | None = None
        self.limits = limits
        self.device = torch.device(device)

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    def dataset(self) -> SequenceDataset:
        """The run's dataset, loaded (and checked) on first use."""
        if self._dataset_fn is None:
            raise DataError("this model has no dataset attached: query with a history of item ids instead of a user")
        if self._dataset is None:
            self._dataset = self._dataset_fn()
        return self._dataset

    def item_metadata(self) -> ItemMetadata | None:
        """The items' metadata (titles, ...), loaded on first use; None when there is none."""
        if not self._metadata_loaded:
            self._metadata = self._metadata_fn() if self._metadata_fn is not None else None
            self._metadata_loaded = True
        return self._metadata

    def describe(self, row: int) -> dict[str, Any] | None:
        """The metadata of item row ``row`` (internal id), or None without metadata."""
        metadata = self.item_metadata()
        return None if metadata is None else metadata.row(row)

    def user_row(self, user: Any) -> int:
        """The internal id (1-based) of original user id ``user``; UnknownIdError if absent."""
        dataset = self.dataset()
        if self._user_index is None:
            self._user_index = dataset.user_index()
        key = coerce_id(user, dataset.user_ids)
        if key not in self._user_index:
            # The id as the dataset stores it: "999" typed into a form reads "unknown user 999" for integer ids.
            raise UnknownIdError(f"unknown user {key!r}: not in the run's dataset ({dataset.num_users} users)")
        return self._user_index[key]

    def item_row_array(self, items: Sequence[Any]) -> np.ndarray:
        """Rows of original item ids; UnknownIdError naming the unknown ones."""
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
            raise DataError("items must be a list of item ids")
        if len(items) > self.limits.max_history:
            raise TooLargeError(f"history of {len(items)} items is longer than the limit of {self.limits.max_history}")
        if not items:
            raise DataError("the history is empty: give at least one item id")
        rows = [self.item_rows.get(str(item)) for item in items]
        unknown = [item for item, row in zip(items, rows) if row is None]
        if unknown:
            raise UnknownIdError(f"unknown item id(s) {unknown[:10]}: not in the run's item map ({self.num_items} items)")
        return np.asarray(rows, dtype=np.int64)

    def check_k(self, k: Any) -> int:
        top = min(self.limits.max_k, self.num_items)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= top:
            raise ConfigError(f"k must be an integer in [1, {top}], got {k!r}" + self._limit_hint(k))
        return int(k)

    def _limit_hint(self, k: Any) -> str:
        """How to raise max_k, when it (not the catalogue) is what refused ``k``."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= self.limits.max_k:
            return ""
        if self.limits.max_k >= self.num_items:
            return ""
        return (f" ({self.limits.max_k} is the limit max_k: raise it with --max-k N on bamrec serve and "
                f"bamrec recommend, or run.candidates(max_k=N) in Python)")

    def histories(self, queries: Sequence[Query]) -> list[np.ndarray]:
        """Each query's history as item rows (a known user's whole sequence), validated."""
        if len(queries) > self.limits.max_batch:
            raise TooLargeError(f"batch of {len(queries)} queries is larger than the limit of {self.limits.max_batch}")
        out = []
        for query in queries:  # request validation: per query by nature, not a hot path
            if (query.user is None) == (query.items is None):
                raise DataError("give either a user id or a history of item ids, not both")
            if query.user is not None:
                out.append(self.dataset().sequence(self.user_row(query.user)).astype(np.int64))
            else:
                out.append(self.item_row_array(query.items))
        return out

    def _windows(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                               torch.Tensor, torch.Tensor]:
        """``histories`` as one CSR (``items [nnz]``, ``starts [B]``, ``ends [B]``) and the model's
        input windows (``history [B, L]``, ``mask [B, L]``)."""
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.int64)
        ends = torch.cumsum(lengths, 0)  # [B]
        starts = ends - lengths  # [B]
        items = torch.from_numpy(np.concatenate(histories)) if histories else torch.zeros(0, dtype=torch.int64)
        history, mask = gather_windows(items, starts, ends, self.seq_len)  # [B, L]
        return items, starts, ends, history, mask

    def _batch(self, histories: list[np.ndarray], exclude: np.ndarray) -> tuple[torch.Tensor, Csr]:
        """Interests ``[B, K, D]`` of ``histories`` and the exclusion Csr (empty where not ``exclude``)."""
        items, starts, ends, history, mask = self._windows(histories)
        interests = self.interest_fn(history.to(self.device), mask.to(self.device))  # [B, K, D]
        excluded_ends = torch.where(torch.from_numpy(exclude), ends, starts)  # [B]
        return interests, history_csr(items, starts, excluded_ends)

    def interests(self, queries: Sequence[Query]) -> np.ndarray:
        """The K interest vectors ``[B, K, D]`` (float32) of each query."""
        histories = self.histories(queries)
        if not histories:
            return np.zeros((0, 0, 0), dtype=np.float32)
        interests, _ = self._batch(histories, np.zeros(len(histories), dtype=bool))
        return interests.detach().cpu().float().numpy()

    def recommend(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        """Top-``k`` recommendations of each query, best first (fewer when exclusions leave fewer)."""
        ks = [self.check_k(query.k) for query in queries]
        histories = self.histories(queries)
        if not histories:
            return []
        exclude = np.array([bool(query.exclude_history) for query in queries])
        interests, exclusion = self._batch(histories, exclude)
        rows, scores, interest = self.searcher.search(interests, max(ks), exclusion)
        return [self._recommendations(rows[b, :k], scores[b, :k], interest[b, :k]) for b, k in enumerate(ks)]

    def explain(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """What each query's interests are made of, for ``/interests`` and the explorer page.

        Per query: ``interests`` ``[K][D]``; ``history``, the window the model read (the last
        ``seq_len`` items, oldest first) as ``{"item", metadata...}``; ``weights`` ``[K][len(history)]``,
        what each interest draws from each of those items (``weights_kind``: attention for
        ComiRec-SA/REMI, routing coupling for MIND/ComiRec-DR; None for a model without such weights);
        ``cosine`` ``[K][K]`` between the interest vectors; ``top`` ``[K][<=k]``, each interest's own
        best items by ``m_k . e_i`` (the merged list of ``recommend`` takes the max over these).
        """
        ks = [self.check_k(query.k) for query in queries]
        histories = self.histories(queries)
        if not histories:
            return []
        items, starts, ends, history, mask = self._windows(histories)
        history, mask = history.to(self.device), mask.to(self.device)
        interests = self.interest_fn(history, mask)  # [B, K, D]
        weights = self.weights_fn(history, mask) if self.weights_fn is not None else None  # [B, K, L]
        batch, num_interests, dim = interests.shape
        exclude = torch.tensor([bool(query.exclude_history) for query in queries])
        excluded_ends = torch.where(exclude, ends, starts)  # [B]
        # Each interest searched alone: one query row per (user, interest), with its user's exclusions.
        exclusion = history_csr(items, starts.repeat_interleave(num_interests),
                                excluded_ends.repeat_interleave(num_interests))
        rows, scores, _ = self.searcher.search(interests.reshape(batch * num_interests, 1, dim), max(ks), exclusion)
        rows, scores = rows.reshape(batch, num_interests, -1), scores.reshape(batch, num_interests, -1)  # [B, K, k]
        vectors = interests.detach().cpu().float()  # [B, K, D]
        unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [B, K, D]
        cosine = unit @ unit.transpose(1, 2)  # [B, K, K]
        lengths = mask.sum(1).tolist()  # [B] window lengths
        windows = history.cpu().tolist()
        out = []
        for b, k in enumerate(ks):  # building the JSON answer: per query and per item by nature
            window = windows[b][: lengths[b]]
            out.append({
                "interests": vectors[b].tolist(),
                "history": [{"item": self.item_ids[row], **(self.describe(row) or {})} for row in window],
                "history_length": len(histories[b]),
                "weights_kind": self.weights_kind,
                "weights": None if weights is None else weights[b, :, : lengths[b]].cpu().float().tolist(),
                "cosine": cosine[b].tolist(),
                "top": [[r.as_dict() for r in self._recommendations(rows[b, i, :k], scores[b, i, :k],
                                                                    np.full(k, i))]
                        for i in range(num_interests)],
            })
        return out

    def _recommendations(self, rows: np.ndarray, scores: np.ndarray, interest: np.ndarray) -> list[Recommendation]:
        found = rows >= 0  # -1: fewer than k rankable items were left after exclusion
        return [Recommendation(rank=rank, item=self.item_ids[row], score=float(score), interest=int(slot),
                               metadata=self.describe(row))
                for rank, (row, score, slot) in enumerate(zip(rows[found].tolist(), scores[found].tolist(),
                                                              interest[found].tolist()), start=1)]

    def search_users(self, users: np.ndarray, k: int, exclude_history: bool
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-``k`` rows/scores/interests ``[U, k]`` of internal ``users`` from their whole sequences."""
        dataset = self.dataset()
        items = torch.from_numpy(dataset.items)
        starts = torch.from_numpy(dataset.offsets[users - 1])  # [U]
        ends = torch.from_numpy(dataset.offsets[users])  # [U]
        history, mask = gather_windows(items, starts, ends, self.seq_len)  # [U, L]
        interests = self.interest_fn(history.to(self.device), mask.to(self.device))  # [U, K, D]
        exclusion = history_csr(items, starts, ends) if exclude_history else None
        return self.searcher.search(interests, k, exclusion)


def coerce_id(value: Any, ids: np.ndarray) -> Any:
    """A user-typed id in the type the dataset stores (ints for numeric id maps)."""
    if np.issubdtype(ids.dtype, np.integer):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise UnknownIdError(f"user ids of this dataset are integers, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UnknownIdError(f"user ids of this dataset are integers, got {value!r}") from None
    return str(value)


def module_interest_fn(model: torch.nn.Module) -> InterestFn:
    """``history, mask -> interests`` of a backbone, in eval mode and without autograd, through its
    inference function (``bamrec.models.inference``: a snapshot of the weights, so make a new one
    after they change)."""
    forward = inference_fn(model)

    def interests(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if model.training:
            raise BamrecError("the model is in training mode; call model.eval() before serving it")
        with torch.inference_mode():
            return forward(history, mask)

    return interests


def module_weights_fn(model: torch.nn.Module) -> WeightsFn | None:
    """``history, mask -> weights [B, K, L]`` of a backbone (``forward_with_weights``, its plain
    formula), or None for a model without per-interest weights over the history."""
    if getattr(model, "weights_kind", None) is None:
        return None

    def weights(history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if model.training:
            raise BamrecError("the model is in training mode; call model.eval() before serving it")
        with torch.inference_mode():
            return model.forward_with_weights(history, mask)[1]

    return weights
