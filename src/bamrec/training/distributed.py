"""PyTorch DDP support for ``torchrun``: one process per device; every rank trains, validates and tests
its share, rank 0 writes the run.

- Data: each process draws its own batches, negatives and selection draws (generators seeded by rank),
  so ``batch_size`` is per process and the effective batch is ``batch_size * world_size``; DDP averages
  the gradients. ``--resume`` restores every rank's own streams: at each check the ranks' states are
  gathered (:func:`gather_objects`) and saved one per rank (``rundir.resume``).
- Stopping: every decision that makes the loop stop goes through :func:`agree_on_stop`, called by every
  rank at the same iterations: the codes are combined by an all-reduce (max), so a non-finite loss on
  any one rank stops all of them at the same iteration, and none is left waiting in an all-reduce.
- Evaluation: :func:`sharded_evaluation` gives each rank every ``world_size``-th user of the view and
  gathers the per-user ranks, so every rank holds the whole result, in view order, identical to a
  single-process evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from bamrec.data.split import EvalView
from bamrec.evaluation.metrics import EvalResult


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        _import_before_joining()
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def _import_before_joining() -> None:
    """Import what DistributedDataParallel's constructor imports while no process group exists yet.

    DDP's constructor imports ``torch._dynamo``, which imports ``torch.distributed.nn.functional``, whose
    functions take ``group=group.WORLD`` as a default argument: bound at import, after
    ``init_process_group`` that default is the process group itself. ``destroy_process_group`` then
    cannot free it, so the gloo backend's worker and socket threads run on past :func:`shutdown` into
    interpreter shutdown, where their teardown races the interpreter's: a rank that had finished its
    run intermittently aborted ("terminate called without an active exception", SIGABRT), and torchrun
    reported failure. Imported first, the default is None, and :func:`shutdown` stops the threads.
    """
    import torch._dynamo  # noqa: F401


STOP_REASONS = ("patience", "nan")  # codes 1.. of agree_on_stop; 0 = go on


def agree_on_stop(reason: str | None, context: DistributedContext, device: torch.device) -> str | None:
    """The stop decision every rank acts on, given this rank's own ``reason`` (None = go on).

    Any rank may raise a reason on its own (rank 0 runs out of patience; any rank sees a non-finite
    loss): the all-reduce takes the highest code, so ``nan`` wins over ``patience`` and every rank
    returns the same answer. Must be called by every rank at the same iteration.
    """
    if not context.enabled:
        return reason
    code = torch.tensor([0 if reason is None else STOP_REASONS.index(reason) + 1], device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    value = int(code.item())
    return None if value == 0 else STOP_REASONS[value - 1]


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in a single process."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_state(module: torch.nn.Module, context: DistributedContext) -> None:
    """Rank 0's parameters and buffers into ``module`` on every rank (in place)."""
    if context.enabled:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def broadcast_flag(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not context.enabled:
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def sharded_evaluation(evaluate_view: Callable[[EvalView], EvalResult], view: EvalView,
                       context: DistributedContext) -> EvalResult:
    """``evaluate_view(view)``, with the users split over the ranks and the ranks gathered.

    Rank r evaluates positions ``r, r + W, r + 2W, ...`` of ``view``; the result on every rank is the
    whole view's, in view order (ranks are exact, so the metrics equal a single process's).
    """
    if not context.enabled:
        return evaluate_view(view)
    positions = np.arange(context.rank, len(view), context.world_size)  # [U_r]
    part = evaluate_view(view.subset(positions)) if len(positions) else None
    shards = gather_objects(None if part is None else (positions, part.ranks, part.target_interest,
                                                       part.protocol, part.cutoffs), context)
    ranks = np.empty(len(view), dtype=np.int64)
    target_interest = np.empty(len(view), dtype=np.int64)
    for shard in shards:
        if shard is not None:
            where, shard_ranks, shard_interest, protocol, cutoffs = shard
            ranks[where], target_interest[where] = shard_ranks, shard_interest
    return EvalResult(ranks=ranks, target_interest=target_interest, users=np.asarray(view.users, dtype=np.int64).copy(),
                      protocol=protocol, cutoffs=cutoffs)


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shutdown(context: DistributedContext) -> None:
    """Leave and free the process group (its backend's threads stop here, not at interpreter exit)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
