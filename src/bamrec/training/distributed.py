"""The processes of a run and what they say to each other: a :class:`Communicator`.

A run is one process (a plain :class:`Communicator`, whose every exchange does nothing) or, under ``torchrun``,
one process per device joined by PyTorch DDP (:class:`DDPCommunicator`: nccl on GPUs, gloo on CPUs).
:func:`connect` picks the form; the training loop calls the same methods either way, so it reads as
the single-process loop it is:

- Data: each process draws its own batches, negatives and selection draws (generators seeded by rank),
  so ``batch_size`` is per process and the effective batch is ``batch_size * world_size``; DDP averages
  the gradients (:meth:`Communicator.wrap`). ``--resume`` restores every rank's own streams: at each
  check the ranks' states are gathered (:meth:`Communicator.gather`) and saved one per rank
  (``rundir.resume``).
- Stopping: every decision that makes the loop stop goes through :meth:`Communicator.agree_on_stop`,
  called by every rank at the same iterations: the codes are combined by an all-reduce (max), so a
  non-finite loss on any one rank stops all of them at the same iteration, and none is left waiting in
  an all-reduce.
- Evaluation: :meth:`Communicator.sharded_evaluation` gives each rank every ``world_size``-th user of
  the view and gathers the per-user ranks, so every rank holds the whole result, in view order,
  identical to a single-process evaluation.
- Writing: rank 0 (:attr:`Communicator.is_main`) writes the run directory; the others write nothing.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from bamrec.data.split import EvalView
from bamrec.evaluation.metrics import EvalResult

STOP_REASONS = ("patience", "nan")  # codes 1.. of agree_on_stop; 0 = go on


class Communicator:
    """The single-process form: every exchange returns what it was given (:class:`DDPCommunicator`
    is the other form)."""

    rank = 0
    world_size = 1
    local_rank = 0

    def __init__(self, device: torch.device) -> None:
        self.device = device  # the device this process trains on

    @property
    def enabled(self) -> bool:
        """Whether there are other processes (DDP)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run (rank 0)."""
        return self.rank == 0

    def wrap(self, objective: torch.nn.Module) -> torch.nn.Module:
        """The module the training step calls: ``objective`` itself, or wrapped to average gradients."""
        return objective

    def agree_on_stop(self, reason: str | None) -> str | None:
        """The stop decision every process acts on, given this process's own ``reason`` (None = go on)."""
        return reason

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order."""
        return [obj]

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes, in place."""
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over the processes, in place."""
        return tensor

    def broadcast_state(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers into ``module`` (in place)."""

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag``."""
        return flag

    def sharded_evaluation(self, evaluate_view: Callable[[EvalView], EvalResult], view: EvalView) -> EvalResult:
        """``evaluate_view(view)``, the users split over the processes and gathered."""
        return evaluate_view(view)

    def close(self) -> None:
        """Leave the process group (nothing to leave here)."""


class DDPCommunicator(Communicator):
    """A process of a ``torchrun`` launch: the exchanges are collectives every rank must call at the
    same point of the loop."""

    def __init__(self, device: torch.device, rank: int, world_size: int, local_rank: int) -> None:
        super().__init__(device)
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    def wrap(self, objective: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def agree_on_stop(self, reason: str | None) -> str | None:
        # Any rank may raise a reason on its own (rank 0 runs out of patience; any rank sees a non-finite
        # loss): the all-reduce takes the highest code, so ``nan`` wins over ``patience`` and every rank
        # returns the same answer.
        code = torch.tensor([0 if reason is None else STOP_REASONS.index(reason) + 1], device=self.device)
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        value = int(code.item())
        return None if value == 0 else STOP_REASONS[value - 1]

    def gather(self, obj: Any) -> list[Any]:
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum_(tensor).div_(self.world_size)

    def broadcast_state(self, module: torch.nn.Module) -> None:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    def broadcast_flag(self, flag: bool) -> bool:
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def sharded_evaluation(self, evaluate_view: Callable[[EvalView], EvalResult], view: EvalView) -> EvalResult:
        # Rank r evaluates positions r, r + W, r + 2W, ... of the view; ranks are exact, so the gathered
        # metrics equal a single process's.
        positions = np.arange(self.rank, len(view), self.world_size)  # [U_r]
        part = evaluate_view(view.subset(positions)) if len(positions) else None
        shards = self.gather(None if part is None else (positions, part.ranks, part.target_interest,
                                                        part.protocol, part.cutoffs))
        ranks = np.empty(len(view), dtype=np.int64)
        target_interest = np.empty(len(view), dtype=np.int64)
        for shard in shards:
            if shard is not None:
                where, shard_ranks, shard_interest, protocol, cutoffs = shard
                ranks[where], target_interest[where] = shard_ranks, shard_interest
        return EvalResult(ranks=ranks, target_interest=target_interest,
                          users=np.asarray(view.users, dtype=np.int64).copy(), protocol=protocol, cutoffs=cutoffs)

    def close(self) -> None:
        # The backend's threads stop here, not at interpreter exit (see _import_before_joining).
        if dist.is_initialized():
            dist.destroy_process_group()


def connect(device: torch.device) -> Communicator:
    """This process's communicator: DDP when launched by ``torchrun`` (WORLD_SIZE > 1), else a single
    process. Under DDP on CUDA each process trains on ``cuda:LOCAL_RANK`` (the communicator's ``device``)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Communicator(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        _import_before_joining()
        dist.init_process_group(backend=backend)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return DDPCommunicator(device, rank, world_size, local_rank)


def _import_before_joining() -> None:
    """Import what DistributedDataParallel's constructor imports while no process group exists yet.

    DDP's constructor imports ``torch._dynamo``, which imports ``torch.distributed.nn.functional``, whose
    functions take ``group=group.WORLD`` as a default argument: bound at import, after
    ``init_process_group`` that default is the process group itself. ``destroy_process_group`` then
    cannot free it, so the gloo backend's worker and socket threads run on past
    :meth:`DDPCommunicator.close` into interpreter shutdown, where their teardown races the
    interpreter's: a rank that had finished its run intermittently aborted ("terminate called without
    an active exception", SIGABRT), and torchrun reported failure. Imported first, the default is None,
    and ``close`` stops the threads.
    """
    import torch._dynamo  # noqa: F401
