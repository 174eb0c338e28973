"""bamrec: multi-interest sequential recommendation with BaM.

BaM: J. Lee, J. Yun, U Kang, "Towards True Multi-interest Recommendation: Enhanced Scheme for
Balanced Interest Training", IEEE BigData 2024. Backbones: MIND (Li et al., CIKM 2019), ComiRec-SA and
ComiRec-DR (Cen et al., KDD 2020); training scheme REMI (Xie et al., RecSys 2023).

Public API: ``bamrec.train(config, out)``, ``bamrec.load_run(path)`` (``run.evaluate(...)``,
``run.recommend(...)``), ``bamrec.SequenceDataset``, ``bamrec.RunConfig``, and
``bamrec.set_threads(n)`` (CPU threads; call it before the others).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["train", "load_run", "Run", "Recommendation", "SequenceDataset", "RunConfig", "set_threads",
           "__version__"]

_LAZY = {
    "train": "bamrec.api",
    "load_run": "bamrec.api",
    "Run": "bamrec.api",
    "Recommendation": "bamrec.api",
    "SequenceDataset": "bamrec.data.sequences",
    "RunConfig": "bamrec.config",
    "set_threads": "bamrec.threads",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `bamrec --help` and `import bamrec` stay fast (torch loads on first use).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bamrec' has no attribute {name!r}")
