"""The training loop: iteration-based, with validation, early stopping, checkpoints and logs.

Defaults follow the original BaM code (``bam-method.md`` section 6): batch 128, Adam 1e-3, validate every
1,000 iterations on a fixed validation set, keep the best model by validation recall@10, stop after
``patience`` (15) checks without improvement. The inner loop does no host-device synchronisation
except at logging points (every ``LOG_EVERY`` steps) and validation.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bamrec.config import RunConfig
from bamrec.data.sampling import TrainSampler
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import EvalView, LeaveOneOut
from bamrec.errors import BamrecError, RunDirError
from bamrec.evaluation.ranking import evaluate
from bamrec.models import build_backbone, resolve_presets
from bamrec.training import checkpoint as ckpt
from bamrec.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    broadcast_flag,
    init_distributed,
    shutdown,
)
from bamrec.training.objective import Objective

LOG_EVERY = 50  # steps between loss read-outs (the only host syncs of the inner loop)
SELECTION_METRIC = "recall@10"


class TrainingError(BamrecError):
    """Training could not produce a usable model (e.g. the loss became NaN before any checkpoint)."""


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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BamrecError(f"--device {name} requested but CUDA is not available here; use --device cpu")
    return device


def validation_view(split: LeaveOneOut, num_users: int, seed: int) -> EvalView:
    """The fixed validation set: all users, or a seeded subset of ``num_users`` of them."""
    view = split.view("valid")
    if num_users <= 0 or num_users >= len(view):
        return view
    rng = np.random.default_rng(seed)
    return view.subset(np.sort(rng.choice(len(view), size=num_users, replace=False)))


class _Log:
    """Writes to ``train.log`` and, above the progress bar, to stderr."""

    def __init__(self, file: Path | None, echo: bool) -> None:
        self.file = file
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        if self.file is not None:
            with self.file.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        if self.echo:
            tqdm.write(line, file=sys.stderr)


@dataclass(frozen=True)
class _Session:
    """What the loop and its validation checks work with (built once by ``_train``)."""

    config: RunConfig
    model: torch.nn.Module  # the objective, wrapped in DDP when distributed
    objective: Objective
    optimizer: torch.optim.Optimizer
    sampler: TrainSampler
    selection_generator: torch.Generator
    dataset: SequenceDataset
    valid_view: EvalView
    out: Path
    device: torch.device
    context: DistributedContext
    log: _Log


@dataclass
class _LoopState:
    iteration: int = 0
    best_metric: float = -math.inf
    best_iter: int = 0
    best_valid: dict[str, Any] | None = None
    bad_checks: int = 0
    elapsed_s: float = 0.0


def train(
    config: RunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
) -> TrainResult:
    """Train a model as ``config`` says and write a run directory at ``out``.

    With ``resume`` the run continues from ``out/last.ckpt`` (refused when the config or the dataset
    differ). Without ``overwrite`` an existing non-empty ``out`` is refused. Under ``torchrun`` the
    work is split over processes with DDP (see ``training.distributed``).
    """
    config = resolve_presets(config)
    if not config.data:
        raise BamrecError("no dataset given: pass --data DIR (a directory made by `bamrec data prepare`)")
    device = resolve_device(config.train.device)
    context = init_distributed(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    try:
        return _train(config, Path(out), device, context, overwrite, resume, progress, verbose)
    finally:
        shutdown(context)


def _train(
    config: RunConfig,
    out: Path,
    device: torch.device,
    context: DistributedContext,
    overwrite: bool,
    resume: bool,
    progress: bool | None,
    verbose: bool,
) -> TrainResult:
    tc = config.train
    dataset = SequenceDataset.load(config.data)
    split = LeaveOneOut(dataset)
    dataset_info = ckpt.dataset_record(dataset, config.data)
    main = context.is_main
    if main:
        out = ckpt.prepare_run_dir(out, overwrite=overwrite, resume=resume)
    log = _Log(out / ckpt.LOG_FILE if main else None, echo=verbose and main)
    if main and split.describe_short_users():
        log(f"note: {split.describe_short_users()}")

    torch.manual_seed(tc.seed)
    backbone = build_backbone(config.model, dataset.num_items, seed=tc.seed)
    objective = Objective(backbone, tc, dataset.num_items, seed=tc.seed).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sampler = TrainSampler(split, config.model.seq_len, tc.batch_size, seed=tc.seed + 7919 * context.rank,
                           device=device)
    selection_generator = torch.Generator(device=device)
    selection_generator.manual_seed(tc.seed + 1 + 7919 * context.rank)
    state = _LoopState()

    if resume and (out / ckpt.RESUME_FILE).is_file():
        state = _restore(out, config, dataset_info, objective, optimizer, sampler, selection_generator)
        log(f"resumed from iteration {state.iteration}")
    elif main:
        ckpt.write_config(out, config, dataset_info)
        ckpt.write_item_map(out, dataset)

    model = objective
    if context.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    valid_view = validation_view(split, tc.valid_users, tc.seed)
    if main:
        log(
            f"training {config.model.model} ({config.model.num_interests} interests, d={config.model.hidden_size}, "
            f"L={config.model.seq_len}) with {tc.selection} selection"
            f"{' + multi-interest loss' if tc.multi_loss else ''} on {dataset.num_users} users / "
            f"{dataset.num_items} items, device {device}"
            + (f", {context.world_size} processes" if context.enabled else "")
        )

    session = _Session(config, model, objective, optimizer, sampler, selection_generator, dataset, valid_view,
                       out, device, context, log)
    stopped = _loop(session, state, progress if progress is not None else tc.progress)
    if not main:
        return TrainResult(out, state.best_iter, state.iteration, stopped, state.elapsed_s, state.best_valid or {}, {},
                           main_process=False)
    return _finish(config, objective, dataset, split, out, device, state, stopped, log)


def _loop(session: _Session, state: _LoopState, progress: bool) -> str:
    config, model, objective, device, context = (session.config, session.model, session.objective,
                                                 session.device, session.context)
    tc = config.train
    num_interests = objective.backbone.num_interests
    loss_sum = torch.zeros((), device=device)
    loss_steps = 0
    selection_counts = torch.zeros(num_interests, dtype=torch.long, device=device)
    ones = torch.ones(tc.batch_size, dtype=torch.long, device=device)
    bar = tqdm(total=tc.max_iters, initial=state.iteration, disable=not (progress and context.is_main),
               desc="train", unit="it", dynamic_ncols=True, mininterval=0.5)
    started = time.perf_counter() - state.elapsed_s
    last_valid = ""
    stopped = "max_iters"
    model.train()
    previous_sigterm = _stop_on_sigterm()
    try:
        while state.iteration < tc.max_iters:
            state.iteration += 1
            batch = session.sampler.sample()
            output = model(batch.history, batch.mask, batch.target, session.selection_generator)
            session.optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            session.optimizer.step()
            loss_sum += output.loss.detach()
            loss_steps += 1
            # index_add_, not bincount: bincount's output size depends on the data, a host sync on GPU.
            selection_counts.index_add_(0, output.selected_index, ones)
            bar.update(1)
            if state.iteration % LOG_EVERY == 0 or state.iteration % tc.eval_every == 0:
                recent = output.loss.item()
                if not math.isfinite(recent):
                    stopped = "nan"
                    session.log(f"loss became {recent} at iteration {state.iteration}: stopping; the best checkpoint "
                        f"(iteration {state.best_iter}) is kept. Lower --lr or check the data.")
                    break
                bar.set_postfix_str(f"loss={recent:.4f}{last_valid}", refresh=False)
            if state.iteration % tc.eval_every == 0 or state.iteration == tc.max_iters:
                state.elapsed_s = time.perf_counter() - started
                all_reduce_sum(selection_counts, context)
                stop = False
                if context.is_main:
                    stop, last_valid = _validate(session, state, (loss_sum / max(loss_steps, 1)).item(),
                                                 selection_counts.cpu().numpy())
                model.train()
                loss_sum.zero_()
                loss_steps = 0
                selection_counts.zero_()
                if broadcast_flag(stop, context, device):
                    stopped = "patience"
                    break
    except KeyboardInterrupt:
        stopped = "interrupted"
        session.log(f"interrupted at iteration {state.iteration}; finishing with the best checkpoint")
    finally:
        bar.close()
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    state.elapsed_s = time.perf_counter() - started
    return stopped


def _stop_on_sigterm():
    """Make SIGTERM (schedulers, `kill`) stop training like Ctrl-C: the run is finished with its best
    checkpoint instead of being lost. Returns the previous handler, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _validate(session: _Session, state: _LoopState, mean_loss: float, selection_counts: np.ndarray) -> tuple[bool, str]:
    """One validation check: log it, keep the best weights, save the resume state; True = stop."""
    config, objective, out = session.config, session.objective, session.out
    metrics = evaluate_model(objective.backbone, session.dataset, session.valid_view, config, protocol="standard",
                             device=session.device)
    total = max(int(selection_counts.sum()), 1)
    record = {
        "iter": state.iteration,
        "time_s": round(state.elapsed_s, 3),
        "loss": mean_loss,
        "valid": metrics,
        "selection_shares": (selection_counts / total).round(6).tolist(),
    }
    ckpt.append_jsonl(out / ckpt.METRICS_FILE, record)
    score = metrics[SELECTION_METRIC]
    improved = score > state.best_metric
    if improved:
        state.best_metric, state.best_iter, state.best_valid, state.bad_checks = score, state.iteration, metrics, 0
        ckpt.save_weights(out, objective, _weights_metadata(config))
    else:
        state.bad_checks += 1
    _save_resume(out, objective, session.optimizer, session.sampler, session.selection_generator, state)
    session.log(
        f"iter {state.iteration}: loss {mean_loss:.4f}, valid recall@10 {metrics['recall@10']:.4f} "
        f"recall@20 {metrics.get('recall@20', float('nan')):.4f}"
        f"{' (best)' if improved else f' (best {state.best_metric:.4f} at {state.best_iter})'}"
    )
    summary = f", val@10={score:.4f}"
    return state.bad_checks >= config.train.patience, summary


