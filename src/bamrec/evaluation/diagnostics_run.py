"""Interest-balance diagnostics of a trained run: glue between the trainer, evaluation and
``evaluation.diagnostics`` (which holds the definitions), and their text form for ``bamrec evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, LeaveOneOut, gather_windows
from bamrec.data.synthetic import load_ground_truth
from bamrec.evaluation.diagnostics import compute_diagnostics
from bamrec.models.inference import inference_fn

MAX_USERS = 20_000  # diagnostics on a seeded subset beyond this: they describe the model, not the metric
DIAGNOSTICS_CUTOFF = 20
DIAGNOSTICS_SPLIT = "test"  # run_diagnostics describes the final model on this split


@torch.inference_mode()
def view_interests(backbone: torch.nn.Module, dataset: SequenceDataset, view: EvalView, seq_len: int,
                   device: torch.device, batch_size: int = 2048) -> torch.Tensor:
    """Interests ``[U, K, D]`` of the users of ``view`` from their evaluation history windows (on the CPU)."""
    items = torch.from_numpy(dataset.items).to(device)
    starts = torch.from_numpy(view.history_start).to(device)
    ends = torch.from_numpy(view.history_end).to(device)
    interests = inference_fn(backbone)
    chunks = []
    for lo in range(0, len(view), batch_size):
        history, mask = gather_windows(items, starts[lo: lo + batch_size], ends[lo: lo + batch_size], seq_len)
        chunks.append(interests(history, mask).float().cpu())  # [b, K, D]
    return torch.cat(chunks)


def run_diagnostics(backbone: torch.nn.Module, dataset: SequenceDataset, split: LeaveOneOut, config,
                    test_result, records: Sequence[dict[str, Any]], *, data_dir: Path,
                    device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Diagnostics of ``backbone`` on the test split (``test_result`` is its EvalResult)."""
    view = split.view(DIAGNOSTICS_SPLIT)
    index = np.arange(len(view))
    if len(view) > MAX_USERS:
        index = np.sort(np.random.default_rng(seed).choice(len(view), MAX_USERS, replace=False))
    view = view.subset(index)
    was_training = backbone.training
    backbone.eval()
    try:
        interests = view_interests(backbone, dataset, view, config.model.seq_len, device)
        with torch.inference_mode():
            item_embeddings = backbone.item_embeddings().detach().float().cpu()
    finally:
        backbone.train(was_training)
    ranks = np.asarray(test_result.ranks)[index]
    diagnostics = compute_diagnostics(
        interests, item_embeddings, view.targets, ranks < DIAGNOSTICS_CUTOFF,
        users=view.users, truth=load_ground_truth(data_dir), selection_records=records,
        target_slots=np.asarray(test_result.target_interest)[index], cutoff=DIAGNOSTICS_CUTOFF,
    )
    diagnostics["protocol"] = test_result.protocol
    return diagnostics


def format_diagnostics(run_dir: str | Path, split: str | None = None, protocol: str | None = None) -> str | None:
    """A few readable lines about interest balance from a run's ``diagnostics.json``, or None.

    They were computed once, after training, on the test split; ``split`` and ``protocol`` are those
    of the evaluation printed above them, so that the heading says when they differ.
    """
    file = Path(run_dir) / "diagnostics.json"
    if not file.is_file():
        return None
    d = json.loads(file.read_text(encoding="utf-8"))
    made = (DIAGNOSTICS_SPLIT, d.get("protocol", "standard"))
    heading = f"interest balance (diagnostics.json, computed after training on the {made[0]} split, {made[1]} protocol"
    asked = (split or made[0], protocol or made[1])
    if asked != made:
        heading += f"; not this evaluation's {asked[0]} split, {asked[1]} protocol"
    lines = [heading + ")"]
    overall = (d.get("selection") or {}).get("overall")
    if overall:
        shares = " ".join(f"{s:.2f}" for s in overall.get("shares", []))
        lines.append(f"  selection shares per slot: {shares}")
        lines.append(f"  selection entropy: {overall.get('normalized_entropy', float('nan')):.3f} of max; "
                     f"dead interests (<1% of targets): {overall.get('dead_interests', '?')}")
    similarity = d.get("similarity") or {}
    if similarity.get("mean") is not None:
        lines.append(f"  mean cosine between a user's interests: {similarity['mean']:.3f}")
    by_slot = d.get("recall_by_interest") or {}
    if by_slot.get("share"):
        lines.append("  test targets retrieved by slot: " + " ".join(f"{s:.2f}" for s in by_slot["share"]))
    planted = d.get("planted")
    if planted:
        recall = planted.get("recall", {})
        lines.append(f"  planted data: recall@{d.get('cutoff')} dominant {_fmt(recall.get('dominant'))}, "
                     f"minor {_fmt(recall.get('minor'))}")
        coverage = planted.get("coverage") or {}
        if coverage.get("mean") is not None:
            lines.append(f"  planted interests covered by the user's vectors: {100 * coverage['mean']:.1f}% "
                         f"(dominant {_fmt(coverage.get('dominant'))}, minor {_fmt(coverage.get('minor'))})")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
