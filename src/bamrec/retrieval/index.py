"""faiss indexes over the item table and multi-interest search on them.

A multi-interest user is K query vectors; an item's score is ``max_k m_k . e_i`` (MIND, Li et al.
CIKM 2019; ComiRec, Cen et al. KDD 2020; REMI, Xie et al. RecSys 2023; BaM, Lee et al. BigData 2024),
the same rule as the exact ``bamrec.retrieval.recommend.topk_items``. Search here:

1. all ``B * K`` interests of a batch go to faiss in one ``search`` call, ``fetch`` results each;
2. the K lists of a user are merged, an item found by several interests is kept once, with the
   interest that scored it highest (lowest interest index on equal scores);
3. excluded items (a user's history) are dropped, and the rest is ordered by score descending,
   item row ascending: the ties rule of ``evaluation/ranking.py`` and ``topk_items``;
4. users left with fewer than ``k`` items, or (flat index) whose k-th score is not strictly above
   the best score faiss may have cut off, are searched again with twice the ``fetch`` (and, for IVF,
   twice ``nprobe``), until the whole catalogue is fetched. Approximate indexes that still come
   back short (an HNSW graph that does not reach enough items) fall back to the exact search for
   those users, so ``k`` results always come back while at least ``k`` items are rankable.

Index kinds (``IndexParams.kind``), all with inner-product metric:

- ``flat``: ``IndexFlatIP``, exhaustive. With step 4 it returns exactly the brute-force top-k and
  its ties rule. Scores come from faiss's own matrix product; they can differ from torch's in the
  last bit, which can only swap two items whose scores are within float rounding (tested equal on
  exactly representable scores, where ties are everywhere).
- ``hnsw``: ``IndexHNSWFlat`` (Malkov, Yashunin, TPAMI 2018), ``hnsw_m`` links per node,
  ``ef_construction`` at build, ``ef_search`` at query time.
- ``ivf``: ``IndexIVFFlat`` over a flat inner-product coarse quantizer, ``nlist`` k-means cells
  (default ``4 * sqrt(N)``) trained on at most ``train_size`` items, ``nprobe`` cells searched.

Row 0 of the item table (padding) is never indexed. faiss labels are item rows (``1..N``). When
faiss exposes GPUs (a faiss-gpu build) and ``gpu=True``, flat and IVF indexes search on GPU 0;
files are always written as CPU indexes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bamrec import files
from bamrec.errors import BamrecError, ConfigError, DataError, RunDirError

INDEX_KINDS = ("flat", "hnsw", "ivf")
RETRIEVALS = ("exact",) + INDEX_KINDS
INDEX_FILE = "index.faiss"
PARAMS_FILE = "index.json"


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a dependency of the `retrieval` extra
        raise BamrecError("faiss is not installed: pip install 'bamrec[retrieval]' (faiss-cpu)") from None
    return faiss


@dataclass(frozen=True)
class IndexParams:
    """How an index is built and searched; recorded next to the index file."""

    kind: str = "flat"  # one of INDEX_KINDS
    hnsw_m: int = 32  # HNSW: graph links per node
    ef_construction: int = 200  # HNSW: candidate list size while building
    ef_search: int = 128  # HNSW: candidate list size while searching (at least the fetch size)
    nlist: int = 0  # IVF: number of k-means cells; 0 = 4 * sqrt(N), at most N / 39 (faiss's rule)
    nprobe: int = 16  # IVF: cells searched per query
    train_size: int = 200_000  # IVF: items sampled to train the quantizer
    seed: int = 0  # IVF: k-means and training-sample seed

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r}: choose one of {', '.join(INDEX_KINDS)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "train_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"index parameter {name} must be a positive integer, got {value!r}")
        if isinstance(self.nlist, bool) or not isinstance(self.nlist, int) or self.nlist < 0:
            raise ConfigError(f"index parameter nlist must be >= 0, got {self.nlist!r}")

    def resolved_nlist(self, num_items: int) -> int:
        """The number of IVF cells used for ``num_items`` items."""
        if self.nlist:
            return min(self.nlist, num_items)
        return int(max(1, min(round(4 * math.sqrt(num_items)), num_items // 39)))


def index_params(kind: str, **overrides: Any) -> IndexParams:
    """IndexParams of ``kind`` with ``overrides`` (unknown names are a ConfigError)."""
    names = {f.name for f in dataclasses.fields(IndexParams)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown index parameter(s) {', '.join(unknown)}: choose from {', '.join(sorted(names))}")
    return IndexParams(kind=kind, **overrides)


def _as_float32(vectors: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().cpu().float().numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32)


class ItemIndex:
    """A faiss index over item rows ``1..N`` of an item table, with multi-interest search.

    Build with ``ItemIndex.build(item_embeddings [N + 1, D], params)``; save/load with ``save`` and
    ``ItemIndex.load``. ``search(interests [B, K, D], k, exclude)`` returns the same triple as
    ``topk_items``: ``(rows [B, k] int64, scores [B, k] float32, interest [B, k] int64)``.
    """

    def __init__(self, index: Any, params: IndexParams, vectors: np.ndarray, build_seconds: float,
                 gpu: bool = False) -> None:
        self.params = params
        self.vectors = vectors  # [N + 1, D] float32, row 0 = padding (exact fallback and re-checks)
        self.build_seconds = build_seconds
        self.cpu_index = index
        self.index = _to_gpu(index, params) if gpu else index
        self.on_gpu = self.index is not index
        self._configure(params.nprobe)

    @property
    def num_items(self) -> int:
        return self.vectors.shape[0] - 1

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @classmethod
    def build(cls, item_embeddings: torch.Tensor | np.ndarray, params: IndexParams | None = None,
              gpu: bool = False) -> "ItemIndex":
        """Index rows ``1..N`` of ``item_embeddings [N + 1, D]`` (row 0 = padding, left out)."""
        faiss = _faiss()
        params = params or IndexParams()
        vectors = _as_float32(item_embeddings)
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise DataError(f"item embeddings must be [N + 1, D] with N >= 1, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise BamrecError("item embeddings contain NaN or infinite values; the model is broken")
        items, dim = vectors[1:], vectors.shape[1]
        start = time.perf_counter()
        if params.kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif params.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
        else:
            nlist = params.resolved_nlist(len(items))
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = params.seed
            rng = np.random.default_rng(params.seed)
            sample = items if len(items) <= params.train_size else items[
                np.sort(rng.choice(len(items), params.train_size, replace=False))]
            # faiss wants 39 training points per cell; a tiny catalogue gets fewer cells' worth, no warning.
            index.cp.min_points_per_centroid = int(min(index.cp.min_points_per_centroid, max(1, len(sample) // nlist)))
            index.train(sample)
        index.add(items)
        return cls(index, params, vectors, time.perf_counter() - start, gpu=gpu)

    def _configure(self, nprobe: int) -> None:
        if self.params.kind == "ivf":
            nlist = self.cpu_index.nlist
            self._set_nprobe(min(nprobe, nlist))
        elif self.params.kind == "hnsw":
            self.index.hnsw.efSearch = self.params.ef_search

    def _set_nprobe(self, nprobe: int) -> None:
        faiss = _faiss()
        if self.on_gpu:
            faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", nprobe)
        else:
            self.index.nprobe = nprobe
        self._nprobe = nprobe

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Write ``index.faiss`` and ``index.json`` (kind, build parameters, sizes, build time)."""
        faiss = _faiss()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # Serialised in memory (the size of the item table) so that the file is written atomically.
        files.write_bytes(directory / INDEX_FILE, faiss.serialize_index(self.cpu_index).tobytes())
        record = self.describe()
        files.write_text(directory / PARAMS_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return record

    def describe(self) -> dict[str, Any]:
        """The index's build parameters and sizes, as recorded in ``index.json``."""
        record: dict[str, Any] = {"params": dataclasses.asdict(self.params), "num_items": self.num_items,
                                  "dim": self.dim, "build_seconds": round(self.build_seconds, 4),
                                  "faiss": _faiss().__version__, "metric": "inner_product"}
        if self.params.kind == "ivf":
            record["nlist"] = int(self.cpu_index.nlist)
        return record

    @classmethod
    def load(cls, directory: str | Path, item_embeddings: torch.Tensor | np.ndarray,
             gpu: bool = False) -> "ItemIndex":
        """Read an index written by ``save``; ``item_embeddings`` must be the table it was built on."""
        faiss = _faiss()
        directory = Path(directory)
        if not (directory / INDEX_FILE).is_file() or not (directory / PARAMS_FILE).is_file():
            raise RunDirError(f"no faiss index in {directory} (expected {INDEX_FILE} and {PARAMS_FILE})")
        record = json.loads((directory / PARAMS_FILE).read_text())
        params = IndexParams(**record["params"])
        vectors = _as_float32(item_embeddings)
        index = faiss.read_index(str(directory / INDEX_FILE))
        if index.ntotal != vectors.shape[0] - 1 or index.d != vectors.shape[1]:
            raise RunDirError(
                f"index in {directory} holds {index.ntotal} items of size {index.d}, but the item table is "
                f"{vectors.shape[0] - 1} x {vectors.shape[1]}: it was built for another model; export again")
        return cls(index, params, vectors, float(record.get("build_seconds", 0.0)), gpu=gpu)

    def search(self, interests: torch.Tensor | np.ndarray, k: int, exclude: Any = None,
               fetch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` best items per user by ``max_k m_k . e_i`` as the index finds them, best first.

        ``interests [B, K, D]``; ``exclude`` as for ``topk_items`` (None, a Csr, an ``(offsets, ids)``
        tuple or a list of per-user row arrays). ``fetch`` is the first per-interest over-fetch
        (default ``2 * k`` plus the 90th percentile of the exclusion lengths). Places beyond a user's rankable items
        hold row -1, score -inf, interest -1, as in ``topk_items``.
        """
        from bamrec.retrieval.recommend import as_csr

        queries = _as_float32(interests)
        if queries.ndim != 3 or queries.shape[2] != self.dim:
            raise DataError(f"interests must be [B, K, {self.dim}], got shape {queries.shape}")
        if not np.isfinite(queries).all():
            raise BamrecError("interests contain NaN or infinite values; the model is broken")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        if k > self.num_items:
            raise ConfigError(f"k={k} is larger than the catalogue ({self.num_items} items); ask for at most {self.num_items}")
        batch = queries.shape[0]
        out_rows = np.full((batch, k), -1, dtype=np.int64)
        out_scores = np.full((batch, k), -np.inf, dtype=np.float32)
        out_interest = np.full((batch, k), -1, dtype=np.int64)
        if batch == 0:
            return out_rows, out_scores, out_interest
        csr = as_csr(exclude, batch)
        if csr is not None:
            offsets, ids = csr.offsets.numpy(), csr.ids.numpy()
            if len(ids) and (ids.min() < 0 or ids.max() > self.num_items):
                raise DataError(f"exclusion ids must lie in [0, {self.num_items}] (the item table's rows)")
        else:
            offsets, ids = np.zeros(batch + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        lengths = np.diff(offsets)
        width = self.num_items + 1
        excluded_keys = np.unique(np.repeat(np.arange(batch), lengths) * width + ids)  # sorted (user, row) keys
        real = excluded_keys % width > 0  # padding row 0 is not in the index anyway
        rankable = self.num_items - np.bincount(excluded_keys[real] // width, minlength=batch)  # [B]
        wanted = np.minimum(k, rankable)  # [B] results each user can have

        # Most users need k plus the part of their history near the top; the 90th percentile of the
        # exclusion lengths covers most at once, the rest grow geometrically.
        fetch = int(fetch) if fetch else 2 * k + int(np.quantile(lengths, 0.9)) if len(ids) else 2 * k
        nprobe = self.params.nprobe
        pending = np.arange(batch)
        while len(pending):
            fetch = min(fetch, self.num_items)
            rows, scores, interest, cut = self._search_merged(queries[pending], fetch, pending, excluded_keys, k)
            found = (rows >= 0).sum(1)  # [P]
            done = found >= wanted[pending]
            if self.params.kind == "flat":
                # Exact only when no item faiss left out can tie with or beat the k-th result (a user
                # with fewer than k rankable items has them all once ``found`` reaches ``wanted``).
                done &= (found < k) | (scores[:, -1] > cut)
            exhausted = fetch >= self.num_items and (self.params.kind != "ivf" or self._nprobe >= self.cpu_index.nlist)
            if exhausted:
                done[:] = True
            finished = pending[done]
            out_rows[finished], out_scores[finished], out_interest[finished] = rows[done], scores[done], interest[done]
            pending = pending[~done]
            fetch *= 2
            if self.params.kind == "ivf":
                nprobe = min(2 * nprobe, self.cpu_index.nlist)
                self._set_nprobe(nprobe)
        self._configure(self.params.nprobe)
        short = np.flatnonzero((out_rows >= 0).sum(1) < wanted)
        if len(short):  # an approximate index that cannot reach enough items: exact for those users
            self._exact_fallback(queries, k, short, offsets, ids, out_rows, out_scores, out_interest)
        return out_rows, out_scores, out_interest

    def _search_merged(self, queries: np.ndarray, fetch: int, users: np.ndarray, excluded_keys: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One batched faiss search of every interest, merged per user (see the module docstring).

        Returns rows/scores/interest ``[P, k]`` and ``cut [P]``, the best score faiss may have left
        out of a user's lists (-inf when every list is complete). Row-wise sorts of the ``[P, K * fetch]``
        candidates, no Python loop over users.
        """
        from bamrec.retrieval.recommend import order_keys

        num_users, num_interests, dim = queries.shape
        width = self.num_items + 1
        if self.params.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.params.ef_search, fetch)
        scores, labels = self.index.search(queries.reshape(-1, dim), fetch)  # [P * K, fetch] each
        labels = labels.astype(np.int64, copy=False) + 1  # faiss positions -> item rows; -1 -> 0 (none)
        # Best score faiss may have left out of each interest's list: its last returned score, when
        # the list is full (fewer than ``fetch`` results means everything reachable was returned).
        full = labels[:, -1] > 0
        cut = np.where(full & (fetch < self.num_items), scores[:, -1], -np.inf).reshape(num_users, num_interests)
        rows = labels.reshape(num_users, -1)  # [P, K * fetch]
        scores = scores.reshape(num_users, -1)  # [P, K * fetch]
        invalid = rows == 0
        if len(excluded_keys):
            keys = users[:, None] * width + rows  # [P, K * fetch]
            place = np.minimum(np.searchsorted(excluded_keys, keys), len(excluded_keys) - 1)
            invalid |= excluded_keys[place] == keys
        rows_t = torch.from_numpy(rows)
        scores_t = torch.from_numpy(np.where(invalid, np.float32(-np.inf), scores).astype(np.float32, copy=False))
        interest_t = torch.arange(num_interests).repeat_interleave(fetch).expand(num_users, -1)  # [P, K * fetch]
        # De-duplicate: order by (score desc, interest asc), then stably by row; the first of each
        # row's run is its best score (lowest interest on equal scores); the others drop out.
        by_score = torch.argsort(order_keys(scores_t, interest_t), dim=1, descending=True, stable=True)
        by_row = torch.sort(rows_t.gather(1, by_score), dim=1, stable=True).indices
        order = by_score.gather(1, by_row)
        rows_t, scores_t, interest_t = rows_t.gather(1, order), scores_t.gather(1, order), interest_t.gather(1, order)
        repeat = torch.zeros_like(rows_t, dtype=torch.bool)
        repeat[:, 1:] = rows_t[:, 1:] == rows_t[:, :-1]
        scores_t = scores_t.masked_fill(repeat, float("-inf"))
        # Rank: score descending, item row ascending (the exact ranking's ties rule).
        take = min(k, rows_t.shape[1])
        best = order_keys(scores_t, rows_t).topk(take, dim=1).indices  # [P, take]
        out_scores = np.full((num_users, k), -np.inf, dtype=np.float32)
        out_rows = np.full((num_users, k), -1, dtype=np.int64)
        out_interest = np.full((num_users, k), -1, dtype=np.int64)
        top_scores = scores_t.gather(1, best).numpy()
        missing = np.isneginf(top_scores)
        out_scores[:, :take] = top_scores
        out_rows[:, :take] = np.where(missing, -1, rows_t.gather(1, best).numpy())
        out_interest[:, :take] = np.where(missing, -1, interest_t.gather(1, best).numpy())
        return out_rows, out_scores, out_interest, cut.max(1)

    def _exact_fallback(self, queries: np.ndarray, k: int, users: np.ndarray, offsets: np.ndarray,
                        ids: np.ndarray, out_rows: np.ndarray, out_scores: np.ndarray,
                        out_interest: np.ndarray) -> None:
        from bamrec.retrieval.recommend import topk_items

        exclude = [ids[offsets[u]:offsets[u + 1]] for u in users]  # only the few short users
        rows, scores, interest = topk_items(torch.from_numpy(queries[users]), torch.from_numpy(self.vectors), k,
                                            exclude=exclude)
        out_rows[users], out_scores[users], out_interest[users] = rows.numpy(), scores.numpy(), interest.numpy()


def _to_gpu(index: Any, params: IndexParams) -> Any:
    """``index`` on GPU 0 when faiss has GPU support and a GPU; HNSW stays on the CPU (no GPU HNSW)."""
    faiss = _faiss()
    if params.kind == "hnsw" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    resources = faiss.StandardGpuResources()
    gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu_index._resources = resources  # keep the resources alive as long as the index
    return gpu_index


def faiss_has_gpu() -> bool:
    """Whether the installed faiss can search on a GPU here."""
    faiss = _faiss()
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_index(item_embeddings: torch.Tensor | np.ndarray, kind: str = "flat", gpu: bool = False,
                **params: Any) -> ItemIndex:
    """Build an ``ItemIndex`` of ``kind`` (``flat``, ``hnsw``, ``ivf``) with optional parameter overrides."""
    return ItemIndex.build(item_embeddings, index_params(kind, **params), gpu=gpu)


def check_retrieval(retrieval: str) -> str:
    """``retrieval`` if it is one of RETRIEVALS, else a ConfigError."""
    if retrieval not in RETRIEVALS:
        raise ConfigError(f"unknown retrieval {retrieval!r}: choose one of {', '.join(RETRIEVALS)}")
    return retrieval


def overlap_recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each user's exact top-k rows (``exact [U, k]``, -1 = none) that ``found`` holds."""
    if found.shape[0] != exact.shape[0]:
        raise DataError("found and exact lists must have one row per user")
    users = np.repeat(np.arange(exact.shape[0]), exact.shape[1])
    width = max(int(exact.max(initial=0)), int(found.max(initial=0))) + 1
    exact_keys = users * width + exact.reshape(-1)
    valid = exact.reshape(-1) >= 0
    found_users = np.repeat(np.arange(found.shape[0]), found.shape[1])
    found_keys = (found_users * width + found.reshape(-1))[found.reshape(-1) >= 0]
    hit = np.isin(exact_keys, found_keys) & valid
    per_user_total = np.bincount(users, weights=valid, minlength=exact.shape[0])
    per_user_hit = np.bincount(users, weights=hit, minlength=exact.shape[0])
    mask = per_user_total > 0
    return float((per_user_hit[mask] / per_user_total[mask]).mean()) if mask.any() else 1.0


def exact_search(item_embeddings: torch.Tensor | np.ndarray, interests: torch.Tensor | np.ndarray, k: int,
                 exclude: Sequence | Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``topk_items`` with numpy in and out, the same triple as ``ItemIndex.search``."""
    from bamrec.retrieval.recommend import topk_items

    table = item_embeddings if isinstance(item_embeddings, torch.Tensor) else torch.from_numpy(_as_float32(item_embeddings))
    queries = interests if isinstance(interests, torch.Tensor) else torch.from_numpy(_as_float32(interests))
    rows, scores, interest = topk_items(queries.to(table.dtype), table.detach(), k, exclude=exclude)
    return rows.cpu().numpy(), scores.cpu().float().numpy(), interest.cpu().numpy()
