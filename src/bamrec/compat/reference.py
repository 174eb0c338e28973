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

For MIND (Li et al., CIKM 2019) the original's keys are

    embeddings.weight                  [N + 1, D]
    capsule_network.linear.weight      [D, D]   the shared bilinear map -> MIND.linear.weight
    capsule_network.relu.0.weight      [D, D]   ignored: the original's main.py builds MIND with
                                                relu_layer=False, so this layer is never applied
    sample_loss.logprob_noise, l1.*, l2.*       as above

A MIND checkpoint holds no position embedding, so ``seq_len`` must be given (the original uses 100
on ML-1M). The imported MIND routes as the original (``routing_norm="padded"``); its evaluation
routing start is the seeded fixed draw unless ``routing_eval="random"`` is asked for. This mapping
is verified against checkpoints the original code writes (``tests/compat/test_fidelity.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from bamrec.errors import ConfigError, RunDirError
from bamrec.models.comirec_sa import ComiRecSA
from bamrec.models.mind import MIND

SUPPORTED_BACKBONES = ("comirec-sa", "mind")
IGNORED_KEYS = ("sample_loss.logprob_noise",)
MIND_IGNORED_KEYS = ("capsule_network.relu.0.weight",)
MIND_KEYS = {"embeddings.weight": "embeddings.weight", "capsule_network.linear.weight": "linear.weight"}
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
    except Exception as exc:  # unpickling errors name the offending object: keep their gist
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        if "WeightsUnpickler error:" in str(exc):  # torch's long advice; the actual reason follows it
            tail = str(exc).split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            reason = f"not a plain state_dict ({tail[0].strip() if tail else 'unpickling failed'})"
        raise RunDirError(f"cannot read reference checkpoint {path} as a PyTorch state_dict: {reason}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunDirError(f"reference checkpoint {path} is not a state_dict of tensors")
    return dict(state)


def _shape(state: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise RunDirError(
            f"reference checkpoint lacks key {key!r} (has: {', '.join(sorted(state))}); "
            "is it a checkpoint of the original BaM code for this backbone?"
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
    num_interests: int | None = None,
    routing_eval: str = "fixed",
    seed: int = 0,
) -> tuple[ComiRecSA | MIND, dict[str, torch.Tensor] | None]:
    """Build a ``ComiRecSA`` or ``MIND`` (in eval mode) from an original checkpoint's state_dict.

    ComiRec-SA: sizes come from the checkpoint (N, D, K and L; ``seq_len``, when given, must equal
    L). MIND: N and D come from the checkpoint, ``seq_len`` and ``num_interests`` (default 4) must be
    given because its weights do not hold them; ``routing_eval`` and ``seed`` set the evaluation
    routing start. Returns the backbone and, for BaM_l checkpoints, a state_dict for
    ``BaMSelector(mode="bam-l", bam_l_dim=d')`` (keys ``interest_proj.*``, ``target_proj.*``), else
    None. Missing, misshapen or unknown keys raise ``RunDirError`` naming the key and its shape.
    """
    if backbone == "mind":
        return _mind_from_state(state_dict, seq_len, num_interests or 4, routing_eval, seed)
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


def _mind_from_state(
    state_dict: Mapping[str, torch.Tensor], seq_len: int | None, num_interests: int, routing_eval: str, seed: int
) -> tuple[MIND, dict[str, torch.Tensor] | None]:
    if seq_len is None or seq_len <= 0:
        raise ConfigError("a MIND checkpoint does not record its history length: give seq_len (the original "
                          "uses 100 on ML-1M; see its main.py)")
    if "position_embedding" in state_dict or "linear2.weight" in state_dict:
        raise RunDirError("this looks like a ComiRec-SA checkpoint (it has position_embedding / linear2): "
                          "import it with backbone comirec-sa")
    unknown = sorted(set(state_dict) - set(MIND_KEYS) - set(MIND_IGNORED_KEYS) - set(IGNORED_KEYS)
                     - set(SELECTOR_KEYS))
    if unknown:
        shapes = ", ".join(f"{k} {list(state_dict[k].shape)}" for k in unknown)
        raise RunDirError(f"reference checkpoint has keys a MIND checkpoint should not have: {shapes}")
    rows, hidden = _shape(state_dict, "embeddings.weight", 2)
    _shape(state_dict, "capsule_network.linear.weight", 2)
    _expect(state_dict, "capsule_network.linear.weight", (hidden, hidden))
    if rows < 2:
        raise RunDirError(f"reference checkpoint key 'embeddings.weight' has {rows} rows; expected N + 1 >= 2")
    model = MIND(num_items=rows - 1, hidden_size=hidden, num_interests=num_interests, seq_len=seq_len,
                 seed=seed, routing_norm="padded", routing_eval=routing_eval)
    weights = {ours: state_dict[theirs].detach().float() for theirs, ours in MIND_KEYS.items()}
    weights["eval_routing_logits"] = model.eval_routing_logits
    model.load_state_dict(weights, strict=True)
    return model.eval(), _selector_state(state_dict, hidden)
