"""Prepared datasets: per-user item sequences in CSR form, with id maps and a manifest.

Layout of a prepared directory::

    manifest.json     source, rules, counts, checksum, bamrec version
    offsets.npy       int64 [U + 1]   user u (1-based) owns items[offsets[u-1]:offsets[u]]
    items.npy         int32 [nnz]     internal item ids (1..N), time order within each user
    user_ids.npy      [U]             original user id of internal user u at index u-1
    item_ids.npy      [N]             original item id of internal item i at index i-1

Original ids are stored as int64 when every id is an integer, else as fixed-width unicode.
Loading is a handful of ``np.load`` calls (ML-1M: a few milliseconds), memory-mapped: the arrays
are read from the page cache as they are used, and the processes of one machine share them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bamrec import files, locks
from bamrec.errors import DataError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_ARRAYS = ("offsets", "items", "user_ids", "item_ids")


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Users' chronological item sequences.

    Internal user ``u`` (1-based) has items ``items[offsets[u-1]:offsets[u]]``; internal item ids
    run from 1 to ``num_items``; 0 is reserved for padding.
    """

    offsets: np.ndarray  # int64 [U + 1]
    items: np.ndarray  # int32 [nnz]
    user_ids: np.ndarray  # [U] original user ids
    item_ids: np.ndarray  # [N] original item ids
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) != len(self.user_ids) + 1:
            raise DataError("offsets must have one entry per user plus one")
        if int(self.offsets[0]) != 0 or int(self.offsets[-1]) != len(self.items):
            raise DataError("offsets must start at 0 and end at the number of interactions")

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        """Sequence length of each user, int64 [U]."""
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """Items of internal user ``user`` (1-based), in time order."""
        return self.items[self.offsets[user - 1] : self.offsets[user]]

    def checksum(self) -> str:
        """sha256 over the arrays that define the data (sequences and id maps)."""
        digest = hashlib.sha256()
        for name in _ARRAYS:
            array = np.ascontiguousarray(getattr(self, name))
            digest.update(name.encode())
            digest.update(str(array.dtype).encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def stats(self) -> dict[str, Any]:
        """Users, items, interactions, density and sequence-length summary."""
        lengths = self.lengths
        users, items = self.num_users, self.num_items
        return {
            "users": users,
            "items": items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / (users * items) if users and items else 0.0,
            "min": int(lengths.min()) if users else 0,
            "median": float(np.median(lengths)) if users else 0.0,
            "mean": float(lengths.mean()) if users else 0.0,
            "max": int(lengths.max()) if users else 0,
        }

    def item_index(self) -> dict[Any, int]:
        """Original item id -> internal id (1-based)."""
        return {_py(v): i + 1 for i, v in enumerate(self.item_ids.tolist())}

    def user_index(self) -> dict[Any, int]:
        """Original user id -> internal id (1-based)."""
        return {_py(v): i + 1 for i, v in enumerate(self.user_ids.tolist())}

    def save(self, out_dir: str | Path, overwrite: bool = False) -> Path:
        """Write the dataset to ``out_dir``; refuses to replace an existing one unless ``overwrite``."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise DataError(f"--out {out} is a file; give a directory")
        # One writer at a time (bamrec.locks): a second one is refused before the manifest goes.
        with locks.write_lock(out, "bamrec data prepare"):
            if locks.contents(out) and not overwrite:
                raise DataError(f"{out} already exists and is not empty; pass --overwrite to replace it")
            # The manifest goes first and comes back last: a save that stops half way (a full disk, a
            # kill) leaves a folder that reads as "not a prepared dataset", never old and new arrays mixed.
            (out / MANIFEST).unlink(missing_ok=True)
            for stale in out.glob("truth_*.npy"):  # ground truth of a synthetic dataset this one replaces
                stale.unlink()
            for name in _ARRAYS:
                with files.atomic_write(out / f"{name}.npy") as handle:
                    np.save(handle, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
            manifest = dict(self.manifest)
            manifest.update(format_version=FORMAT_VERSION, checksum=self.checksum(), stats=self.stats())
            files.write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path, verify: bool = False) -> "SequenceDataset":
        """Load a prepared dataset; with ``verify`` the checksum in the manifest is re-checked."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{path} is not a prepared dataset (no {MANIFEST}); run `bamrec data prepare` first")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{manifest_path} is damaged (not valid JSON); prepare the dataset again") from None
        arrays = {}
        for name in _ARRAYS:
            file = path / f"{name}.npy"
            if not file.is_file():
                raise DataError(f"prepared dataset {path} is missing {file.name}; prepare it again")
            try:
                # Memory-mapped copy-on-write: the processes of a torchrun job on one machine share
                # the page cache's one copy of the arrays (nothing writes them), and a dataset larger
                # than memory opens without reading it whole.
                arrays[name] = np.asarray(np.load(file, allow_pickle=False, mmap_mode="c"))  # plain ndarray view
            except (ValueError, OSError, EOFError):  # truncated or not an .npy file
                raise DataError(f"{file} is damaged (not a readable .npy array); prepare the dataset again") from None
        dataset = cls(manifest=manifest, **arrays)
        if verify and manifest.get("checksum") != dataset.checksum():
            raise DataError(f"prepared dataset {path} does not match its manifest checksum; prepare it again")
        return dataset

    @classmethod
    def from_sequences(cls, sequences: list[list[int]], manifest: dict[str, Any] | None = None) -> "SequenceDataset":
        """Build from in-memory lists of internal item ids (1-based); users get ids 1..U. For tests."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.array([i for s in sequences for i in s], dtype=np.int32)
        num_items = int(items.max()) if len(items) else 0
        return cls(
            offsets=offsets,
            items=items,
            user_ids=np.arange(1, len(sequences) + 1, dtype=np.int64),
            item_ids=np.arange(1, num_items + 1, dtype=np.int64),
            manifest=dict(manifest or {"source": "in-memory"}),
        )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
