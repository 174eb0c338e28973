"""The Python API: train a model, load a run directory, evaluate it and recommend from it.

    import bamrec
    result = bamrec.train({"data": "prepared/ml-1m", "model": {"model": "remi", "seq_len": 200},
                           "train": {"selection": "bam-p", "multi_loss": True}}, out="runs/remi-bam")
    run = bamrec.load_run("runs/remi-bam")
    run.evaluate(split="test", protocol="reference")
    run.recommend(user=42, k=10)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from bamrec.config import RunConfig, run_config_from_dict, run_config_from_flat
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.errors import BamrecError, RunDirError
from bamrec.evaluation.model_eval import evaluate_model_result
from bamrec.models import build_backbone
from bamrec.retrieval.service import (Candidates, ExactSearch, Query, Recommendation, module_interest_fn,
                                     module_weights_fn)
from bamrec.rundir import layout as ckpt
from bamrec.training.callbacks import CheckCallback
from bamrec.training.objective import Objective
from bamrec.devices import resolve_device
from bamrec.training.trainer import TrainResult
from bamrec.training.trainer import train as _train


def train(config: RunConfig | Mapping[str, Any], out: str | Path, *, overwrite: bool = False,
          resume: bool = False, progress: bool | None = None, verbose: bool = True,
          callbacks: Sequence[CheckCallback] = ()) -> TrainResult:
    """Train as ``config`` says (a RunConfig, a nested dict, or a flat dict of option names).

    ``callbacks`` receive each validation check (``bamrec.training.callbacks``)."""
    if not isinstance(config, RunConfig):
        nested = any(key in config for key in ("model", "train", "eval")) and all(
            isinstance(config.get(key, {}), Mapping) for key in ("model", "train", "eval"))
        config = run_config_from_dict(config) if nested else run_config_from_flat(config)
    resolve_device(config.train.device)  # a device this machine lacks: one clear error before any work
    return _train(config, out, overwrite=overwrite, resume=resume, progress=progress, verbose=verbose,
                  callbacks=callbacks)


class Run:
    """A trained (or imported) model in a run directory, usable without the trainer."""

    def __init__(self, path: Path, config: RunConfig, record: dict[str, Any], objective: Objective,
                 item_ids: list[Any], item_rows: dict[str, int], device: torch.device) -> None:
        self.path = path
        self.config = config
        self.record = record
        self.objective = objective
        self.item_ids = item_ids
        self.item_rows = item_rows
        self.device = device
        self._dataset: SequenceDataset | None = None
        self._searchers: dict[Any, Any] = {}

    @property
    def model(self) -> torch.nn.Module:
        """The backbone (``forward(items, mask) -> interests [B, K, D]``)."""
        return self.objective.backbone

    def summary(self) -> dict[str, Any]:
        file = self.path / ckpt.SUMMARY_FILE
        return ckpt.read_json(file) if file.is_file() else {}

    def dataset(self, data: str | Path | None = None) -> SequenceDataset:
        """The run's dataset (or ``data``), refused when its checksum differs from the run's."""
        if data is None and self._dataset is not None:
            return self._dataset
        path = Path(data) if data is not None else Path(self.record["dataset"]["path"])
        if not (path / "manifest.json").is_file():
            raise RunDirError(
                f"the dataset of run {self.path} is not at {path}; pass --data DIR with the prepared dataset"
            )
        dataset = SequenceDataset.load(path)
        expected = self.record["dataset"]["checksum"]
        actual = dataset.manifest.get("checksum") or dataset.checksum()
        if actual != expected:
            raise RunDirError(
                f"dataset {path} (checksum {actual[:12]}) is not the one run {self.path} was trained on "
                f"(checksum {expected[:12]}); evaluate it on its own dataset"
            )
        if data is None:
            self._dataset = dataset
        return dataset

    def evaluate(self, split: str = "test", protocol: str = "standard", cutoffs: Sequence[int] | None = None,
                 data: str | Path | None = None, progress: bool = False, retrieval: str = "exact",
                 index: Any = None) -> dict[str, Any]:
        """Metrics on the validation or test split (``recall@10``, ``ndcg@10``, ..., ``users``, ``protocol``).

        ``retrieval="exact"`` ranks every target over the whole catalogue; ``"flat"``, ``"hnsw"`` or
        ``"ivf"`` measure recall of the lists a faiss index retrieves (``bamrec.retrieval.index_eval``),
        with ``index`` a prebuilt ``ItemIndex`` (an export's) or None to build one.
        """
        return self.evaluate_result(split, protocol, cutoffs, data, progress, retrieval, index).metrics()

    def evaluate_result(self, split: str = "test", protocol: str = "standard",
                        cutoffs: Sequence[int] | None = None, data: str | Path | None = None,
                        progress: bool = False, retrieval: str = "exact", index: Any = None):
        """The full EvalResult (per-user ranks and the interest that retrieved each target)."""
        from bamrec.config import check_choice
        from bamrec.retrieval.index import check_retrieval

        check_choice("protocol", protocol)
        check_retrieval(retrieval)
        dataset = self.dataset(data)
        view = LeaveOneOut(dataset).view(split)
        if retrieval == "exact":
            return evaluate_model_result(self.model, dataset, view, self.config, protocol=protocol,
                                         device=self.device, cutoffs=tuple(cutoffs) if cutoffs else None,
                                         progress=progress)
        from bamrec.retrieval.index_eval import evaluate_with_search

        return evaluate_with_search(module_interest_fn(self.model), self.searcher(retrieval, index),
                                    self.model.item_embeddings(), dataset, view,
                                    seq_len=self.config.model.seq_len, protocol=protocol,
                                    cutoffs=tuple(cutoffs) if cutoffs else self.config.eval.cutoffs)

    def searcher(self, retrieval: str = "exact", index: Any = None, **index_params: Any):
        """The search behind ``recommend``: exact, or a faiss ``ItemIndex`` (``index``, else built and cached)."""
        from bamrec.retrieval.index import ItemIndex, build_index, check_retrieval

        check_retrieval(retrieval)
        if index is not None and retrieval != "exact":
            if not isinstance(index, ItemIndex):
                raise BamrecError(f"index must be an ItemIndex, got {type(index).__name__}")
            if index.params.kind != retrieval:
                raise BamrecError(f"the index given is a {index.params.kind} index, not {retrieval}: "
                                  f"ask for --retrieval {index.params.kind} (or exact)")
            return index
        key = (retrieval, tuple(sorted(index_params.items())))
        if key not in self._searchers:
            with torch.inference_mode():
                table = self.model.item_embeddings().detach()  # [N + 1, D]
            self._searchers[key] = (ExactSearch(table, self.config.eval.item_chunk_size) if retrieval == "exact"
                                    else build_index(table, retrieval, **index_params))
        return self._searchers[key]

    def candidates(self, retrieval: str = "exact", index: Any = None, data: str | Path | None = None,
                   **limits: Any) -> Candidates:
        """A ``Candidates`` over this run (the path ``recommend``, ``--all-users`` and ``bamrec serve`` share)."""
        from bamrec.retrieval.service import Limits

        self.model.eval()
        return Candidates(module_interest_fn(self.model), self.item_ids, self.item_rows, self.config.model.seq_len,
                          self.searcher(retrieval, index), dataset=lambda: self.dataset(data),
                          limits=Limits(**limits), device=self.device, metadata=lambda: self.item_metadata(data),
                          weights_fn=module_weights_fn(self.model), weights_kind=self.model.weights_kind)

    def item_metadata(self, data: str | Path | None = None):
        """The item metadata (titles, ...) stored with the run's dataset (``bamrec.data.metadata``), or
        None when the dataset has none, is not where the run says, or is not the run's dataset."""
        from bamrec.data.metadata import load_metadata

        path = Path(data) if data is not None else Path(self.record["dataset"]["path"])
        try:
            manifest = ckpt.read_json(path / "manifest.json")
        except (OSError, BamrecError, ValueError):
            return None
        if manifest.get("checksum") != self.record["dataset"]["checksum"]:
            return None  # other items: their metadata would put wrong titles on this run's ids
        return load_metadata(path)

    def interests(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Interest vectors ``[B, K, D]`` of histories given as embedding rows (internal ids), oldest first."""
        seq_len = self.config.model.seq_len
        history = torch.zeros(len(histories), seq_len, dtype=torch.long)
        mask = torch.zeros(len(histories), seq_len, dtype=torch.bool)
        for row, items in enumerate(histories):  # builds a handful of ad-hoc histories, not a hot path
            window = list(items)[-seq_len:]
            history[row, : len(window)] = torch.tensor(window, dtype=torch.long)
            mask[row, : len(window)] = True
        self.model.eval()
        with torch.inference_mode():
            return self.model(history.to(self.device), mask.to(self.device))

    def recommend(self, user: Any = None, items: Sequence[Any] | None = None, k: int = 20,
                  exclude_history: bool = False, data: str | Path | None = None, retrieval: str = "exact",
                  index: Any = None) -> list[Recommendation]:
        """Top-``k`` items for a known ``user`` (original id) or an ad-hoc history ``items`` (original ids).

        ``retrieval``: ``"exact"`` (default), or a faiss index kind ``"flat"``, ``"hnsw"``, ``"ivf"``.
        """
        if (user is None) == (items is None):
            raise BamrecError("give either a user id (--user) or a history of item ids (--items), not both")
        query = Query(user=user, items=None if items is None else list(items), k=k, exclude_history=exclude_history)
        return self.candidates(retrieval, index, data).recommend([query])[0]


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Load a run directory written by ``bamrec train`` or ``bamrec import-reference``."""
    path = Path(path)
    config, record = ckpt.read_config(path)
    num_items = int(record["dataset"]["num_items"])
    torch_device = resolve_device(device)
    backbone = build_backbone(config.model, num_items, seed=config.train.seed)
    objective = Objective(backbone, config.train, num_items, seed=config.train.seed)
    ckpt.load_weights(path, objective)
    objective.to(torch_device).eval()
    item_ids, item_rows = ckpt.read_item_map(path)
    if len(item_ids) != num_items + 1:
        raise RunDirError(f"{path}: item map has {len(item_ids) - 1} items, the model {num_items}")
    return Run(path, config, record, objective, item_ids, item_rows, torch_device)


def load_export(path: str | Path, device: str = "cpu") -> tuple[Run, Any]:
    """The run of export ``path`` and its faiss ``ItemIndex``; a stale or altered export is refused."""
    from bamrec.retrieval.export import open_export
    from bamrec.retrieval.index import ItemIndex

    manifest = open_export(path)
    run = load_run(manifest["run"]["path"], device=device)
    with torch.inference_mode():
        table = run.model.item_embeddings().detach()  # [N + 1, D]
    return run, ItemIndex.load(path, table)


def load_run_or_export(path: str | Path, device: str = "cpu") -> tuple[Run, Any]:
    """``(run, index)``: an export's run and index, or a run directory's run and None."""
    from bamrec.retrieval.export import is_export

    if is_export(path):
        return load_export(path, device)
    return load_run(path, device=device), None
