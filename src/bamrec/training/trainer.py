"""Training: set up a run (``train``), then a small iteration-based fit loop (``fit``).

Defaults follow the original BaM code (docs/method.md, "The original code's defaults"): batch 128, Adam 1e-3, validate every
1,000 iterations on a fixed validation set, keep the best model by validation recall@10 (``select_metric``), stop after
``patience`` (15) checks without improvement. The inner loop does no host-device synchronisation
except at logging points (every ``LOG_EVERY`` steps) and validation checks.

The parts the loop is made of, each in its own place:

* the validation step: :mod:`bamrec.training.validation` (an object chosen by ``valid_protocol``);
* early stopping: :class:`bamrec.training.early_stopping.EarlyStopping`;
* the resume state (``last.ckpt``, typed, per process): :mod:`bamrec.rundir.resume`;
* per-check callbacks (log line, progress bar, extra loggers passed to ``train``):
  :mod:`bamrec.training.callbacks`;
* the processes: a :class:`bamrec.training.distributed.Communicator` (one process: every exchange does
  nothing; DDP under ``torchrun``): the ranks agree on stopping at every loss read-out (a non-finite
  loss on any rank) and every check (patience); every rank validates and tests its share of the users;
  rank 0 writes;
* one writer per run: rank 0 holds the run directory's lock (:mod:`bamrec.locks`) from before
  ``--overwrite`` removes anything until the summary is written; a second writer is refused;
* Ctrl-C / SIGTERM: :mod:`bamrec.training.interrupts` stops the loop (never inside a check's writes);
  the run is then finished with its best checkpoint, ``stopped`` says ``interrupted (SIGTERM)`` and
  ``TrainResult.interrupt_signal`` tells the CLI its exit status.

``fit`` reads step, log, check: a step trains on one batch; at a log point (:func:`_log`) the loss is
read and checked; a check (:func:`_check`) runs validation (every rank, users split) and gathers every
rank's random streams, then on rank 0 (:func:`_record_check`): early stopping -> best weights (when
improved) -> ``metrics.jsonl`` -> resume state (one stream state per rank) -> callbacks. Each file is
replaced atomically, so ``kill -9`` at any point leaves a run that ``--resume`` continues from the last
resume state as if never killed.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from bamrec import locks
from bamrec.config import RunConfig
from bamrec.data.sampling import TrainSampler, WindowSampler
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.devices import resolve_device  # re-exported: the one device check (mps, cuda:N range)
from bamrec.errors import BamrecError
from bamrec.evaluation.model_eval import evaluate_model, evaluate_model_result
from bamrec.models import build_backbone
from bamrec.presets import resolve_presets
from bamrec.rundir import layout as ckpt
from bamrec.rundir import resume as resume_state
from bamrec.training.callbacks import Check, CheckCallback, Log, LogCheck, ProgressBar
from bamrec.training.distributed import Communicator, connect
from bamrec.training.early_stopping import EarlyStopping
from bamrec.training.divergence import DivergenceWatch
from bamrec.training.interrupts import Interrupts, catch_interrupts
from bamrec.training.objective import Objective, ObjectiveOutput
from bamrec.training.validation import Validation, build_validation, validation_view

# Re-exported: they lived here before the split (``bamrec.api`` and scripts import them from here).
__all__ = ["TrainResult", "TrainingError", "TrainingInterrupted", "evaluate_model", "evaluate_model_result", "fit", "resolve_device",
           "train", "validation_view"]

LOG_EVERY = 50  # steps between loss read-outs (the only host syncs of the inner loop)


class TrainingError(BamrecError):
    """Training could not produce a usable model (e.g. the loss became NaN before any checkpoint)."""


class TrainingInterrupted(TrainingError):
    """A signal stopped training before any checkpoint; the CLI exits ``128 + signum``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: where the run is and how it ended."""

    run_dir: Path
    best_iter: int
    iters: int
    stopped: str
    train_time_s: float
    best_valid: dict[str, Any]
    test: dict[str, Any]
    main_process: bool = True  # False on the other ranks of a DDP run (they write nothing)
    interrupt_signal: int | None = None  # the signal (SIGINT, SIGTERM) that stopped training, if one did


@dataclass(frozen=True)
class Session:
    """What the loop works with (built once by ``_train``; nothing in it changes during the loop)."""

    config: RunConfig
    model: torch.nn.Module  # the objective, wrapped in DDP when distributed, in CompiledOrEager with --compile
    objective: Objective
    optimizer: torch.optim.Optimizer
    sampler: TrainSampler
    selection_generator: torch.Generator
    validate: Validation
    out: Path
    device: torch.device
    communicator: Communicator  # the other processes of a DDP run (one process: exchanges do nothing)
    log: Log


@dataclass
class LoopState:
    """What changes during the loop (with ``EarlyStopping``, this is what a resume restores)."""

    iteration: int = 0
    elapsed_s: float = 0.0


def train(
    config: RunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    callbacks: Sequence[CheckCallback] = (),
) -> TrainResult:
    """Train a model as ``config`` says and write a run directory at ``out``.

    With ``resume`` the run continues from ``out/last.ckpt`` (refused when the config or the dataset
    differ). Without ``overwrite`` an existing non-empty ``out`` is refused. Under ``torchrun`` the
    work is split over processes with DDP (see ``training.distributed``). ``callbacks`` receive every
    validation check after the built-in ones (rank 0 only; see ``training.callbacks``).
    """
    config = resolve_presets(config)
    if not config.data:
        raise BamrecError("no dataset given: pass --data DIR (a directory made by `bamrec data prepare`)")
    communicator = connect(resolve_device(config.train.device))
    try:
        with ExitStack() as held:
            if communicator.is_main:  # the one process that writes the run holds its lock (bamrec.locks)
                ckpt.check_run_dir(out, overwrite=overwrite, resume=resume)
                held.enter_context(locks.write_lock(out, "bamrec train" + (" --resume" if resume else "")))
            return _train(config, Path(out), communicator, overwrite, resume, progress, verbose, callbacks)
    finally:
        communicator.close()


def _train(
    config: RunConfig,
    out: Path,
    communicator: Communicator,
    overwrite: bool,
    resume: bool,
    progress: bool | None,
    verbose: bool,
    extra_callbacks: Sequence[CheckCallback],
) -> TrainResult:
    tc, device, rank = config.train, communicator.device, communicator.rank
    dataset = SequenceDataset.load(config.data)
    split = LeaveOneOut(dataset)
    dataset_info = ckpt.dataset_record(dataset, config.data)
    main = communicator.is_main
    if main:
        out = ckpt.prepare_run_dir(out, overwrite=overwrite, resume=resume)
    log = Log(out / ckpt.LOG_FILE if main else None, echo=verbose and main)
    if main and split.describe_short_users():
        log(f"note: {split.describe_short_users()}")

    torch.manual_seed(tc.seed)
    backbone = build_backbone(config.model, dataset.num_items, seed=tc.seed)
    objective = Objective(backbone, tc, dataset.num_items, seed=tc.seed).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler_class = WindowSampler if tc.targets == "all" else TrainSampler
    sampler = sampler_class(split, config.model.seq_len, tc.batch_size, seed=tc.seed + 7919 * rank,
                           device=device)
    selection_generator = torch.Generator(device=device)
    selection_generator.manual_seed(tc.seed + 1 + 7919 * rank)
    state = LoopState()
    stopper = EarlyStopping(tc.select_metric, tc.patience)

    if resume:
        resume_state.check_resumable(out, config, dataset_info)
        saved = resume_state.load(out)
        objective.load_state_dict(saved.objective)
        optimizer.load_state_dict(saved.optimizer)
        rank_state = saved.rank_state(rank)
        reseeded = False
        if rank_state is not None:
            reseeded = rank_state.apply(sampler, selection_generator)
        else:
            resume_state.fresh_streams(sampler, selection_generator, tc.seed, rank, saved.iteration)
        if len(saved.ranks) < communicator.world_size:
            log(f"note: {out / ckpt.RESUME_FILE} holds the random streams of {len(saved.ranks)} process(es); "
                f"processes {len(saved.ranks)}..{communicator.world_size - 1} start fresh streams")
        stopper.load_state_dict(saved.early_stopping)
        state = LoopState(iteration=saved.iteration, elapsed_s=saved.elapsed_s)
        log(f"resumed from iteration {state.iteration}")
        dropped = ckpt.drop_checks_after(out, saved.iteration) if main else 0
        if dropped:
            log(f"note: dropped {dropped} line(s) of {ckpt.METRICS_FILE} past the checkpoint (the run was killed "
                "between writing them and its resume state); they are computed again")
        if reseeded and rank_state is not None:
            log(f"note: the checkpoint was written on {rank_state.device_type}, this run is on {device.type}: "
                "generator states do not carry over between device types, so the random streams were "
                "re-seeded from the saved ones (deterministic, but not the batches the original device would "
                "have drawn)")
    elif main:
        ckpt.write_config(out, config, dataset_info)
        ckpt.write_item_map(out, dataset)

    model = communicator.wrap(objective)
    if tc.compile:
        from bamrec.training.compiled import CompiledOrEager

        model = CompiledOrEager(model, log)  # type: ignore[assignment]
    validate = build_validation(config, dataset, split, device, communicator)
    if main:
        log(
            f"training {config.model.model} ({config.model.num_interests} interests, d={config.model.hidden_size}, "
            f"L={config.model.seq_len}) with {_scheme(config)} on {dataset.num_users} users / "
            f"{dataset.num_items} items, device {device}"
            + (f", {communicator.world_size} processes" if communicator.enabled else "")
        )

    session = Session(config, model, objective, optimizer, sampler, selection_generator, validate, out, device,
                      communicator, log)
    bar = ProgressBar(tc.max_iters, state.iteration, enabled=(progress if progress is not None else tc.progress)
                      and main)
    with catch_interrupts() as interrupts:
        stopped = fit(session, state, stopper, bar, [LogCheck(log), bar, *extra_callbacks], interrupts)
    return _finish(session, dataset, split, state, stopper, stopped, interrupts)


class _Meter:
    """Running training loss and selection counts between two checks, kept on the device (no syncs)."""

    def __init__(self, num_interests: int, batch_size: int, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.steps = 0
        self.selection_counts = torch.zeros(num_interests, dtype=torch.long, device=device)  # [K]
        self.ones = torch.ones(batch_size, dtype=torch.long, device=device)  # [B]

    def add(self, output: ObjectiveOutput) -> None:
        self.loss_sum += output.loss.detach()
        self.steps += 1
        # index_add_, not bincount: bincount's output size depends on the data, a host sync on GPU.
        self.selection_counts.index_add_(0, output.selected_index, self.ones)

    def mean_loss(self) -> float:
        return (self.loss_sum / max(self.steps, 1)).item()

    def selection_shares(self) -> list[float]:
        counts = self.selection_counts.cpu().numpy()
        return (counts / max(int(counts.sum()), 1)).round(6).tolist()

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.steps = 0
        self.selection_counts.zero_()


def fit(
    session: Session,
    state: LoopState,
    stopper: EarlyStopping,
    bar: ProgressBar,
    callbacks: Sequence[CheckCallback],
    interrupts: Interrupts | None = None,
) -> str:
    """Run training steps until ``max_iters``, early stopping, a non-finite loss or an interrupt.

    Returns why it stopped: ``max_iters``, ``patience``, ``nan`` or ``interrupted (SIGTERM)`` (the
    signal's name, from ``interrupts``; plain ``interrupted`` for a ``KeyboardInterrupt`` raised by
    other means). ``state`` and ``stopper`` are updated in place; callbacks are closed on the way out.
    """
    interrupts = interrupts or Interrupts()
    tc = session.config.train
    meter = _Meter(session.objective.backbone.num_interests, tc.batch_size, session.device)
    started = time.perf_counter() - state.elapsed_s
    stopped: str | None = None
    divergence = DivergenceWatch(tc.lr)
    session.model.train()
    try:
        while stopped is None and state.iteration < tc.max_iters:
            state.iteration += 1
            output = _step(session)
            meter.add(output)
            bar.update()
            if (state.iteration % LOG_EVERY == 0 or state.iteration % tc.eval_every == 0
                    or divergence.needs_reference):  # the first step's loss: what divergence is measured from
                stopped = _log(session, state, stopper, output, divergence, bar)
            if stopped is None and (state.iteration % tc.eval_every == 0 or state.iteration == tc.max_iters):
                state.elapsed_s = time.perf_counter() - started
                stopped = _check(session, state, stopper, meter, callbacks, interrupts)
    except KeyboardInterrupt:
        stopped = f"interrupted ({interrupts.name})" if interrupts.name else "interrupted"
        session.log(f"interrupted{f' by {interrupts.name}' if interrupts.name else ''} at iteration "
                    f"{state.iteration}; {_kept(stopper)}")
    finally:
        for callback in callbacks:
            callback.close()
    state.elapsed_s = time.perf_counter() - started
    return stopped or "max_iters"


def _log(session: Session, state: LoopState, stopper: EarlyStopping, output: ObjectiveOutput,
         divergence: DivergenceWatch, bar: ProgressBar) -> str | None:
    """A loss read-out (a host sync): ``nan`` when the loss is not finite on any process, else None
    after the divergence watch and the progress bar have seen it."""
    communicator = session.communicator
    recent = output.loss.item()
    # Every rank reads its loss at the same iterations and they agree: a non-finite loss on any one
    # rank stops all of them here (none is left waiting in the next all-reduce).
    if communicator.agree_on_stop(None if math.isfinite(recent) else "nan") == "nan":
        what = f"{recent}" if not math.isfinite(recent) else "non-finite"
        where = "" if not communicator.enabled else (
            f" on process {communicator.rank}" if not math.isfinite(recent) else " on another process")
        session.log(f"loss became {what}{where} at iteration {state.iteration}: stopping; "
                    f"{_kept(stopper)}. Lower --lr or check the data.")
        return "nan"
    warning = divergence.observe(state.iteration, recent)
    if warning is not None:
        session.log(warning)
    bar.set_loss(recent)
    return None


def _check(session: Session, state: LoopState, stopper: EarlyStopping, meter: _Meter,
           callbacks: Sequence[CheckCallback], interrupts: Interrupts) -> str | None:
    """A validation check (every process calls it): validate, record it on rank 0, and return the stop
    reason every process agrees on (``patience``, ``nan``) or None."""
    communicator = session.communicator
    communicator.sum_(meter.selection_counts)
    communicator.mean_(meter.loss_sum)
    metrics = None
    if getattr(session.validate, "sharded", False) or communicator.is_main:  # sharded: every rank
        metrics = session.validate(session.objective.backbone)
    rank_states = communicator.gather(
        resume_state.RankState.capture(session.sampler, session.selection_generator))
    reason = None
    if communicator.is_main:
        _record_check(session, state, stopper, meter, callbacks, interrupts, metrics, rank_states)
        reason = "patience" if stopper.should_stop else None
    session.model.train()
    meter.reset()
    return communicator.agree_on_stop(reason)


def _kept(stopper: EarlyStopping) -> str:
    """What a run stopped now keeps, for the log."""
    if stopper.best_valid is None:
        return "no checkpoint yet (it stopped before the first validation check)"
    return f"the best checkpoint (iteration {stopper.best_iter}) is kept and tested"


def _scheme(config: RunConfig) -> str:
    """The training scheme in words, for the log."""
    tc = config.train
    if tc.targets == "all":
        return f"a next-item target at every position ({tc.loss} softmax)"
    selection = "" if config.model.num_interests == 1 else f"{tc.selection} selection, "
    return f"{selection}{tc.loss} softmax{' + multi-interest loss' if tc.multi_loss else ''}"


def _step(session: Session) -> ObjectiveOutput:
    """One optimisation step on one sampled batch."""
    batch = session.sampler.sample()
    output = session.model(batch.history, batch.mask, batch.target, session.selection_generator)
    session.optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    session.optimizer.step()
    return output


def _record_check(session: Session, state: LoopState, stopper: EarlyStopping, meter: _Meter,
                  callbacks: Sequence[CheckCallback], interrupts: Interrupts, metrics: dict[str, Any],
                  rank_states: list[resume_state.RankState]) -> None:
    """One validation check on rank 0, given the validation ``metrics`` and every rank's random
    streams: keep the best weights, save the resume state, report."""
    config, objective, out = session.config, session.objective, session.out
    mean_loss = meter.mean_loss()
    shares = meter.selection_shares()
    with interrupts.critical():  # all of these or none: the early-stopping state must match the files
        improved = stopper.update(state.iteration, metrics)
        if improved:
            ckpt.save_weights(out, objective, _weights_metadata(config))
        # The metrics line before the resume state: a kill -9 between the two leaves a line past the
        # checkpoint, which --resume drops and writes again; the other order would lose the line.
        ckpt.append_jsonl(out / ckpt.METRICS_FILE, {
            "iter": state.iteration,
            "time_s": round(state.elapsed_s, 3),
            "loss": mean_loss,
            "valid": metrics,
            "selection_shares": shares,
        })
        resume_state.save(out, resume_state.ResumeState(
            iteration=state.iteration, elapsed_s=state.elapsed_s, early_stopping=stopper.state_dict(),
            objective=objective.state_dict(), optimizer=session.optimizer.state_dict(),
            ranks=rank_states,
        ))
    check = Check(iteration=state.iteration, elapsed_s=state.elapsed_s, loss=mean_loss, valid=metrics,
                  selection_shares=shares, metric=stopper.metric, improved=improved,
                  best_metric=stopper.best_metric, best_iter=stopper.best_iter)
    for callback in callbacks:
        callback.on_check(check)


def _weights_metadata(config: RunConfig) -> dict[str, str]:
    return {"format": ckpt.RUN_FORMAT, "model": config.model.model, "selection": config.train.selection}


def _finish(session: Session, dataset: SequenceDataset, split: LeaveOneOut, state: LoopState,
            stopper: EarlyStopping, stopped: str, interrupts: Interrupts) -> TrainResult:
    """Test the best checkpoint (every rank ranks its share of the test users) and, on rank 0, write
    ``summary.json`` and ``diagnostics.json``."""
    config, objective, out, device, communicator = (session.config, session.objective, session.out, session.device,
                                                    session.communicator)
    if not communicator.broadcast_flag(communicator.is_main and (out / ckpt.WEIGHTS_FILE).is_file()):
        if interrupts.signum is not None:
            raise TrainingInterrupted(
                f"training was {stopped} at iteration {state.iteration}, before the first validation check, "
                "so no checkpoint was kept", interrupts.signum)
        raise TrainingError(
            f"training stopped ({stopped}) at iteration {state.iteration} before the first validation check, "
            f"so no checkpoint was kept; lower --eval-every or check the data and learning rate"
        )
    if communicator.is_main:
        ckpt.load_weights(out, objective)
    communicator.broadcast_state(objective)  # rank 0 read the best weights; the run dir may be on its machine only
    test_result = communicator.sharded_evaluation(
        lambda view: evaluate_model_result(objective.backbone, dataset, view, config, protocol=config.eval.protocol,
                                           device=device),
        split.view("test"))
    test = test_result.metrics()
    if not communicator.is_main:
        return TrainResult(out, stopper.best_iter, state.iteration, stopped, state.elapsed_s,
                           stopper.best_valid or {}, test, main_process=False, interrupt_signal=interrupts.signum)
    summary = {
        "test": test,
        "best_iter": stopper.best_iter,
        "best_valid": stopper.best_valid,
        "iters": state.iteration,
        "train_time_s": round(state.elapsed_s, 3),
        "stopped": stopped,
    }
    ckpt.write_json(out / ckpt.SUMMARY_FILE, summary)
    _write_diagnostics(config, objective, dataset, split, out, device, test_result)
    session.log(f"done ({stopped}) after {state.iteration} iterations in {state.elapsed_s:.1f} s; best iteration "
                f"{stopper.best_iter}; test "
                + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float)))
    return TrainResult(out, stopper.best_iter, state.iteration, stopped, state.elapsed_s, stopper.best_valid or {},
                       test, interrupt_signal=interrupts.signum)


def _write_diagnostics(config: RunConfig, objective: Objective, dataset: SequenceDataset, split: LeaveOneOut,
                       out: Path, device: torch.device, test_result: Any) -> None:
    """Interest-balance diagnostics of the final model, written to ``diagnostics.json``."""
    from bamrec.evaluation.diagnostics_run import run_diagnostics

    records = ckpt.read_jsonl(out / ckpt.METRICS_FILE)
    diagnostics = run_diagnostics(objective.backbone, dataset, split, config, test_result, records,
                                  data_dir=Path(config.data), device=device)
    ckpt.write_json(out / ckpt.DIAGNOSTICS_FILE, diagnostics)
