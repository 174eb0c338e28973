"""PyTorch DDP support for ``torchrun``: one process per device, rank 0 validates and writes.

Each process draws its own training batches (sampler seed offset by rank), so ``batch_size`` is per
process and the effective batch is ``batch_size * world_size``. Gradients are averaged by DDP.
Validation, checkpoints and logs happen on rank 0; its stop decision is broadcast so every process
leaves the loop at the same iteration.

Every decision that makes the loop stop goes through :func:`agree_on_stop`, called by every rank at each
validation check: that is the one place where the ranks agree on stopping (and on why).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


STOP_REASONS = ("patience", "nan")  # codes 1.. of agree_on_stop; 0 = go on


def agree_on_stop(reason: str | None, context: DistributedContext, device: torch.device) -> str | None:
    """The stop decision every rank acts on, given this rank's own ``reason`` (None = go on).

    Today rank 0's decision is taken by all (only rank 0 validates, so only it can run out of patience).
    A reason any rank may raise on its own (a non-finite loss) must be combined here instead, e.g. by an
    all-reduce of the codes, so that no rank leaves the loop alone and the others wait on it forever.
    """
    if not context.enabled:
        return reason
    code = torch.tensor([0 if reason is None else STOP_REASONS.index(reason) + 1], device=device)
    dist.broadcast(code, src=0)
    value = int(code.item())
    return None if value == 0 else STOP_REASONS[value - 1]


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
