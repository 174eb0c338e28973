"""`bamrec ...` under torchrun with probes, for tests/training/test_distributed.py (not a test itself).

Usage: ``torchrun ... ddp_probe.py RECORD_DIR [bamrec arguments]``. Each process appends one JSON
line per training step to ``RECORD_DIR/rank{R}.jsonl``: the users and targets of its batch and the
negatives it drew. Environment switches:

- ``PROBE_GRADIENTS=1``: at the first step, also compute the rank's own gradient on a copy of the
  objective from the same batch and draws (streams restored afterwards), and save it with the
  gradient DDP leaves after the step to ``RECORD_DIR/grads{R}.pt``;
- ``PROBE_NAN_RANK=r`` and ``PROBE_NAN_AT=i``: process r's loss is NaN at its i-th step.

Once bamrec returned, each process writes the names of its native threads to ``RECORD_DIR/threads{R}.json``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch

from bamrec.cli import main
from bamrec.data.sampling import TrainSampler
from bamrec.training import losses, trainer

RANK = int(os.environ.get("RANK", "0"))
RECORD = Path(sys.argv[1])
NAN_RANK = int(os.environ.get("PROBE_NAN_RANK", "-1"))
NAN_AT = int(os.environ.get("PROBE_NAN_AT", "0"))
step_record: dict = {}
steps = 0
recording = True

_sample = TrainSampler.sample


def sample(self):
    batch = _sample(self)
    if recording:
        step_record.update(users=batch.user.tolist(), targets=batch.target.tolist())
    return batch


_sample_negatives = losses.sample_negatives


def sample_negatives(*args, **kwargs):
    negatives = _sample_negatives(*args, **kwargs)
    if recording:
        step_record.setdefault("negatives", []).append(negatives.reshape(-1).tolist())
    return negatives


_step = trainer._step


def own_gradient(session) -> torch.Tensor:
    """This rank's gradient on the batch and draws its next step will use, leaving every stream as it was."""
    global recording
    recording = False
    sampler_state, generator_state, rng = (session.sampler.state_dict(), session.selection_generator.get_state(),
                                           torch.get_rng_state())
    local = copy.deepcopy(session.objective)
    batch = session.sampler.sample()
    local(batch.history, batch.mask, batch.target, session.selection_generator).loss.backward()
    session.sampler.load_state_dict(sampler_state)
    session.selection_generator.set_state(generator_state)
    torch.set_rng_state(rng)
    recording = True
    return torch.cat([p.grad.reshape(-1) for p in local.parameters() if p.grad is not None])


def probed_step(session):
    global steps
    steps += 1
    local_grad = own_gradient(session) if steps == 1 and os.environ.get("PROBE_GRADIENTS") else None
    if RANK == NAN_RANK and steps == NAN_AT:
        forward = session.objective.forward

        def nan_forward(*args, **kwargs):
            output = forward(*args, **kwargs)
            return output._replace(loss=output.loss * float("nan"))

        session.objective.forward = nan_forward  # DDP calls the wrapped module's forward
    step_record.clear()
    output = _step(session)
    if RANK == NAN_RANK and steps == NAN_AT:
        del session.objective.forward
    with open(RECORD / f"rank{RANK}.jsonl", "a") as stream:
        stream.write(json.dumps(step_record) + "\n")
    if local_grad is not None:
        averaged = torch.cat([p.grad.reshape(-1) for p in session.objective.parameters() if p.grad is not None])
        torch.save({"own": local_grad, "ddp": averaged}, RECORD / f"grads{RANK}.pt")
    return output


TrainSampler.sample = sample
losses.sample_negatives = sample_negatives
trainer._step = probed_step



def native_threads() -> list[str] | None:
    """Names of this process's native threads (Linux /proc), None where the system has no /proc."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    return sorted((task / "comm").read_text().strip() for task in tasks.iterdir())


if __name__ == "__main__":
    RECORD.mkdir(parents=True, exist_ok=True)
    code = main(sys.argv[2:])
    # What is still running once bamrec returned: threads of a process group left alive here run on
    # into interpreter shutdown (test_no_process_group_thread_outlives_the_run).
    (RECORD / f"threads{RANK}.json").write_text(json.dumps(native_threads()))
    sys.exit(code)
