"""The training objective: backbone + interest selection + losses, one call per step.

``Objective`` owns the backbone and the ``BaMSelector`` (so BaM_l's projections are saved with the
model) and computes, for a batch ``(history, mask, target)``:

    L = L_s + [multi_loss] L_m + [remi_lambda > 0] lambda * RR

``L_s`` is the loss of the selected interest (sampled or full softmax), ``L_m`` BaM's multi-interest
loss on ``logsumexp_k m_k · e`` with the same negatives (Lee et al., IEEE BigData 2024, Eq. 10-12),
and RR REMI's routing regularisation (Xie et al., RecSys 2023). REMI's interest-aware hard
negatives (``remi_beta``) apply to both ``L_s`` and ``L_m``, as in BaM's code.

With ``target [B, L]`` (``targets="all"``, a sequence model such as SASRec) the loss is instead the
mean next-item cross entropy over every valid position ``l`` of the window, scored from the output
``h_l`` that has seen positions ``<= l`` only (Kang & McAuley, ICDM 2018; full softmax as
Klenitskiy & Vasilev, RecSys 2023):

    L = mean over (b, l) with target_bl > 0 of  -log softmax(h_bl · E^T)[target_bl]

(sampled: one set of ``num_negatives`` uniform negatives shared by every position of the batch).

The forward pass has no host synchronisation (no ``.item()``), so the trainer can log lazily.
"""

from __future__ import annotations

import dataclasses

from typing import NamedTuple

import torch
from torch import nn

from bamrec.config import TrainConfig
from bamrec.errors import ConfigError
from bamrec.models.base import MultiInterestBackbone
from bamrec.training import losses
from bamrec.training.selection import BaMSelector


# Per-example negatives are scored against the whole table while it has at most this many rows per
# sampled negative (a [B, K, N + 1] score matrix stays small; beyond it, gathering wins).
TABLE_SCORING_MAX_RATIO = 8
# The full softmax scores the catalogue in chunks once [B, K, N] would exceed this many scores.
FULL_SOFTMAX_CHUNK_ELEMENTS = 1 << 24
# The all-positions loss (SASRec) materialises [P, N] up to this many scores (512 MB in float32) before
# it chunks: on ML-1M (P about 13,000 positions per batch of 128, N = 3,706) the plain path trains
# 13% faster than the chunked one, which scores the catalogue twice (forward and backward).
POSITION_SOFTMAX_CHUNK_ELEMENTS = 1 << 27


class ObjectiveOutput(NamedTuple):
    """One step's loss and diagnostics."""

    loss: torch.Tensor  # scalar, the total loss to backpropagate
    parts: dict[str, torch.Tensor]  # detached scalars: "selected", and "multi" / "regularization" when on
    selected_index: torch.Tensor  # [B] int64, the interest trained for each example
    probs: torch.Tensor  # [B, K] detached selection probabilities (one-hot under hard selection)