def evaluate_model(
    backbone: torch.nn.Module,
    dataset: SequenceDataset,
    view: EvalView,
    config: RunConfig,
    *,
    protocol: str,
    device: torch.device,
    cutoffs: tuple[int, ...] | None = None,
    progress: bool = False,
):
    """Metrics of ``backbone`` on ``view`` (eval mode, no gradients); returns the metrics dict."""
    return evaluate_model_result(backbone, dataset, view, config, protocol=protocol, device=device,
                                 cutoffs=cutoffs, progress=progress).metrics()


def evaluate_model_result(backbone, dataset, view, config, *, protocol, device, cutoffs=None, progress=False):
    """Like ``evaluate_model`` but returns the full EvalResult (per-user ranks, retrieving interests)."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.inference_mode():
            item_embeddings = backbone.item_embeddings().detach()
        return evaluate(
            backbone, item_embeddings, dataset, view,
            seq_len=config.model.seq_len, protocol=protocol,
            cutoffs=cutoffs or config.eval.cutoffs,
            user_batch_size=config.eval.user_batch_size, item_chunk_size=config.eval.item_chunk_size,
            device=device, progress=progress,
        )
    finally:
        backbone.train(was_training)


def _weights_metadata(config: RunConfig) -> dict[str, str]:
    return {"format": ckpt.RUN_FORMAT, "model": config.model.model, "selection": config.train.selection}


def _save_resume(out, objective, optimizer, sampler, selection_generator, state: _LoopState) -> None:
    payload = {
        "iteration": state.iteration,
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": sampler.state_dict(),
        "selection_generator": selection_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best_metric": state.best_metric,
        "best_iter": state.best_iter,
        "best_valid": state.best_valid,
        "bad_checks": state.bad_checks,
        "elapsed_s": state.elapsed_s,
    }
    tmp = out / (ckpt.RESUME_FILE + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(out / ckpt.RESUME_FILE)


def _restore(out, config, dataset_info, objective, optimizer, sampler, selection_generator) -> _LoopState:
    saved_config, record = ckpt.read_config(out)
    if record["dataset"]["checksum"] != dataset_info["checksum"]:
        raise RunDirError(f"cannot resume {out}: it was trained on another dataset "
                          f"(checksum {record['dataset']['checksum'][:12]} vs {dataset_info['checksum'][:12]})")
    ignore = {"max_iters", "patience", "progress", "device"}  # may change on resume
    old = {k: v for k, v in ckpt.to_dict(saved_config.train).items() if k not in ignore}
    new = {k: v for k, v in ckpt.to_dict(config.train).items() if k not in ignore}
    if saved_config.model != config.model or old != new:
        raise RunDirError(f"cannot resume {out}: the model or training options differ from the saved run "
                          "(only max_iters, patience, progress and device may change)")
    payload = torch.load(out / ckpt.RESUME_FILE, map_location="cpu", weights_only=False)
    objective.load_state_dict(payload["objective"])
    optimizer.load_state_dict(payload["optimizer"])
    sampler.load_state_dict(payload["sampler"])
    selection_generator.set_state(payload["selection_generator"])
    torch.set_rng_state(payload["torch_rng"])
    return _LoopState(
        iteration=payload["iteration"], best_metric=payload["best_metric"], best_iter=payload["best_iter"],
        best_valid=payload["best_valid"], bad_checks=payload["bad_checks"], elapsed_s=payload["elapsed_s"],
    )


def _finish(config, objective, dataset, split, out, device, state: _LoopState, stopped: str, log) -> TrainResult:
    if not (out / ckpt.WEIGHTS_FILE).is_file():
        raise TrainingError(
            f"training stopped ({stopped}) at iteration {state.iteration} before the first validation check, "
            f"so no checkpoint was kept; lower --eval-every or check the data and learning rate"
        )
    ckpt.load_weights(out, objective)
    test_result = evaluate_model_result(objective.backbone, dataset, split.view("test"), config,
                                        protocol=config.eval.protocol, device=device)
    test = test_result.metrics()
    summary = {
        "test": test,
        "best_iter": state.best_iter,
        "best_valid": state.best_valid,
        "iters": state.iteration,
        "train_time_s": round(state.elapsed_s, 3),
        "stopped": stopped,
    }
    ckpt.write_json(out / ckpt.SUMMARY_FILE, summary)
    _write_diagnostics(config, objective, dataset, split, out, device, test_result)
    log(f"done ({stopped}) after {state.iteration} iterations in {state.elapsed_s:.1f} s; best iteration "
        f"{state.best_iter}; test " + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float)))
    return TrainResult(out, state.best_iter, state.iteration, stopped, state.elapsed_s, state.best_valid or {}, test)


def _write_diagnostics(config, objective, dataset, split, out, device, test_result) -> None:
    """Interest-balance diagnostics of the final model, written to ``diagnostics.json``."""
    from bamrec.evaluation.diagnostics_run import run_diagnostics

    records = ckpt.read_jsonl(out / ckpt.METRICS_FILE)
    diagnostics = run_diagnostics(objective.backbone, dataset, split, config, test_result, records,
                                  data_dir=Path(config.data), device=device)
    ckpt.write_json(out / ckpt.DIAGNOSTICS_FILE, diagnostics)
