"""Data: readers, prepared datasets (CSR), leave-one-out split, vectorised batch sampling."""

from __future__ import annotations

from typing import Any

__all__ = ["SequenceDataset", "LeaveOneOut"]


def __getattr__(name: str) -> Any:
    # Lazy: `bamrec data ...` commands must not pay for importing torch (split.py needs it).
    if name == "SequenceDataset":
        from bamrec.data.sequences import SequenceDataset

        return SequenceDataset
    if name == "LeaveOneOut":
        from bamrec.data.split import LeaveOneOut

        return LeaveOneOut
    raise AttributeError(f"module 'bamrec.data' has no attribute {name!r}")
