"""Compatibility with the original BaM implementation: checkpoint import and its training recipe.

``bamrec.compat.recipe`` is a plain table (no torch), read by ``bamrec.config``; the checkpoint
helpers are imported on first use so that importing the table does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_reference_checkpoint", "reference_state_to_backbone"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bamrec.compat import reference

        return getattr(reference, name)
    raise AttributeError(f"module 'bamrec.compat' has no attribute {name!r}")
