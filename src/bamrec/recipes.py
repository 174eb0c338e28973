"""Training recipes: named presets of training options (the original BaM code's, and bamrec's recommended).

J. Lee, J. Yun, U Kang. *Towards True Multi-interest Recommendation: Enhanced Scheme for Balanced
Interest Training.* IEEE BigData 2024. Its public code (snudatalab/BaM) trains in a few ways that
bamrec's defaults do not follow. Each such difference is one config option, so any one of them can
be switched alone; ``recipe="original"`` sets all of them at once, ``recipe="bamrec"`` (the
default) none. An option given explicitly always wins over the recipe, and the run's
``config.json`` records the resolved value of every option next to the recipe's name.

``ORIGINAL`` maps each option to the original's value; ``WHERE`` says where in the original code
the behaviour lives (file and function, to read side by side) and ``docs/fidelity.md`` what each
difference does to the results. Options equal in both recipes (batch 128, Adam 1e-3 without weight
decay, 1,280 negatives, validation every 1,000 iterations, seed 2021, REMI's beta = 0.01 and
lambda = 100 under hard selection only, Kaiming-normal initialisation of every weight including the
padding row) are not listed.

``RECOMMENDED`` (``recipe="recommended"``) is not about fidelity: it is the training scheme that
measured best at the study's model size under a capped budget (``docs/early-results.md``,
``experiments/search.toml``), on top of any backbone (ComiRec-SA, the default backbone, is the one it
was chosen on). Trained to early stopping (``docs/RESULTS.md``) it ends level with BaM_p + multi-loss at
Adam 1e-3 in fewer iterations, and, like it, with interests close to one another.

This module is a plain table (no torch) because ``bamrec.config`` reads it.
"""

from __future__ import annotations

from typing import Any, Mapping

# option -> the original's value (section in the nested config: see SECTION).
ORIGINAL: dict[str, Any] = {
    "negatives": "per-example",  # 1,280 per example, without replacement over ids 0..N (padding and positive included)
    "valid_protocol": "reference",  # 1,000 users drawn with replacement at every check, reference scoring
    "patience": 16,  # the original stops when its counter *exceeds* patience (15): after 16 checks without gain
    "protocol": "reference",  # test: window items scored 0 and kept, padding id 0 ranked
    "routing_norm": "padded",  # MIND: softmax over all L positions, then padding zeroed without renormalising
    "routing_eval": "random",  # MIND: fresh N(0, 1) routing logits at every forward pass, evaluation included
    "rr_positions": "all",  # REMI: routing regularisation centres and sums over all L positions
    "ihn_detach": False,  # REMI: the hard-negative weights carry gradient
    "bam_l_grad": "none",  # BaM_l: the projections never receive gradient (the draw is discrete)
}

WHERE: dict[str, str] = {
    "negatives": "SSLoss.py: SSLoss.get_noise (torch.multinomial without replacement); BasicModel.build_noise (ids 0..N)",
    "valid_protocol": "utils.py: DataIterator.__next__ (valid_flag: np.random.randint users) and evaluate; main.py loop",
    "patience": "main.py: training loop (`trials > args.patience`)",
    "protocol": "utils.py: evaluate (`score[:, items] = 0`, all N + 1 rows ranked)",
    "routing_norm": "MIND.py: CapsuleNetwork.forward (softmax over dim -1, then torch.where on the mask)",
    "routing_eval": "MIND.py: CapsuleNetwork.forward (torch.randn at every call, train=False included)",
    "rr_positions": "ComiRec.py: ComiRec.calculate_atten_loss (mean over dim 2 = all L)",
    "ihn_detach": "SSLoss.py: SSLoss.sampled_softmax_loss (the `imp` weights, beta != 0)",
    "bam_l_grad": "BasicModel.py: BasicModel.select_interest (torch.multinomial index; l1, l2 get no gradient)",
}

# bamrec's recommended training scheme (docs/early-results.md; at convergence docs/RESULTS.md): BaM_p with
# the multi-interest loss (BaM), the full softmax instead of 1,280 sampled negatives, and a larger
# Adam step. Full softmax scores the whole catalogue at every step (B * K * N * D multiply-adds, in
# chunks beyond ``objective.FULL_SOFTMAX_CHUNK_ELEMENTS``): for catalogues of millions of items use
# ``--loss sampled`` on top of the recipe.
RECOMMENDED: dict[str, Any] = {
    "selection": "bam-p",
    "multi_loss": True,
    "loss": "full",
    "lr": 4e-3,
}

SECTION: dict[str, str] = {
    "selection": "train", "multi_loss": "train", "loss": "train", "lr": "train",
    "negatives": "train", "valid_protocol": "train", "patience": "train", "protocol": "eval",
    "routing_norm": "model", "routing_eval": "model", "rr_positions": "train", "ihn_detach": "train",
    "bam_l_grad": "train",
}

RECIPES: dict[str, dict[str, Any]] = {"bamrec": {}, "original": ORIGINAL, "recommended": RECOMMENDED}


def recipe_values(name: str) -> dict[str, Any]:
    """The options recipe ``name`` sets (flat ``option -> value``); unknown names raise KeyError."""
    return dict(RECIPES[name])


def apply_recipe(nested: Mapping[str, Any]) -> dict[str, Any]:
    """``nested`` (``{"model": {...}, "train": {...}, "eval": {...}}``) with the options of its
    ``train.recipe`` filled in wherever the option is absent; given options are kept."""
    out = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in nested.items()}
    train = out.get("train")
    name = train.get("recipe", "bamrec") if isinstance(train, Mapping) else "bamrec"
    if name not in RECIPES:
        return out  # the config's own validation reports the bad name
    for option, value in RECIPES[name].items():
        section = out.setdefault(SECTION[option], {})
        if isinstance(section, dict):
            section.setdefault(option, value)
    return out
