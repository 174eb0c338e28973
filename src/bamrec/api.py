"""The Python API: train a model, load a run directory, evaluate it and recommend from it.

    import bamrec
    result = bamrec.train({"data": "prepared/ml-1m", "model": {"model": "remi", "seq_len": 200},
                           "train": {"selection": "bam-p", "multi_loss": True}}, out="runs/remi-bam")
    run = bamrec.load_run("runs/remi-bam")
    run.evaluate(split="test", protocol="reference")
    run.recommend(user=42, k=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from bamrec.config import RunConfig, run_config_from_dict, run_config_from_flat
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.errors import BamrecError, RunDirError
from bamrec.evaluation.model_eval import evaluate_model_result
from bamrec.models import build_backbone
from bamrec.retrieval.recommend import topk_items
from bamrec.training import checkpoint as ckpt
from bamrec.training.callbacks import CheckCallback
from bamrec.training.objective import Objective
from bamrec.training.trainer import TrainResult, resolve_device
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
    return _train(config, out, overwrite=overwrite, resume=resume, progress=progress, verbose=verbose,
                  callbacks=callbacks)


@dataclass(frozen=True)
class Recommendation:
    """One recommended item."""

    rank: int  # 1-based position in the list
    item: Any  # original item id
    score: float  # max over interests of the inner product
    interest: int  # index of the interest vector that scored it highest


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
                 data: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
        """Metrics on the validation or test split (``recall@10``, ``ndcg@10``, ..., ``users``, ``protocol``)."""
        return self.evaluate_result(split, protocol, cutoffs, data, progress).metrics()

    def evaluate_result(self, split: str = "test", protocol: str = "standard",
                        cutoffs: Sequence[int] | None = None, data: str | Path | None = None,
                        progress: bool = False):
        """The full EvalResult (per-user ranks and the interest that retrieved each target)."""
        from bamrec.config import check_choice

        check_choice("protocol", protocol)
        dataset = self.dataset(data)
        view = LeaveOneOut(dataset).view(split)
        return evaluate_model_result(self.model, dataset, view, self.config, protocol=protocol,
                                     device=self.device, cutoffs=tuple(cutoffs) if cutoffs else None,
                                     progress=progress)

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
                  exclude_history: bool = False, data: str | Path | None = None) -> list[Recommendation]:
        """Top-``k`` items for a known ``user`` (original id) or an ad-hoc history ``items`` (original ids)."""
        if (user is None) == (items is None):
            raise BamrecError("give either a user id (--user) or a history of item ids (--items), not both")
        if user is not None:
            history = self._user_history(user, data)
        else:
            history = self._item_rows(items)
        interests = self.interests([history])  # [1, K, D]
        exclude = [np.asarray(history, dtype=np.int64)] if exclude_history else None
        with torch.inference_mode():
            ids, scores, interest = topk_items(interests, self.model.item_embeddings().detach(), k,
                                               exclude=exclude)
        # Rows of -1 mean fewer than k items were left after exclusion.
        found = [(row, score, slot) for row, score, slot in zip(ids[0].tolist(), scores[0].tolist(),
                                                                interest[0].tolist()) if row > 0]
        return [Recommendation(rank=i + 1, item=self.item_ids[row], score=float(score), interest=int(slot))
                for i, (row, score, slot) in enumerate(found)]

    def _user_history(self, user: Any, data: str | Path | None) -> list[int]:
        dataset = self.dataset(data)
        index = dataset.user_index()
        key = _coerce_id(user, dataset.user_ids)
        if key not in index:
            raise BamrecError(f"user {user!r} is not in the run's dataset ({dataset.num_users} users)")
        return dataset.sequence(index[key]).astype(np.int64).tolist()

    def _item_rows(self, items: Sequence[Any]) -> list[int]:
        rows, unknown = [], []
        for item in items:
            row = self.item_rows.get(str(item))
            if row is None:
                unknown.append(item)
            else:
                rows.append(row)
        if unknown:
            raise BamrecError(f"unknown item id(s) {unknown[:10]}: not in the run's item map ({len(self.item_rows)} items)")
        if not rows:
            raise BamrecError("the history is empty: pass at least one item id with --items")
        return rows


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


def _coerce_id(value: Any, ids: np.ndarray) -> Any:
    """A user-typed id in the type the dataset stores (ints for numeric id maps)."""
    if np.issubdtype(ids.dtype, np.integer):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise BamrecError(f"user ids of this dataset are integers, got {value!r}") from None
    return str(value)
