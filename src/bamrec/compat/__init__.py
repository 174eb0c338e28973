"""Compatibility with the original BaM implementation: checkpoint import."""

from bamrec.compat.reference import load_reference_checkpoint, reference_state_to_backbone

__all__ = ["load_reference_checkpoint", "reference_state_to_backbone"]
