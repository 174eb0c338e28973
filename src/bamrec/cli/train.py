"""`bamrec train`, `evaluate`, `recommend` and `import-reference`.

Every training option is a flag named after its config field (``seq_len`` -> ``--seq-len``), and can
also come from a TOML/YAML file given with ``--config``; flags override the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bamrec import locks
from bamrec.cli import POSITIVE_INT, parse_with
from bamrec.cli.threads import add_threads_flag
from bamrec.config import (
    CHOICES,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    accepted_form,
    check_value,
    load_config_file,
    run_config_from_flat,
)
from bamrec.devices import DEVICE_FORM, check_device_name
from bamrec.errors import ConfigError

_SKIP_FLAGS = {"cutoffs"}  # given as "10,20,50", handled by parse_cutoffs
MAX_K = 1000  # bamrec.retrieval.service.Limits.max_k, spelled out so that --help does not import torch
CUTOFFS_FORM = "comma-separated positive integers like 10,20,50"
# Defaults that depend on other options: what --help shows instead of the field's None.
_DEFAULT_HELP = {
    "remi_beta": "0.01 with --model remi, else 0 = off",
    "remi_lambda": "100 with --model remi and --selection hard, else 0 = off",
    "targets": "all with --model sasrec (a next-item target at every position), else one",
}


def parse_cutoffs(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--cutoffs must be {CUTOFFS_FORM}, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"--cutoffs must be {CUTOFFS_FORM}, got {text!r}")
    return values


CUTOFFS = parse_with(parse_cutoffs, CUTOFFS_FORM)
DEVICE = parse_with(check_device_name, DEVICE_FORM)


def _flag_type(name: str, kind: Any):
    """The argparse ``type`` of the flag for config field ``name``: parses and range-checks with the
    same rules as a config file (``config.check_value``)."""
    if name == "device":
        return DEVICE
    if kind is str:
        return str  # choices, where there are any, are checked by argparse
    base = int if kind is int else float
    return parse_with(lambda text: check_value(name, kind, base(text)), accepted_form(name, kind))


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for cls, title in ((ModelConfig, "model"), (TrainConfig, "training"), (EvalConfig, "evaluation")):
        group = parser.add_argument_group(f"{title} options")
        defaults = cls()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in _SKIP_FLAGS:
                continue
            flag = "--" + f.name.replace("_", "-")
            default = getattr(defaults, f.name)
            help_text = f"(default: {_DEFAULT_HELP.get(f.name, default)})"
            if isinstance(default, bool):
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
            else:
                group.add_argument(flag, dest=f.name, type=_flag_type(f.name, hints[f.name]), default=None,
                                   choices=CHOICES.get(f.name), help=help_text)
    parser.add_argument("--cutoffs", type=CUTOFFS, default=None, help="metric cutoffs (default: 10,20,50)")


def _train(args: argparse.Namespace) -> int:
    from bamrec.api import train

    flat: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if args.config:
        try:  # the file on its own first, so that its mistakes are reported as the file's
            run_config_from_flat(flat)
        except ConfigError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
    field_names = {f.name for cls in (ModelConfig, TrainConfig, EvalConfig) for f in dataclasses.fields(cls)}
    for name in field_names:
        value = getattr(args, name, None)
        if value is not None:
            flat[name] = value
    if args.data is not None:
        flat["data"] = args.data
    config = run_config_from_flat(flat)
    callbacks = []
    with ExitStack() as held:
        if args.tensorboard:
            from bamrec.reports.tensorboard import TensorBoardLogger, clear_events

            # Its own lock: a second training logging there would clear this one's curves and mix its own in.
            held.enter_context(locks.write_lock(args.tensorboard, "bamrec train", flag="--tensorboard"))
            if not args.resume:
                clear_events(args.tensorboard)
            callbacks.append(TensorBoardLogger(args.tensorboard))
        result = train(config, args.out, overwrite=args.overwrite, resume=args.resume, callbacks=callbacks)
    # Interrupted runs exit 128 + signal (130 Ctrl-C, 143 SIGTERM) even though the run is usable,
    # so that `bamrec train ... && next-step` does not go on as if training had completed.
    code = 128 + result.interrupt_signal if result.interrupt_signal is not None else 0
    if not result.main_process:
        return code
    if args.tensorboard:
        print(f"training curves for TensorBoard in {args.tensorboard} (tensorboard --logdir {args.tensorboard})")
    print(f"run written to {result.run_dir} (stopped: {result.stopped}, best iteration {result.best_iter})")
    _print_metrics(result.test, title="test")
    if code:
        print(f"bamrec: training was {result.stopped} at iteration {result.iters}; the run holds the best "
              f"checkpoint so far (iteration {result.best_iter}); continue it with --resume", file=sys.stderr)
    return code


def _print_metrics(metrics: dict[str, Any], title: str, retrieval: str | None = None) -> None:
    cutoffs = sorted({int(k.split("@")[1]) for k in metrics if "@" in k})
    names = [n for n in ("recall", "ndcg", "mrr") if any(f"{n}@{c}" in metrics for c in cutoffs)]
    # evaluate names its retrieval: on an export the default is the export's index, not the exact ranking
    searched = f", {_retrieval_words(retrieval)}" if retrieval else ""
    header = f"{title} ({metrics.get('users', '?')} users, {metrics.get('protocol', '?')} protocol{searched})"
    print(header)
    print("  " + "metric".ljust(8) + "".join(f"@{c}".rjust(10) for c in cutoffs))
    for name in names:
        print("  " + name.ljust(8) + "".join(f"{metrics[f'{name}@{c}']:.4f}".rjust(10) for c in cutoffs))


def warn_if_being_written(path: str | Path) -> None:
    """One line on stderr when a live process writes ``path`` (a reader still works: every file there is
    replaced atomically, so it reads the last complete version)."""
    from bamrec.locks import being_written_warning

    text = being_written_warning(path)
    if text is not None:
        print(f"bamrec: warning: {text}", file=sys.stderr, flush=True)


def load_for_reading(path: str, device: str) -> tuple[Any, Any]:
    """``load_run_or_export``, saying first when the run (or an export, or the run behind it) is being written."""
    from bamrec.api import load_run_or_export

    warn_if_being_written(path)
    run, index = load_run_or_export(path, device=device)
    if Path(run.path).resolve() != Path(path).resolve():  # an export: its run is read too
        warn_if_being_written(run.path)
    return run, index


def _evaluate(args: argparse.Namespace) -> int:
    run, index = load_for_reading(args.run, device=args.device)
    retrieval = args.retrieval or (index.params.kind if index is not None else "exact")
    metrics = run.evaluate(split=args.split, protocol=args.protocol, cutoffs=args.cutoffs, data=args.data,
                           progress=not args.json and sys.stderr.isatty(), retrieval=retrieval, index=index)
    if retrieval != "exact":
        metrics["retrieval"] = retrieval
    if args.json:
        print(json.dumps(metrics, sort_keys=True))
        return 0
    _print_metrics(metrics, title=args.split, retrieval=retrieval)
    from bamrec.evaluation.diagnostics_run import format_diagnostics

    text = format_diagnostics(run.path, split=args.split, protocol=args.protocol)
    if text:
        print(text)
    return 0


def _retrieval_words(retrieval: str) -> str:
    """How a table header names the search: ``exact ranking`` or ``hnsw index``."""
    return "exact ranking" if retrieval == "exact" else f"{retrieval} index"


def _recommend(args: argparse.Namespace) -> int:
    run, index = load_for_reading(args.run, device=args.device)
    retrieval = args.retrieval or (index.params.kind if index is not None else "exact")
    if args.all_users:
        from bamrec.retrieval.batch import write_all_users

        if not args.out:
            raise ConfigError("--all-users writes a Parquet file: give it with --out recs.parquet")
        report = write_all_users(run.candidates(retrieval, index, args.data, max_k=args.max_k), args.out, args.k,
                                 exclude_history=args.exclude_history, overwrite=args.overwrite)
        print(json.dumps(report) if args.json else
              f"top-{report['k']} of {report['users']} users ({retrieval}) written to {report['out']} "
              f"({report['lines']} lines, {report['seconds']} s)")
        return 0
    if args.out:
        raise ConfigError("--out is for --all-users; one user's list goes to stdout")
    from bamrec.retrieval.service import Query

    query = Query(user=args.user, items=args.items, k=args.k, exclude_history=args.exclude_history)
    recs = run.candidates(retrieval, index, args.data, max_k=args.max_k).recommend([query])[0]
    if args.json:
        print(json.dumps([r.as_dict() for r in recs]))
        return 0
    who = f"user {args.user}" if args.user is not None else f"a history of {len(args.items)} items"
    print(f"top-{len(recs)} for {who} ({_retrieval_words(retrieval)})")
    titled = any(r.metadata and "title" in r.metadata for r in recs)
    print(f"{'rank':>4}  {'item':>12}  {'score':>9}  interest" + ("  title" if titled else ""))
    for r in recs:
        title = f"{r.interest:>8}  {(r.metadata or {}).get('title') or ''}".rstrip() if titled else r.interest
        print(f"{r.rank:>4}  {str(r.item):>12}  {r.score:>9.4f}  {title}")
    return 0


def _import_reference(args: argparse.Namespace) -> int:
    from bamrec.compat.importer import import_reference

    path = import_reference(args.checkpoint, data=args.data, backbone=args.backbone, seq_len=args.seq_len,
                            selection=args.selection, out=args.out, overwrite=args.overwrite,
                            temperature=args.temperature, num_interests=args.num_interests,
                            routing_eval=args.routing_eval, seed=args.seed, num_negatives=args.num_negatives)
    print(f"imported {args.checkpoint} into {path}; evaluate it with: bamrec evaluate {path} --protocol reference")
    return 0


def _add_retrieval_flag(parser: argparse.ArgumentParser) -> None:
    # bamrec.retrieval.index.RETRIEVALS, spelled out so that building the parser does not import torch.
    parser.add_argument("--retrieval", choices=("exact", "flat", "hnsw", "ivf"), default=None,
                        help="exact top-k, or a faiss index (an export's, else built in memory); "
                             "default: the export's index, exact for a run")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a multi-interest model and write a run directory",
                              description="Train a model. Flags override --config; see docs/cli.md.")
    p.add_argument("--data", help="prepared dataset directory (bamrec data prepare)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--config", help="TOML or YAML file with options (flags override it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--tensorboard", metavar="DIR", help="also write the training curves to DIR for TensorBoard "
                   "(the tensorboard extra); metrics.jsonl stays the source of truth")
    _add_config_flags(p)
    add_threads_flag(p)
    p.set_defaults(handler=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a run on the test or validation split",
                              description="Recall, nDCG and MRR of a run or an export on the test or validation "
                                          "split; see docs/evaluation.md.")
    p.add_argument("run", help="run directory or export directory (bamrec export)")
    p.add_argument("--split", choices=("test", "valid"), default="test",
                   help="which held-out item each user is ranked on: the last (test) or the one before it "
                        "(valid) (default: test)")
    p.add_argument("--protocol", choices=CHOICES["protocol"], default="standard",
                   help="standard: the whole history removed from the ranking, padding never ranked; "
                        "reference: the original BaM evaluator's protocol (default: standard; docs/evaluation.md)")
    p.add_argument("--cutoffs", type=CUTOFFS, default=(10, 20, 50), help="metric cutoffs (default: 10,20,50)")
    p.add_argument("--data", help="dataset directory, when it moved since training")
    p.add_argument("--device", type=DEVICE, default="cpu", help=f"{DEVICE_FORM} (default: cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_retrieval_flag(p)
    add_threads_flag(p)
    p.set_defaults(handler=_evaluate)

    p = subparsers.add_parser("recommend", help="top-k items for a user, an ad-hoc history or all users")
    p.add_argument("run", help="run directory or export directory (bamrec export)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="original user id from the run's dataset")
    who.add_argument("--items", nargs="+", help="an ad-hoc history of original item ids, oldest first")
    who.add_argument("--all-users", action="store_true", help="every user's top-k to the Parquet file --out")
    p.add_argument("--out", help="with --all-users: the Parquet file to write")
    p.add_argument("--overwrite", action="store_true", help="with --all-users: replace --out")
    _add_retrieval_flag(p)
    p.add_argument("-k", type=POSITIVE_INT, default=20, help="number of items (default 20)")
    p.add_argument("--max-k", type=POSITIVE_INT, default=MAX_K,
                   help=f"largest -k accepted (default {MAX_K}; raise it for longer lists)")
    p.add_argument("--exclude-history", action="store_true", help="never recommend items of the history")
    p.add_argument("--data", help="dataset directory, when it moved since training")
    p.add_argument("--device", type=DEVICE, default="cpu", help=f"{DEVICE_FORM} (default: cpu)")
    p.add_argument("--json", action="store_true")
    add_threads_flag(p)
    p.set_defaults(handler=_recommend)

    p = subparsers.add_parser("import-reference",
                              help="turn a checkpoint of the original BaM code into a run directory")
    p.add_argument("checkpoint", help="the original's model.pt (a state_dict)")
    p.add_argument("--data", required=True, help="the prepared dataset it was trained on")
    p.add_argument("--backbone", choices=("comirec-sa", "mind"), default="comirec-sa")
    p.add_argument("--seq-len", type=POSITIVE_INT, default=200,
                   help="ComiRec-SA: must match the checkpoint; MIND: the history length it was trained with "
                        "(the original uses 100 on ML-1M)")
    p.add_argument("--num-interests", type=POSITIVE_INT, default=4, help="MIND only (its checkpoint does not record K)")
    p.add_argument("--routing-eval", choices=CHOICES["routing_eval"], default="fixed",
                   help="MIND only: fixed seeded routing start at evaluation, or the original's random draw")
    p.add_argument("--seed", type=int, default=2021, help="MIND only: seeds the fixed evaluation routing start")
    p.add_argument("--num-negatives", type=POSITIVE_INT, default=1280,
                   help="the original's --sampled_n (only matters if the run is trained further)")
    p.add_argument("--selection", choices=CHOICES["selection"], default=None,
                   help="default: bam-l when the checkpoint has BaM_l projections, else bam-p")
    p.add_argument("--temperature", type=_flag_type("temperature", float), default=1.0)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    add_threads_flag(p)
    p.set_defaults(handler=_import_reference)
