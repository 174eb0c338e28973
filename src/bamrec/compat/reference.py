"""Import checkpoints of the original BaM implementation (Lee, Yun, Kang, IEEE BigData 2024).

The original saves a plain PyTorch ``state_dict`` of its model. For ComiRec-SA (Cen et al., KDD
2020; the released ML-1M checkpoints ``BaM_p_T1`` and ``BaM_l_T1``) the keys are

    embeddings.weight          [N + 1, D]   row 0 = padding (not zero in the released files)
    position_embedding         [1, L, D]
    linear1.0.weight           [4D, D]      followed by tanh
    linear2.weight             [K, 4D]
    sample_loss.logprob_noise  [N + 1]      the loss's noise buffer; not needed, ignored
    l1.weight [d', D], l1.bias [d'], l2.weight [d', D], l2.bias [d']   BaM_l only

They map one to one onto ``ComiRecSA``. BaM_l's ``l1`` is applied to the interests and ``l2`` to the
positive item (Eq. 9's order, ``W_a`` then ``W_b``), so ``l1 -> interest_proj`` and
``l2 -> target_proj`` of ``BaMSelector``; they only matter for further training (in the released
checkpoint they are still at their initial values, since the original never trains them).

MIND checkpoints are not supported: no MIND checkpoint of the original is available to verify a
key mapping against, so the import refuses rather than guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from bamrec.errors import ConfigError, RunDirError
from bamrec.models.comirec_sa import ComiRecSA

SUPPORTED_BACKBONES = ("comirec-sa",)
IGNORED_KEYS = ("sample_loss.logprob_noise",)
SELECTOR_KEYS = {
    "l1.weight": "interest_proj.weight",
    "l1.bias": "interest_proj.bias",
    "l2.weight": "target_proj.weight",
    "l2.bias": "target_proj.bias",
}
_BACKBONE_KEYS = ("embeddings.weight", "position_embedding", "linear1.0.weight", "linear2.weight")


def load_reference_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original ``model.pt`` (a plain state_dict) safely (``weights_only=True``) on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"reference checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors name the offending object; keep the message
        raise RunDirError(f"cannot read reference checkpoint {path} as a PyTorch state_dict: {exc}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunDirError(f"reference checkpoint {path} is not a state_dict of tensors")
    return dict(state)


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise RunDirError(
            f"reference checkpoint lacks key {key!r} (has: {', '.join(sorted(state))}); "
            "is it a ComiRec-SA checkpoint of the original BaM code?"
        )
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise RunDirError(f"reference checkpoint key {key!r} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _expect(state: Mapping[str, torch.Tensor], key: str, expected: tuple[int, ...]) -> None:
    shape = tuple(state[key].shape)
    if shape != expected:
        raise RunDirError(f"reference checkpoint key {key!r} has shape {list(shape)}, expected {list(expected)}")


def _selector_state(state: Mapping[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor] | None:
    present = [k for k in SELECTOR_KEYS if k in state]
    if not present:
        return None
    missing = [k for k in SELECTOR_KEYS if k not in state]
    if missing:
        raise RunDirError(f"reference checkpoint has BaM_l keys {present} but lacks {missing}")
    dim = _shape(state, "l1.weight", 2)[0]
    for prefix in ("l1", "l2"):
        _expect(state, f"{prefix}.weight", (dim, hidden))
        _expect(state, f"{prefix}.bias", (dim,))
    return {ours: state[theirs].detach().clone().float() for theirs, ours in SELECTOR_KEYS.items()}


def reference_state_to_backbone(
    state_dict: Mapping[str, torch.Tensor],
    backbone: str = "comirec-sa",
    seq_len: int | None = None,
) -> tuple[ComiRecSA, dict[str, torch.Tensor] | None]:
    """Build a ``ComiRecSA`` (in eval mode) from an original checkpoint's state_dict.

    Sizes come from the checkpoint (N, D, K and L; ``seq_len``, when given, must equal L). Returns
    the backbone and, for BaM_l checkpoints, a state_dict for ``BaMSelector(mode="bam-l",
    bam_l_dim=d')`` (keys ``interest_proj.*``, ``target_proj.*``), else None. Missing, misshapen or
    unknown keys raise ``RunDirError`` naming the key and its shape.
    """
    if backbone == "mind":
        raise ConfigError(
            "importing MIND checkpoints of the original BaM code is not supported: its key layout "
            "cannot be verified (no MIND checkpoint is available); only comirec-sa can be imported"
        )
    if backbone not in SUPPORTED_BACKBONES:
        supported = ", ".join(SUPPORTED_BACKBONES)
        raise ConfigError(f"cannot import a {backbone!r} reference checkpoint: supported: {supported}")
    unknown = sorted(set(state_dict) - set(_BACKBONE_KEYS) - set(IGNORED_KEYS) - set(SELECTOR_KEYS))
    if unknown:
        shapes = ", ".join(f"{k} {list(state_dict[k].shape)}" for k in unknown)
        raise RunDirError(f"reference checkpoint has keys a ComiRec-SA checkpoint should not have: {shapes}")
    rows, hidden = _shape(state_dict, "embeddings.weight", 2)
    _, length, _ = _shape(state_dict, "position_embedding", 3)
    _expect(state_dict, "position_embedding", (1, length, hidden))
    _expect(state_dict, "linear1.0.weight", (4 * hidden, hidden))
    interests = _shape(state_dict, "linear2.weight", 2)[0]
    _expect(state_dict, "linear2.weight", (interests, 4 * hidden))
    if seq_len is not None and seq_len != length:
        raise ConfigError(
            f"seq_len={seq_len} does not match the checkpoint's position_embedding {[1, length, hidden]} "
            f"(seq_len {length}); use seq_len={length}"
        )
    if rows < 2:
        raise RunDirError(f"reference checkpoint key 'embeddings.weight' has {rows} rows; expected N + 1 >= 2")
    model = ComiRecSA(num_items=rows - 1, hidden_size=hidden, num_interests=interests, seq_len=length)
    model.load_state_dict({k: state_dict[k].detach().float() for k in _BACKBONE_KEYS}, strict=True)
    return model.eval(), _selector_state(state_dict, hidden)
