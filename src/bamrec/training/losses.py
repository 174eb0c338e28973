"""Training losses: sampled / full softmax, BaM's multi-interest loss, REMI's terms.

- Sampled softmax with the logQ correction (S. Jean et al., ACL 2015; S. Bengio and J.-S. Senécal,
  2008): every logit is ``s - log q`` with ``q`` the noise distribution of the negatives. Under
  uniform noise the correction is a constant and cancels, but it is implemented generally through
  a noise log-probability vector ``[N + 1]``.
- Negatives: ``shared`` (one set ``[S]`` per batch from ids 1..N, with replacement; one
  ``[B, D] x [D, S]`` matmul) or ``per-example`` (the original BaM code's way: ``[B, S]``, each row
  drawn without replacement over ids 0..N, padding included; one batched matmul).
- ``remove_accidental_hits``: a negative equal to the positive gets logit -inf.
- Multi-interest loss (BaM, Lee et al. IEEE BigData 2024, Eq. 10-12): the same loss on
  ``s(u, i) = logsumexp_k (m_k · e_i)`` with the same negatives.
- Interest-aware hard negatives (IHN; REMI, Y. Xie et al. RecSys 2023): the negative term of the
  softmax is re-weighted by ``n · softmax(beta · s_neg)`` over the n valid negatives. The weights
  are scaled by n, so ``beta = 0`` gives weights 1 and the plain loss; they are detached by default
  (``ihn_detach``; the original BaM code lets gradient flow through them).
- Routing regularisation (RR; REMI): penalises the spread of each interest's attention over the
  valid history positions (``routing_regularization``; ``positions="all"`` centres and sums over
  all L positions, padding included, as the original BaM code does).

Shapes: B batch, K interests, D hidden, N items, S negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from bamrec.config import NEGATIVE_MODES
from bamrec.errors import ConfigError

_BACKOFF_PROB = 1e-10  # floor of the noise probability of ids that are never drawn


def uniform_noise_log_prob(num_items: int, mode: str) -> torch.Tensor:
    """``log q [N + 1]`` of uniform negatives: over ids 1..N (``shared``) or 0..N (``per-example``).

    Ids that are never drawn (padding in ``shared`` mode) get a floor of 1e-10 so that the vector
    stays finite.
    """
    if mode not in NEGATIVE_MODES:
        raise ConfigError(f"invalid negatives {mode!r}: choose one of {', '.join(NEGATIVE_MODES)}")
    probs = torch.full((num_items + 1,), 1.0 / (num_items + (mode == "per-example")), dtype=torch.float64)
    if mode == "shared":
        probs[0] = 0.0
    return probs.clamp_min(_BACKOFF_PROB).log().float()  # [N + 1]


def sample_negatives(
    num_items: int,
    num_negatives: int,
    mode: str,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Uniform negative ids: ``[S]`` from 1..N with replacement (``shared``), or ``[B, S]`` with each
    row drawn without replacement from 0..N (``per-example``, as the original's ``multinomial``)."""
    if mode == "shared":
        return torch.randint(1, num_items + 1, (num_negatives,), generator=generator, device=device)  # [S]
    if mode != "per-example":
        raise ConfigError(f"invalid negatives {mode!r}: choose one of {', '.join(NEGATIVE_MODES)}")
    if num_negatives > num_items + 1:
        raise ConfigError(
            f"num_negatives={num_negatives} exceeds the {num_items + 1} ids per-example negatives are "
            "drawn from without replacement; lower num_negatives or use negatives=shared"
        )
    rows = max(1, KEY_CHUNK_ELEMENTS // (num_items + 1))
    if rows >= batch_size:
        return _subset_keys_topk(batch_size, num_items, num_negatives, generator, device)  # [B, S]
    # A large catalogue: draw the keys a few rows at a time, so memory holds [rows, N + 1] keys and
    # not [B, N + 1]. On CPU the generator yields the same numbers either way (same draws, tested).
    return torch.cat([
        _subset_keys_topk(min(rows, batch_size - start), num_items, num_negatives, generator, device)
        for start in range(0, batch_size, rows)
    ])  # [B, S]


# Per-example negatives draw uniform keys over the whole catalogue; at most this many at a time.
KEY_CHUNK_ELEMENTS = 1 << 23


def _subset_keys_topk(
    rows: int, num_items: int, num_negatives: int, generator: torch.Generator | None, device: torch.device | str
) -> torch.Tensor:
    # The top-S of i.i.d. uniform keys is a uniform S-subset: sampling without replacement, batched.
    # Unsorted: the loss treats negatives as a set, and the sort is most of the draw's time on CPU
    # (docs/PERFORMANCE.md, "Earlier profile-driven changes").
    keys = torch.rand((rows, num_items + 1), generator=generator, device=device)  # [rows, N + 1]
    return keys.topk(num_negatives, dim=1, sorted=False).indices  # [rows, S]


def single_scores(
    query: torch.Tensor, target_emb: torch.Tensor, negative_emb: torch.Tensor,
    negative_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of one vector per example: positives ``[B]`` and negatives ``[B, S]``.

    ``query [B, D]``, ``target_emb [B, D]``, ``negative_emb`` ``[S, D]`` (shared) or ``[B, S, D]``;
    or, with per-example ``negative_ids [B, S]``, the whole item table (see ``table_scores``).
    """
    positive = (query * target_emb).sum(-1)  # [B]
    if negative_ids is not None:
        negative = table_scores(query, negative_emb, negative_ids)  # [B, S]
    elif negative_emb.dim() == 2:
        negative = query @ negative_emb.T  # [B, S]
    else:
        negative = torch.bmm(negative_emb, query.unsqueeze(-1)).squeeze(-1)  # [B, S]
    return positive, negative


def multi_scores(
    interests: torch.Tensor, target_emb: torch.Tensor, negative_emb: torch.Tensor, reduce: bool = True,
    negative_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BaM's all-interest scores ``s(u, i) = logsumexp_k m_k · e_i``: positives ``[B]``, negatives ``[B, S]``.

    ``interests [B, K, D]``, ``target_emb [B, D]``, ``negative_emb`` ``[S, D]`` or ``[B, S, D]``.
    With ``reduce=False`` the negatives stay per interest, ``[B, K, S]``: ``sampled_softmax_loss``
    then folds the logsumexp over K into its logsumexp over the negatives (one pass, same value).
    With per-example ``negative_ids [B, S]``, ``negative_emb`` is the whole item table.
    """
    positive = torch.bmm(interests, target_emb.unsqueeze(-1)).squeeze(-1).logsumexp(-1)  # [B]
    batch, num_interests, dim = interests.shape
    if negative_ids is not None:
        negative = table_scores(interests, negative_emb, negative_ids)  # [B, K, S]
    elif negative_emb.dim() == 2:
        # One [B*K, D] x [D, S] GEMM; a broadcast matmul would expand the negatives to [B, S, D] in
        # the backward pass.
        negative = (interests.reshape(batch * num_interests, dim) @ negative_emb.T).view(batch, num_interests, -1)
    else:
        negative = torch.bmm(interests, negative_emb.transpose(1, 2))  # [B, K, S]
    return positive, (negative.logsumexp(1) if reduce else negative)  # [B, S] or [B, K, S]


def table_scores(vectors: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Scores of per-example negative ``ids [B, S]``, by scoring every table row and gathering.

    ``vectors`` ``[B, D]`` gives ``[B, S]``; ``[B, K, D]`` gives ``[B, K, S]`` (unreduced, as
    ``multi_scores(reduce=False)``). When the catalogue is not much larger than S, one matmul against
    the whole table is far cheaper than gathering ``B * S`` embedding rows and a batched
    matrix-vector product (and its backward is a scatter into ``[B, N + 1]``, not into the table).
    """
    if vectors.dim() == 2:
        return (vectors @ table.T).gather(1, ids)  # [B, S]
    scores = torch.matmul(vectors, table.T)  # [B, K, N + 1]
    index = ids.unsqueeze(1).expand(-1, vectors.shape[1], -1)  # [B, K, S]
    return scores.gather(2, index)  # [B, K, S]


def hard_negative_log_weights(
    negative: torch.Tensor, valid: torch.Tensor | None, beta: float, detach: bool = True
) -> torch.Tensor:
    """REMI's IHN log-weights ``log(n · softmax(beta · s_neg))`` over the valid negatives.

    ``negative [B, S]`` raw scores, ``valid [B, S]`` bool or None (all valid). Invalid entries get
    -inf; with ``beta = 0`` every valid weight is 1 (log-weight 0). ``detach=False`` lets gradient
    flow through the weights, as the original BaM code's ``SSLoss.sampled_softmax_loss`` does.
    """
    scores = beta * (negative.detach() if detach else negative)  # [B, S]
    if valid is None:
        return F.log_softmax(scores, dim=-1) + math.log(negative.shape[-1])  # [B, S]
    count = valid.sum(-1, keepdim=True).clamp_min(1).to(scores.dtype)  # [B, 1]
    log_w = F.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=-1) + count.log()  # [B, S]
    return log_w.masked_fill(~valid, float("-inf"))  # [B, S]


def sampled_softmax_loss(
    positive: torch.Tensor,
    negative: torch.Tensor,
    positive_log_q: torch.Tensor | None = None,
    negative_log_q: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    beta: float = 0.0,
    ihn_detach: bool = True,
) -> torch.Tensor:
    """Per-example softmax cross entropy of the positive against its negatives: ``[B]``.

    ``positive [B]`` and ``negative [B, S]`` are model scores; ``positive_log_q [B]`` and
    ``negative_log_q`` (``[S]`` or ``[B, S]``) the noise log-probabilities subtracted from them (None:
    no correction); ``valid [B, S]`` False drops a negative (accidental hit); ``beta > 0`` applies
    REMI's IHN re-weighting of the negative term (weights detached unless ``ihn_detach=False``).
    ``negative`` may also be ``[B, K, S]`` (unreduced
    multi-interest scores, see ``multi_scores``): a negative's score is then ``logsumexp_k``.
    """
    if negative.dim() == 3 and beta != 0.0:
        negative = negative.logsumexp(1)  # [B, S]: IHN weights need each negative's score
    per_interest = negative.dim() == 3
    pos_logit = positive if positive_log_q is None else positive - positive_log_q  # [B]
    neg_logit = negative  # [B, S] or [B, K, S]
    if negative_log_q is not None:
        neg_logit = neg_logit - (negative_log_q.unsqueeze(-2) if per_interest else negative_log_q)
    if valid is not None:
        neg_logit = neg_logit.masked_fill(~(valid.unsqueeze(1) if per_interest else valid), float("-inf"))
    if beta != 0.0:
        neg_logit = neg_logit + hard_negative_log_weights(negative, valid, beta, ihn_detach)  # [B, S]
    return _SoftmaxCrossEntropy.apply(pos_logit, neg_logit)  # [B]


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """``log(e^pos + sum_j e^neg_j) - pos`` per row, ``pos [B]``, ``neg [B, ...]`` (any trailing shape).

    The same value as ``logsumexp`` over ``[pos, neg]`` minus ``pos``, but it keeps the exponentials
    of the forward pass for the backward (the softmax), so the largest tensor of a step, the
    ``[B, K, S]`` multi-interest scores, is read and written fewer times and never concatenated.
    Its backward is not itself differentiable (``once_differentiable``): a double backward (e.g. a
    gradient penalty) raises an error rather than returning a silently wrong second derivative.
    """

    @staticmethod
    def forward(ctx, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        flat = neg.reshape(neg.shape[0], -1)  # [B, M]
        peak = torch.maximum(flat.amax(1), pos)  # [B] finite: pos is finite
        neg_exp = (flat - peak.unsqueeze(1)).exp_()  # [B, M]
        pos_exp = (pos - peak).exp()  # [B]
        total = neg_exp.sum(1) + pos_exp  # [B]
        ctx.save_for_backward(neg_exp, pos_exp, total)
        ctx.neg_shape = neg.shape
        return total.log() + peak - pos  # [B]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        neg_exp, pos_exp, total = ctx.saved_tensors
        scale = grad / total  # [B]
        grad_neg = (neg_exp * scale.unsqueeze(1)).view(ctx.neg_shape)  # softmax weight of each negative
        grad_pos = pos_exp * scale - grad  # [B]
        return grad_pos, grad_neg


def full_softmax_loss(
    scores: torch.Tensor, target: torch.Tensor, beta: float = 0.0, ihn_detach: bool = True
) -> torch.Tensor:
    """Per-example cross entropy over all items 1..N: ``[B]``.

    ``scores [B, N]`` are the scores of items 1..N (padding excluded; column j is item j + 1) and
    ``target [B]`` item ids in 1..N. With ``beta > 0`` the non-target items are re-weighted as in IHN.
    """
    column = target - 1  # [B]
    if beta == 0.0:
        return F.cross_entropy(scores, column, reduction="none")  # [B]
    positive = scores.gather(1, column.unsqueeze(1)).squeeze(1)  # [B]
    valid = torch.ones_like(scores, dtype=torch.bool).scatter_(1, column.unsqueeze(1), False)  # [B, N]
    return sampled_softmax_loss(positive, scores, valid=valid, beta=beta, ihn_detach=ihn_detach)  # [B]


def chunked_full_softmax_loss(
    queries: torch.Tensor, items: torch.Tensor, target: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """``full_softmax_loss`` (``beta = 0``) without a ``[B, N]`` (or ``[B, K, N]``) score matrix: ``[B]``.

    ``queries [B, K, D]`` (K = 1 for the selected interest), ``items [N, D]`` (padding excluded),
    ``target [B]`` in 1..N. A query's score of item i is ``logsumexp_k q_k · e_i`` (BaM's
    multi-interest score; with K = 1 the plain dot product), so the loss is
    ``logsumexp_{k, i}(q_k · e_i) - logsumexp_k(q_k · e_target)``: the same value as
    ``full_softmax_loss`` on the materialised scores. The catalogue is scored ``chunk_size`` items at a
    time, forward and again in the backward pass, so memory holds ``[B, K, chunk_size]`` scores.
    """
    target_emb = items[target - 1]  # [B, D]
    positive = torch.bmm(queries, target_emb.unsqueeze(-1)).squeeze(-1).logsumexp(-1)  # [B]
    return _ChunkedLogSumExp.apply(queries, items, chunk_size) - positive  # [B]


class _ChunkedLogSumExp(torch.autograd.Function):
    """``logsumexp`` over k and i of ``q_bk · e_i`` per row b, ``queries [B, K, D]``, ``items [N, D]``.

    Backward: with ``p_bki = softmax`` of the scores, ``dq_bk = g_b sum_i p_bki e_i`` and
    ``de_i = sum_b g_b sum_k p_bki q_bk``, recomputing each chunk's scores instead of storing them.
    """

    @staticmethod
    def forward(ctx, queries: torch.Tensor, items: torch.Tensor, chunk_size: int) -> torch.Tensor:
        batch, num_interests, dim = queries.shape
        flat = queries.reshape(batch * num_interests, dim)  # [B*K, D]
        parts = []
        for start in range(0, items.shape[0], chunk_size):
            scores = flat @ items[start:start + chunk_size].T  # [B*K, C]
            parts.append(scores.view(batch, -1).logsumexp(1))  # [B]
        lse = torch.stack(parts, 1).logsumexp(1)  # [B]
        ctx.save_for_backward(queries, items, lse)
        ctx.chunk_size = chunk_size
        return lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        queries, items, lse = ctx.saved_tensors
        batch, num_interests, dim = queries.shape
        flat = queries.reshape(batch * num_interests, dim)  # [B*K, D]
        row_lse = lse.repeat_interleave(num_interests).unsqueeze(1)  # [B*K, 1]
        row_grad = grad.repeat_interleave(num_interests).unsqueeze(1)  # [B*K, 1]
        grad_flat = torch.zeros_like(flat) if ctx.needs_input_grad[0] else None
        grad_items = torch.zeros_like(items) if ctx.needs_input_grad[1] else None
        for start in range(0, items.shape[0], ctx.chunk_size):
            chunk = items[start:start + ctx.chunk_size]  # [C, D]
            weight = (flat @ chunk.T).sub_(row_lse).exp_().mul_(row_grad)  # [B*K, C] g_b * p_bki
            if grad_flat is not None:
                grad_flat.addmm_(weight, chunk)
            if grad_items is not None:
                grad_items[start:start + ctx.chunk_size] = weight.T @ flat
        grad_queries = None if grad_flat is None else grad_flat.view(batch, num_interests, dim)
        return grad_queries, grad_items, None


def accidental_hits(negatives: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` True where a negative id equals the example's positive; ``negatives`` ``[S]`` or ``[B, S]``."""
    if negatives.dim() == 1:
        return negatives.unsqueeze(0) == target.unsqueeze(1)  # [B, S]
    return negatives == target.unsqueeze(1)  # [B, S]


def routing_regularization(
    attention: torch.Tensor, mask: torch.Tensor, hidden_size: int, positions: str = "valid"
) -> torch.Tensor:
    """REMI's routing regularisation of attention ``[B, K, L]`` under ``mask [B, L]``: a scalar.

    For each example and interest, ``r_bk = sum_{valid l} (a_bkl - mean_valid(a_bk))^2 / D`` (the
    diagonal of REMI's ``C C^T / D`` with ``C`` the centred attention); the penalty is
    ``sum_b sum_k r_bk^2``, summed over the batch as in REMI's code so that its weight (lambda = 100)
    keeps its meaning. A history that spreads its attention evenly costs nothing; one that puts all
    of an interest's attention on a single item costs most.

    ``positions="all"`` takes the mean and the sum over all L positions, padding included (where the
    attention is 0), as the original BaM code's ``ComiRec.calculate_atten_loss`` does: a short history
    then counts ``L - n`` extra squared deviations ``mean^2``.
    """
    if positions == "all":
        weight = torch.ones_like(mask, dtype=attention.dtype).unsqueeze(1)  # [B, 1, L]
    elif positions == "valid":
        weight = mask.unsqueeze(1).to(attention.dtype)  # [B, 1, L]
    else:
        raise ConfigError(f"invalid rr_positions {positions!r}: choose valid or all")
    count = weight.sum(-1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
    mean = (attention * weight).sum(-1, keepdim=True) / count  # [B, K, 1]
    spread = ((attention - mean).square() * weight).sum(-1) / hidden_size  # [B, K]
    return spread.square().sum()
