"""Compatibility with the original BaM implementation: its checkpoints (``reference``) and their
import into run directories (``importer``). Its training recipe is ``bamrec.recipes``."""

from __future__ import annotations

from bamrec.compat.reference import load_reference_checkpoint, reference_state_to_backbone

__all__ = ["load_reference_checkpoint", "reference_state_to_backbone"]
