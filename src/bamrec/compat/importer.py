"""``bamrec import-reference``: a checkpoint of the original BaM code becomes a run directory.

The imported run is evaluated and used like one of ours (``bamrec evaluate RUN --protocol reference``
reproduces the original evaluator's numbers). The run's config records how the released checkpoints
were trained (ComiRec-SA with REMI's hard negatives, BaM selection, multi-interest loss; MIND under
the ``original`` recipe, ``bamrec.recipes``); those training options only matter if the run
is trained further. An imported MIND routes as the original (``routing_norm="padded"``); its
evaluation starts routing from a fixed seeded draw (``routing_eval="fixed"``, reproducible) unless
``routing_eval="random"`` asks for the original's fresh draw per forward pass.
"""

from __future__ import annotations

from pathlib import Path

from bamrec import locks
from bamrec.config import run_config_from_flat
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import RunDirError
from bamrec.presets import REMI_BETA
from bamrec.compat.reference import load_reference_checkpoint, reference_state_to_backbone
from bamrec.rundir import layout as ckpt
from bamrec.training.objective import Objective


def import_reference(
    checkpoint: str | Path,
    *,
    data: str | Path,
    backbone: str = "comirec-sa",
    seq_len: int = 200,
    selection: str | None = None,
    temperature: float = 1.0,
    out: str | Path,
    overwrite: bool = False,
    num_interests: int = 4,
    routing_eval: str = "fixed",
    seed: int = 2021,
    num_negatives: int = 1280,
) -> Path:
    """Write a run directory at ``out`` holding the original checkpoint's weights; returns ``out``.

    ``selection`` defaults to ``bam-l`` when the checkpoint holds BaM_l's projections, else ``bam-p``.
    ``num_interests``, ``routing_eval`` and ``seed`` (the evaluation routing start) apply to MIND,
    whose checkpoints record neither K nor L. ``num_negatives`` (the original's ``--sampled_n``) only
    matters for further training.
    """
    state = load_reference_checkpoint(checkpoint)
    model, selector_state = reference_state_to_backbone(state, backbone=backbone, seq_len=seq_len,
                                                        num_interests=num_interests, routing_eval=routing_eval,
                                                        seed=seed)
    dataset = SequenceDataset.load(data)
    if model.num_items != dataset.num_items:
        raise RunDirError(
            f"checkpoint {checkpoint} has {model.num_items} items (+ padding) but dataset {data} has "
            f"{dataset.num_items}: it was trained on another dataset"
        )
    if selection is None:
        selection = "bam-l" if selector_state is not None else "bam-p"
    if selector_state is not None and selection != "bam-l":
        raise RunDirError(f"checkpoint {checkpoint} holds BaM_l projections (l1, l2): import it with --selection bam-l")
    options = {
        "data": str(data), "model": backbone, "seq_len": model.seq_len, "hidden_size": model.hidden_size,
        "num_interests": model.num_interests, "selection": selection, "temperature": temperature,
        "multi_loss": True, "remi_beta": REMI_BETA, "seed": seed, "num_negatives": num_negatives,
        # The original never trains BaM_l's projections; keep that if this run is trained further.
        "bam_l_grad": "none" if selection == "bam-l" else "straight-through",
        "progress": False,
    }
    if backbone == "mind":  # the original trains MIND without REMI's terms (main.py: rbeta = 0)
        options.update(recipe="original", remi_beta=0.0, bam_l_grad="none", routing_eval=routing_eval)
    config = run_config_from_flat(options)
    objective = Objective(model, config.train, dataset.num_items, seed=seed)
    if selector_state is not None:
        objective.selector.load_state_dict(selector_state)
    ckpt.check_run_dir(out, overwrite=overwrite)
    with locks.write_lock(out, "bamrec import-reference"):  # refused before --overwrite removes anything
        run_dir = ckpt.prepare_run_dir(out, overwrite=overwrite)
        ckpt.write_config(run_dir, config, ckpt.dataset_record(dataset, data),
                          extra={"imported_from": str(Path(checkpoint).resolve())})
        ckpt.save_weights(run_dir, objective, {"format": ckpt.RUN_FORMAT, "model": backbone,
                                               "selection": selection, "imported": "bam-reference"})
        ckpt.write_item_map(run_dir, dataset)
    return run_dir
