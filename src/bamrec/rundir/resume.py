"""The resume state (``last.ckpt``): everything ``--resume`` needs to continue a run exactly.

It is typed and split by owner:

* :class:`RankState` is what one *process* owns: its random streams (the sampler's generator, the
  selection generator, torch's global CPU generator and, on CUDA, the device's global generator that
  dropout draws from) and the device type they were drawn on.

Generator states are device-specific: a CPU generator's state is a 5,056-byte Mersenne Twister state,
a CUDA generator's a 16-byte Philox seed and offset, and neither can be loaded into the other. A resume
on the device type the checkpoint was written on restores every stream exactly; on another device type
(``--device`` changed) the device streams are re-seeded from the saved states (a hash of their bytes),
so that resuming the same checkpoint twice draws the same batches, though not the ones the original
device would have drawn (its kernels differ anyway). The global CPU generator is restored either way.
* :class:`ResumeState` is the shared part (iteration, elapsed time, early-stopping state, weights and
  optimiser of the objective) plus ``ranks``: one :class:`RankState` per process, indexed by rank.

Rank 0 writes the file at every validation check (atomically: a crash never leaves half a file), after
gathering every rank's :class:`RankState` (``Communicator.gather``, a collective at the check), so
each process of a resumed DDP run continues its own streams. A rank the file has no state for (a run
resumed with more processes than it was saved with, or a file written before per-rank states) starts
fresh streams seeded by its rank and the iteration (:func:`fresh_streams`): never another rank's.

:func:`check_resumable` refuses a resume whose dataset, model or training options differ from the
saved run (only :data:`MAY_CHANGE_ON_RESUME` may change).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bamrec import files
from bamrec.config import RunConfig, to_dict
from bamrec.data.sampling import TrainSampler
from bamrec.errors import RunDirError
from bamrec.rundir import layout as ckpt

RESUME_FORMAT = "bamrec-resume/2"
MAY_CHANGE_ON_RESUME = frozenset({"max_iters", "patience", "progress", "device", "compile"})


@dataclass
class RankState:
    """The random streams of one process."""

    sampler: dict[str, Any]  # TrainSampler.state_dict()
    selection_generator: torch.Tensor  # torch.Generator.get_state() of the selection/negatives stream
    torch_rng: torch.Tensor  # torch.get_rng_state() (CPU global generator)
    device_type: str  # "cpu" or "cuda": the device the sampler and selection generators live on
    cuda_rng: torch.Tensor | None = None  # torch.cuda.get_rng_state() of the training device, on CUDA

    @classmethod
    def capture(cls, sampler: TrainSampler, selection_generator: torch.Generator) -> RankState:
        device = selection_generator.device
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        return cls(sampler=sampler.state_dict(), selection_generator=selection_generator.get_state(),
                   torch_rng=torch.get_rng_state(), device_type=device.type, cuda_rng=cuda_rng)

    def apply(self, sampler: TrainSampler, selection_generator: torch.Generator) -> bool:
        """Restore the streams; True when they were re-seeded because the device type changed."""
        torch.set_rng_state(self.torch_rng)
        device = selection_generator.device
        if device.type == self.device_type:
            sampler.load_state_dict(self.sampler)
            selection_generator.set_state(self.selection_generator)
            if self.cuda_rng is not None and device.type == "cuda":
                torch.cuda.set_rng_state(self.cuda_rng, device)
            return False
        sampler.generator.manual_seed(seed_from_state(self.sampler["generator"]))
        selection_generator.manual_seed(seed_from_state(self.selection_generator))
        if device.type == "cuda":
            torch.cuda.manual_seed(seed_from_state(self.cuda_rng if self.cuda_rng is not None else self.torch_rng))
        return True

    def to_payload(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "selection_generator": self.selection_generator,
                "torch_rng": self.torch_rng, "device_type": self.device_type, "cuda_rng": self.cuda_rng}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RankState:
        selection = payload["selection_generator"]
        device_type = payload.get("device_type") or _device_type_of_state(selection)
        return cls(sampler=payload["sampler"], selection_generator=selection, torch_rng=payload["torch_rng"],
                   device_type=device_type, cuda_rng=payload.get("cuda_rng"))


def seed_from_state(state: torch.Tensor) -> int:
    """A 63-bit seed that is a deterministic function of a generator state's bytes."""
    digest = hashlib.sha256(state.cpu().contiguous().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _device_type_of_state(state: torch.Tensor) -> str:
    """For checkpoints that did not record it: a CPU generator state has a fixed size, a CUDA one not that."""
    return "cpu" if state.numel() == torch.Generator().get_state().numel() else "cuda"


@dataclass
class ResumeState:
    """What ``last.ckpt`` holds."""

    iteration: int
    elapsed_s: float
    early_stopping: dict[str, Any]  # EarlyStopping.state_dict()
    objective: dict[str, Any]  # Objective.state_dict() (backbone + selector)
    optimizer: dict[str, Any]
    ranks: list[RankState] = field(default_factory=list)

    def rank_state(self, rank: int) -> RankState | None:
        """The streams process ``rank`` continues with, or None when the file has none for it."""
        return self.ranks[rank] if rank < len(self.ranks) else None

    def to_payload(self) -> dict[str, Any]:
        return {"format": RESUME_FORMAT, "iteration": self.iteration, "elapsed_s": self.elapsed_s,
                "early_stopping": self.early_stopping, "objective": self.objective, "optimizer": self.optimizer,
                "ranks": [r.to_payload() for r in self.ranks]}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ResumeState:
        if payload.get("format") != RESUME_FORMAT:  # the flat layout written before the split (no "format")
            return cls(
                iteration=payload["iteration"], elapsed_s=payload["elapsed_s"],
                early_stopping={k: payload[k] for k in ("best_metric", "best_iter", "best_valid", "bad_checks")},
                objective=payload["objective"], optimizer=payload["optimizer"],
                ranks=[RankState.from_payload(payload)],
            )
        return cls(iteration=payload["iteration"], elapsed_s=payload["elapsed_s"],
                   early_stopping=payload["early_stopping"], objective=payload["objective"],
                   optimizer=payload["optimizer"], ranks=[RankState.from_payload(r) for r in payload["ranks"]])


def fresh_streams(sampler: TrainSampler, selection_generator: torch.Generator, seed: int, rank: int,
                  iteration: int) -> None:
    """Seed a rank's streams from ``(seed, rank, iteration)``: distinct from every other rank's, and
    from the streams this rank would have started the run with."""
    base = seed + 7919 * rank + 104_729 * (iteration + 1)
    sampler.generator.manual_seed(base)
    selection_generator.manual_seed(base + 1)


def save(out: Path, state: ResumeState) -> None:
    """Write ``out/last.ckpt`` atomically."""
    with files.atomic_write(out / ckpt.RESUME_FILE) as handle:
        torch.save(state.to_payload(), handle)


def load(out: Path) -> ResumeState:
    """Read ``out/last.ckpt`` (tensors on the CPU); a damaged or truncated file is a RunDirError."""
    try:
        payload = torch.load(out / ckpt.RESUME_FILE, map_location="cpu", weights_only=False)
        return ResumeState.from_payload(payload)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, KeyError, TypeError, AttributeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]  # torch's first sentence
        raise RunDirError(f"cannot resume {out}: {ckpt.RESUME_FILE} is damaged or incomplete ({reason}); "
                          "train again with --overwrite") from None


def check_resumable(out: Path, config: RunConfig, dataset_info: dict[str, Any]) -> None:
    """Refuse to resume ``out`` with another dataset, model or training options."""
    saved_config, record = ckpt.read_config(out)
    if record["dataset"]["checksum"] != dataset_info["checksum"]:
        raise RunDirError(f"cannot resume {out}: it was trained on another dataset "
                          f"(checksum {record['dataset']['checksum'][:12]} vs {dataset_info['checksum'][:12]})")
    old = {k: v for k, v in to_dict(saved_config.train).items() if k not in MAY_CHANGE_ON_RESUME}
    new = {k: v for k, v in to_dict(config.train).items() if k not in MAY_CHANGE_ON_RESUME}
    if saved_config.model != config.model or old != new:
        raise RunDirError(f"cannot resume {out}: the model or training options differ from the saved run "
                          f"(only {', '.join(sorted(MAY_CHANGE_ON_RESUME))} may change)")