class Objective(nn.Module):
    """Backbone, selector and loss of one training scheme (see module docstring)."""

    def __init__(self, backbone: MultiInterestBackbone, config: TrainConfig, num_items: int, seed: int = 0) -> None:
        super().__init__()
        if num_items != backbone.num_items:
            raise ConfigError(f"num_items={num_items} does not match the backbone's {backbone.num_items} items")
        # None means "the model's preset", which only ``presets.resolve_presets`` knows (the trainer and
        # ``load_run`` see resolved configs); an Objective built from an unresolved config gets "off".
        config = dataclasses.replace(config, remi_beta=config.remi_beta or 0.0, remi_lambda=config.remi_lambda or 0.0)
        if config.remi_lambda > 0 and not hasattr(backbone, "last_attention"):
            raise ConfigError(
                f"remi_lambda (REMI routing regularisation) needs a backbone with attention weights "
                f"(comirec-sa or remi); {type(backbone).__name__} has none: set remi_lambda to 0"
            )
        if config.loss == "sampled" and config.negatives == "per-example" and config.num_negatives > num_items + 1:
            raise ConfigError(
                f"num_negatives={config.num_negatives} exceeds the {num_items + 1} ids per-example negatives "
                "are drawn from without replacement; lower num_negatives or use negatives=shared"
            )
        self.backbone = backbone
        self.config = config
        self.num_items = num_items
        self.selector = BaMSelector(
            mode=config.selection,
            hidden_size=backbone.hidden_size,
            temperature=config.temperature,
            bam_l_dim=config.bam_l_dim,
            bam_l_grad=config.bam_l_grad,
            seed=seed,
        )
        # Not saved: it is a function of (num_items, negatives) and would otherwise bloat checkpoints.
        self.register_buffer(
            "noise_log_prob", losses.uniform_noise_log_prob(num_items, config.negatives), persistent=False
        )
        self.uniform_noise = True  # the only noise distribution offered (docs/method.md, "Loss")

    def interests(
        self, history: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The backbone's interests ``[B, K, D]`` (stochastic backbones draw from ``generator``)."""
        if getattr(self.backbone, "stochastic", False):
            return self.backbone(history, mask, generator=generator)
        return self.backbone(history, mask)

    def forward(
        self,
        history: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> ObjectiveOutput:
        """Loss of a batch: ``history [B, L]`` int64, ``mask [B, L]`` bool, ``target [B]`` int64 in 1..N
        (or ``[B, L]``, a target per position, 0 = none: see the module docstring)."""
        if target.dim() == 2:
            return self._all_positions(history, mask, target, generator)
        cfg = self.config
        interests = self.interests(history, mask, generator)  # [B, K, D]
        table = self.backbone.item_embeddings()  # [N + 1, D]
        target_emb = table[target]  # [B, D]
        choice = self.selector(interests, target_emb, generator)
        if cfg.loss == "full":
            single, multi = self._full(choice.selected, interests, table, target)
        else:
            single, multi = self._sampled(choice.selected, interests, table, target, target_emb, generator)
        loss = single
        parts = {"selected": single.detach()}
        if multi is not None:
            loss = loss + multi
            parts["multi"] = multi.detach()
        if cfg.remi_lambda > 0:
            reg = losses.routing_regularization(self.backbone.last_attention, mask, self.backbone.hidden_size,
                                                cfg.rr_positions)
            loss = loss + cfg.remi_lambda * reg
            parts["regularization"] = reg.detach()
        return ObjectiveOutput(loss, parts, choice.index, choice.probs)

    def _sampled(
        self,
        selected: torch.Tensor,
        interests: torch.Tensor,
        table: torch.Tensor,
        target: torch.Tensor,
        target_emb: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        negatives = losses.sample_negatives(
            self.num_items, cfg.num_negatives, cfg.negatives, target.shape[0], generator, target.device
        )  # [S] or [B, S]
        # Per-example negatives over a catalogue not much larger than S: score the whole table
        # (see losses.table_scores) instead of gathering [B, S, D] embeddings.
        by_table = negatives.dim() == 2 and table.shape[0] <= TABLE_SCORING_MAX_RATIO * negatives.shape[1]
        # [S, D] or [B, S, D] embeddings, or the whole table scored at the sampled ids.
        negative_emb, negative_ids = (table, negatives) if by_table else (table[negatives], None)
        # logQ correction. Under uniform noise log q is the same constant for every id that can be a
        # positive or a negative, so it cancels in the softmax: skipping it is exact and saves two
        # [B, S] passes per loss. The general path stays for non-uniform noise.
        if self.uniform_noise:
            pos_log_q = neg_log_q = None
        else:
            pos_log_q = self.noise_log_prob[target]  # [B]
            neg_log_q = self.noise_log_prob[negatives]  # [S] or [B, S]
        valid = ~losses.accidental_hits(negatives, target) if cfg.remove_accidental_hits else None  # [B, S]

        def loss_of(scores: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            positive, negative = scores
            per_example = losses.sampled_softmax_loss(positive, negative, pos_log_q, neg_log_q, valid, cfg.remi_beta,
                                                      cfg.ihn_detach)
            return per_example.mean()

        reduce = cfg.remi_beta != 0.0  # IHN weights need each negative's logsumexp over interests
        single = loss_of(losses.single_scores(selected, target_emb, negative_emb, negative_ids))
        multi = (loss_of(losses.multi_scores(interests, target_emb, negative_emb, reduce, negative_ids))
                 if cfg.multi_loss else None)
        return single, multi

    def _full(
        self, selected: torch.Tensor, interests: torch.Tensor, table: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        items = table[1:]  # [N, D] padding excluded
        batch, num_interests = interests.shape[:2]
        # A large catalogue: score it in chunks instead of materialising [B, N] / [B, K, N] (IHN
        # weights need the whole row, so remi_beta keeps the plain path).
        chunk = FULL_SOFTMAX_CHUNK_ELEMENTS // (batch * num_interests)
        if cfg.remi_beta == 0.0 and chunk < items.shape[0]:
            chunk = max(chunk, 1)
            single = losses.chunked_full_softmax_loss(selected.unsqueeze(1), items, target, chunk * num_interests)
            multi = losses.chunked_full_softmax_loss(interests, items, target, chunk) if cfg.multi_loss else None
            return single.mean(), None if multi is None else multi.mean()
        single = losses.full_softmax_loss(selected @ items.T, target, cfg.remi_beta, cfg.ihn_detach).mean()
        if not cfg.multi_loss:
            return single, None
        scores = torch.matmul(interests, items.T).logsumexp(1)  # [B, N]
        return single, losses.full_softmax_loss(scores, target, cfg.remi_beta, cfg.ihn_detach).mean()

    def _all_positions(
        self, history: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None
    ) -> ObjectiveOutput:
        """The mean next-item loss over every position that has a target (``target [B, L]``, 0 = none)."""
        states = self.backbone.sequence_states(history, mask)  # [B, L, D]
        valid = target > 0  # [B, L]
        queries = states[valid]  # [P, D], P valid positions of the batch
        loss = position_losses(queries, target[valid], self.backbone.item_embeddings(), self.config,
                               generator).mean()
        batch = history.shape[0]
        selected = torch.zeros(batch, dtype=torch.long, device=history.device)  # [B] the one interest
        probs = torch.ones(batch, 1, device=history.device)  # [B, 1]
        return ObjectiveOutput(loss, {"selected": loss.detach()}, selected, probs)


def position_losses(
    queries: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, config: TrainConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Cross entropy of each position's output against its next item: ``queries [P, D]``, ``targets [P]``
    in 1..N, ``table [N + 1, D]`` (row 0 padding) -> ``[P]``.

    Full softmax over the catalogue (chunked once ``[P, N]`` would be large), or a sampled softmax
    against ``num_negatives`` uniform negatives shared by all positions.
    """
    items = table[1:]  # [N, D] padding excluded
    if config.loss == "full":
        if queries.shape[0] * items.shape[0] <= POSITION_SOFTMAX_CHUNK_ELEMENTS:
            return losses.full_softmax_loss(queries @ items.T, targets, 0.0, True)  # [P]
        chunk = max(POSITION_SOFTMAX_CHUNK_ELEMENTS // max(queries.shape[0], 1), 1)
        return losses.chunked_full_softmax_loss(queries.unsqueeze(1), items, targets, chunk)  # [P]
    negatives = losses.sample_negatives(items.shape[0], config.num_negatives, "shared", queries.shape[0],
                                        generator, queries.device)  # [S]
    positive = (queries * table[targets]).sum(-1)  # [P]
    negative = queries @ table[negatives].T  # [P, S]
    valid = ~losses.accidental_hits(negatives, targets) if config.remove_accidental_hits else None  # [P, S]
    return losses.sampled_softmax_loss(positive, negative, valid=valid)  # [P]
