"""Aggregate finished cells: per configuration over seeds, and paired against the baselines.

Everything here is computed from the cell summaries (``cells/*.json``) and the per-user test ranks
beside them (``cells/*.ranks.npz``), so ``results.json``, ``results.md`` and the plots can be
regenerated from a clean clone with ``bamrec experiment FILE --report-only``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bamrec import files
from bamrec.config import run_config_from_flat, to_dict
from bamrec.errors import ConfigError
from bamrec.experiments.cell import PROTOCOLS, cell_file, ranks_file
from bamrec.experiments.spec import Cell, Experiment
from bamrec.experiments.stats import paired_bootstrap, paired_over_seeds, summarize

BOOTSTRAP_RESAMPLES = 2000
DIAGNOSTIC_KEYS = ("selection_normalized_entropy", "selection_dead_interests", "retrieval_normalized_entropy",
                   "interest_similarity_mean", "planted_minor_recall")


FAR_METRICS = ("recall@20",)  # the far-target recall the tables show (cells hold every cutoff)


def effective_options(options: dict[str, Any]) -> dict[str, Any]:
    """Every option's value as the run sees it (defaults filled in), flat, without the seed."""
    from bamrec.presets import resolve_presets  # the run sees its presets (remi_beta None -> 0.01 / 0)

    config = to_dict(resolve_presets(run_config_from_flat(options)))
    return {"data": config["data"], **_flat_sections(config)}


def _flat_sections(config: dict[str, Any]) -> dict[str, Any]:
    """The model, train and eval options of a config dict in one flat dict, without the options that
    do not define a configuration (seed, device, progress)."""
    flat: dict[str, Any] = {}
    for section in ("model", "train", "eval"):
        flat.update(config.get(section, {}))
    for key in ("seed", "device", "progress"):
        flat.pop(key, None)
    return flat


def _matches(options: dict[str, Any], spec: dict[str, Any], resolved: bool = False) -> bool:
    wanted = options if resolved else effective_options({k: v for k, v in options.items() if k != "seed"})
    try:  # the spec's values as this configuration's model resolves them (presets are per model)
        probe = effective_options({"model": wanted["model"], **spec})
    except ConfigError:
        return False  # the spec sets an option this model does not take (MIND routing on REMI)
    return all(wanted.get(k) == probe.get(k) for k in spec)


def find_baseline(config: dict[str, Any], others: Sequence[dict[str, Any]], spec: dict[str, Any],
                  resolved: bool = False) -> int | None:
    """Index in ``others`` of ``config``'s baseline under ``spec``: a configuration matching ``spec``
    on the same data that differs from ``config`` in the fewest options; None when ``config`` is
    itself a baseline or has none. A ``for`` table in ``spec`` limits it to the configurations
    matching that table (None for the others). ``resolved``: ``config`` and ``others`` are already
    complete effective options (``as_run_options``), used as they are."""
    spec = dict(spec)
    scope = spec.pop("for", None)
    if _matches(config, spec, resolved) or (scope is not None and not _matches(config, dict(scope), resolved)):
        return None
    mine = config if resolved else effective_options(config)
    best, best_diff = None, math.inf
    for i, other in enumerate(others):
        if not _matches(other, spec, resolved):
            continue
        theirs = other if resolved else effective_options(other)
        if theirs["data"] != mine["data"]:
            continue
        diff = sum(mine.get(k) != theirs.get(k) for k in set(mine) | set(theirs))
        if diff < best_diff:
            best, best_diff = i, diff
    return best


def load_cells(experiment: Experiment, cells_dir: Path) -> list[tuple[Cell, dict[str, Any]]]:
    """The finished cells of ``experiment`` in its order, with their summaries."""
    out = []
    for cell in experiment.cells:
        file = cell_file(cells_dir, cell.id)
        if file.is_file():
            record = json.loads(file.read_text(encoding="utf-8"))
            if record.get("options") == cell.options:
                out.append((cell, record))
    return out


def _per_user(cells_dir: Path, record: dict[str, Any], protocol: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    from bamrec.evaluation.metrics import metric_values

    file = cells_dir / record.get("ranks_file", ranks_file(cells_dir, record["cell"]).name)
    if not file.is_file():
        return None
    with np.load(file) as data:
        return data["users"], metric_values(data[protocol], metric)


def aggregate(experiment: Experiment, cells_dir: Path) -> dict[str, Any]:
    """The results document (what ``results.json`` holds)."""
    finished = load_cells(experiment, cells_dir)
    groups: dict[str, dict[str, Any]] = {}
    for cell in experiment.cells:  # file order, so tables follow the experiment file
        group = groups.setdefault(cell.config_key, {
            "key": cell.config_key, "label": cell.config_label, "dataset": cell.dataset, "method": cell.method,
            "options": {k: v for k, v in cell.options.items() if k != "seed"}, "planned_seeds": [], "cells": [],
        })
        group["planned_seeds"].append(cell.seed)
    for cell, record in finished:
        groups[cell.config_key]["cells"].append(record)
    configurations = []
    for group in groups.values():
        records = sorted(group.pop("cells"), key=lambda r: r["seed"])
        group["seeds"] = [r["seed"] for r in records]
        group["cell_ids"] = [r["cell"] for r in records]
        group["metrics"] = {p: {m: summarize([r["test"][p][m] for r in records]).as_dict()
                                for m in experiment.metrics} for p in PROTOCOLS}
        group["per_seed"] = {p: {m: [r["test"][p][m] for r in records] for m in experiment.metrics}
                             for p in PROTOCOLS}
        group["best_iter"] = summarize([r["best_iter"] for r in records]).as_dict()
        group["iters"] = summarize([r["iters"] for r in records]).as_dict()
        group["train_time_s"] = summarize([r["train_time_s"] for r in records]).as_dict()
        group["diagnostics"] = {k: summarize([r["diagnostics"][k] for r in records
                                              if isinstance(r["diagnostics"].get(k), (int, float))]).as_dict()
                                for k in DIAGNOSTIC_KEYS}
        group["stopped"] = sorted({str(r.get("stopped")) for r in records})
        group["far_targets"] = {p: {m: summarize([r["far_targets"]["recall"][p][m] for r in records
                                                  if "far_targets" in r]).as_dict()
                                    for m in FAR_METRICS} for p in PROTOCOLS}
        group["curves"] = [{"seed": r["seed"], **r["curve"]} for r in records if r.get("curve")]
        group["_records"] = records
        configurations.append(group)
    options = [as_run_options(g) for g in configurations]
    searches = step_searches(experiment, configurations, options)
    chosen = {s["chosen"] for s in searches}
    for g in configurations:
        g["chosen"] = g["key"] in chosen if searches else None  # None: the file declares no search
    comparisons = _comparisons(experiment, configurations, options, cells_dir)
    records = [r for _, r in finished]
    result = {
        "experiment": experiment.name,
        "file": str(experiment.path) if experiment.path else None,
        "description": experiment.description,
        "notes": list(experiment.notes),
        "cells_total": len(experiment.cells),
        "cells_done": len(finished),
        "metrics": list(experiment.metrics),
        "configurations": [{k: v for k, v in g.items() if k != "_records"} for g in configurations],
        "comparisons": comparisons,
        "tuning": {"options": list(experiment.tune), "seed": tune_seed(experiment),
                   "metric": experiment.tune_metric, "searches": searches} if experiment.tune else None,
        "commits": sorted({r.get("commit", "unknown") for r in records}),
        "machines": sorted({f"{r['machine'].get('hostname')} ({r['machine'].get('processor')}, "
                            f"{r['machine'].get('cpus')} cpus, {r['machine'].get('threads')} threads/cell, "
                            f"{r['machine'].get('device')})" for r in records}),
        "datasets": {r["dataset"]["name"]: r["dataset"]["checksum"] for r in records},
        "wall_time_s": round(sum(float(r.get("wall_time_s") or 0) for r in records), 1),
        "last_finished": max((r.get("finished", "") for r in records), default=None),
    }
    return result


def as_run_options(group: dict[str, Any]) -> dict[str, Any]:
    """A configuration's effective options as its cells ran them: the resolved config recorded in
    its first cell, flat and complete, so that baselines are matched on what ran, not on today's
    defaults (a default changed after the cells ran would otherwise re-label them). Today's
    resolution of the experiment file's options when no cell has finished."""
    # Options that did not exist yet when a cell ran take today's resolution (new options are added
    # with the behaviour that ran before as their default), so they do not count as differences.
    flat = effective_options({k: v for k, v in group["options"].items() if k != "seed"})
    records = group.get("_records") or []
    if records and "config" in records[0]:
        flat.update(_flat_sections(records[0]["config"]))
    return flat


def tune_seed(experiment: Experiment) -> int | None:
    """The seed whose validation numbers choose in the searches (the file's smallest by default)."""
    if experiment.tune_seed is not None:
        return experiment.tune_seed
    return min((c.seed for c in experiment.cells), default=None)


def step_searches(experiment: Experiment, configurations: list[dict[str, Any]],
                  options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The searches that ``[compare] tune`` declares, one per group of configurations that differ only
    in the tuned options (a configuration alone in its group is a search of one). Each member has its
    best validation ``tune_metric`` on the choosing seed (None while that cell has not finished);
    ``chosen`` is the member with the highest (the first in file order on a tie; None while no member
    has finished), ``complete`` says whether every member has. Test numbers never choose."""
    if not experiment.tune:
        return []
    seed, metric = tune_seed(experiment), experiment.tune_metric
    groups: dict[str, list[int]] = {}
    for i, flat in enumerate(options):
        rest = {k: v for k, v in flat.items() if k not in experiment.tune}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(i)
    searches = []
    for members in groups.values():
        tried = []
        for i in members:
            record = next((r for r in configurations[i]["_records"] if r["seed"] == seed), None)
            value = (record.get("best_valid") or {}).get(metric) if record else None
            tried.append({"key": configurations[i]["key"], "method": configurations[i]["method"],
                          "values": {t: options[i].get(t) for t in experiment.tune}, "valid": value})
        scored = [t for t in tried if t["valid"] is not None]
        searches.append({
            "dataset": configurations[members[0]]["dataset"], "tried": tried,
            "chosen": max(scored, key=lambda t: t["valid"])["key"] if scored else None,
            "complete": len(scored) == len(tried),
        })
    return searches


def _comparisons(experiment: Experiment, configurations: list[dict[str, Any]], options: list[dict[str, Any]],
                 cells_dir: Path) -> list[dict[str, Any]]:
    """Every configuration paired with its baseline. Under a search, the baseline is the baseline
    search's chosen configuration, so that no baseline loses for want of its best setting."""
    out = []
    eligible = [i for i, g in enumerate(configurations) if g.get("chosen") is not False]
    for spec in experiment.baselines:
        for g, mine_options in zip(configurations, options):
            b = find_baseline(mine_options, [options[i] for i in eligible], spec, resolved=True)
            if b is None:
                continue
            base = configurations[eligible[b]]
            mine = {r["seed"]: r for r in g["_records"]}
            theirs = {r["seed"]: r for r in base["_records"]}
            seeds = sorted(set(mine) & set(theirs))
            for protocol in PROTOCOLS:
                for metric in experiment.metrics:
                    entry = {
                        "configuration": g["label"], "key": g["key"], "baseline": base["label"],
                        "baseline_key": base["key"], "protocol": protocol,
                        "metric": metric, "seeds": seeds,
                        "over_seeds": paired_over_seeds([theirs[s]["test"][protocol][metric] for s in seeds],
                                                        [mine[s]["test"][protocol][metric] for s in seeds]).as_dict(),
                        "bootstrap": None,
                    }
                    if seeds:
                        entry["bootstrap"] = _bootstrap(cells_dir, theirs[seeds[0]], mine[seeds[0]], protocol, metric,
                                                        seeds[0])
                    out.append(entry)
    return out


def _bootstrap(cells_dir: Path, base: dict[str, Any], mine: dict[str, Any], protocol: str, metric: str,
               seed: int) -> dict[str, Any] | None:
    a = _per_user(cells_dir, base, protocol, metric)
    b = _per_user(cells_dir, mine, protocol, metric)
    if a is None or b is None or not np.array_equal(a[0], b[0]):
        return None  # ranks missing, or not the same test users: no per-user pairing
    return paired_bootstrap(a[1], b[1], resamples=BOOTSTRAP_RESAMPLES, seed=seed).as_dict() | {"seed": seed}


# ---------------------------------------------------------------------------------------------
# Markdown and plots


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean_ci(summary: dict[str, Any]) -> str:
    if summary["n"] == 0:
        return "–"
    if summary["n"] == 1:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def _p(value: Any, resamples: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if resamples and value == 0:
        return f"< {1 / resamples:.0e}"  # no resample crossed zero
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def render_markdown(result: dict[str, Any], plots: Sequence[Path] = (), plot_base: Path | None = None,
                    heading: str = "#") -> str:
    """``results.md`` of one experiment (``plot_base``: the directory the links are relative to)."""
    lines = [f"{heading} Experiment `{result['experiment']}`", ""]
    if result.get("description"):
        lines += [result["description"], ""]
    for note in result.get("notes") or ():
        lines += [f"- {note}"]
    if result.get("notes"):
        lines.append("")
    lines += [
        f"Generated by `bamrec experiment` from the cell summaries of `{result['file']}`: "
        f"**{result['cells_done']} of {result['cells_total']} cells done**; "
        f"total cell wall time {result['wall_time_s'] / 60:.1f} min; last cell finished {result['last_finished'] or '–'}.",
        "",
        f"- commit(s): {', '.join(f'`{c}`' for c in result['commits']) or '–'}",
        f"- machine(s): {'; '.join(result['machines']) or '–'}",
        f"- datasets (checksum): {', '.join(f'{k} `{v[:12]}`' for k, v in result['datasets'].items()) or '–'}",
        "",
        "Values are test metrics, mean ± sample std over seeds [95% t-interval]; `standard` removes the "
        "whole history from the ranking, `reference` is the original BaM evaluator's protocol "
        "(docs/evaluation.md). *sel. entropy*: entropy of the training-time interest-selection shares / log K "
        "(1 = every interest trained equally); *interest sim.*: mean cosine similarity between a user's "
        "interest vectors on the test users (docs/diagnostics.md); *far recall@20*: recall@20 (standard) on "
        "the third of test users whose item is farthest from their history by training co-occurrence "
        "(evaluation/far_targets.py); *stopped*: why training ended (`patience` = early stopping, "
        "`max_iters` = the cap bound).",
        "",
    ]
    metrics = result["metrics"]
    header = ["dataset", "method", "seeds"] + [f"{m} ({p})" for p in PROTOCOLS for m in metrics] + [
        "best iter", "train s", "stopped", "sel. entropy", "interest sim.", "far recall@20"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for g in result["configurations"]:
        seeds = f"{len(g['seeds'])}/{len(g['planned_seeds'])}"
        row = [g["dataset"], g["method"], seeds]
        row += [_mean_ci(g["metrics"][p][m]) for p in PROTOCOLS for m in metrics]
        far = (g.get("far_targets") or {}).get("standard", {}).get("recall@20")
        row += [_fmt(g["best_iter"]["mean"], 0), _fmt(g["train_time_s"]["mean"], 0),
                ", ".join(g.get("stopped") or []) or "–",
                _fmt(g["diagnostics"]["selection_normalized_entropy"]["mean"], 3),
                _fmt(g["diagnostics"]["interest_similarity_mean"]["mean"], 3),
                _mean_ci(far) if far and far.get("n") else "–"]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += _searches_table(result, heading)
    if result["comparisons"]:
        lines += _headline(result, heading)
        lines += [
            f"{heading}# Against the baseline",
            "",
            "Paired by seed: relative gain of the means, paired t-test p and Wilcoxon signed-rank p (with 3 "
            "seeds the Wilcoxon p cannot go below 0.25). Per-user paired bootstrap (2,000 resamples of the "
            "test users) on the first common seed: mean difference [95% interval] and p.",
            "",
            "| dataset | method | baseline | metric | seeds | gain | t-test p | Wilcoxon p | bootstrap diff [95%] | bootstrap p |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        labels = {g["key"]: g for g in result["configurations"]}
        for c in result["comparisons"]:
            if not c["seeds"]:
                continue  # nothing finished on both sides yet (results.json keeps the empty entry)
            s, b = c["over_seeds"], c["bootstrap"]
            boot = f"{b['diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]" if b else "–"
            gain = f"{100 * s['relative_gain']:+.1f}%" if not math.isnan(s["relative_gain"]) else "–"
            mine, base = labels[c["key"]], labels[c["baseline_key"]]
            lines.append(f"| {mine['dataset']} | {mine['method']} | {base['method']} | {c['metric']} ({c['protocol']}) "
                         f"| {s['n']} | {gain} | {_p(s['t_pvalue'])} | {_p(s['wilcoxon_pvalue'])} | {boot} "
                         f"| {_p(b['pvalue'], b['resamples']) if b else '–'} |")
        lines.append("")
    if plots:
        lines += [f"{heading}# Plots", ""]
        for plot in plots:
            rel = Path(os.path.relpath(plot, plot_base)) if plot_base else plot  # may start with ../
            lines += [f"![{plot.stem}]({rel.as_posix()})", ""]
    return "\n".join(lines)


def _searches_table(result: dict[str, Any], heading: str) -> list[str]:
    """The searches of ``[compare] tune``: what each tried on the choosing seed, and what it chose."""
    tuning = result.get("tuning")
    searches = [s for s in (tuning or {}).get("searches", []) if len(s["tried"]) > 1]
    if not searches:
        return []
    lines = [f"{heading}# Search over {', '.join(tuning['options'])}", "",
             f"Each method's configurations that differ only in {', '.join(tuning['options'])}, compared on "
             f"the best validation {tuning['metric']} of seed {tuning['seed']}'s cells; the highest is the "
             "method's configuration in the headline and the baseline's in every comparison (test numbers "
             "never choose). *incomplete*: a tried configuration's cell has not finished, the choice may change.",
             "", f"| dataset | tried: valid {tuning['metric']} (seed {tuning['seed']}) | chosen |", "|---|---|---|"]
    for s in searches:
        tried = "; ".join(f"{t['method']} {_fmt(t['valid'])}" for t in s["tried"])
        chosen = next((t["method"] for t in s["tried"] if t["key"] == s["chosen"]), "–")
        lines.append(f"| {s['dataset']} | {tried} | {chosen}{'' if s['complete'] else ' (incomplete)'} |")
    return lines + [""]


def _headline(result: dict[str, Any], heading: str) -> list[str]:
    """One row per compared configuration (under a search: per chosen configuration): the first
    metric, standard protocol, both sides with CIs, and the interests' mean cosine."""
    metric = result["metrics"][0]
    labels = {g["key"]: g for g in result["configurations"]}
    rows = [c for c in result["comparisons"] if c["metric"] == metric and c["protocol"] == "standard"
            and c["seeds"] and labels[c["key"]].get("chosen") is not False]
    if not rows:
        return []
    datasets = list(dict.fromkeys(g["dataset"] for g in result["configurations"]))
    rows.sort(key=lambda c: datasets.index(labels[c["key"]]["dataset"]))  # stable: file order per dataset
    title = f"{heading}# Headline: test {metric} (standard protocol) against the baseline"
    if result.get("tuning"):
        title += f", each method at its chosen {', '.join(result['tuning']['options'])}"
    lines = [title, "",
             f"| dataset | method | baseline | seeds | baseline {metric} | {metric} | interest sim. | gain | t-test p "
             "| bootstrap diff [95%] (seed) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in rows:
        mine, base = labels[c["key"]], labels[c["baseline_key"]]
        s, b = c["over_seeds"], c["bootstrap"]
        gain = f"{100 * s['relative_gain']:+.1f}%" if not math.isnan(s["relative_gain"]) else "–"
        boot = f"{b['diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}] ({b['seed']})" if b else "–"
        lines.append(f"| {mine['dataset']} | {mine['method']} | {base['method']} | {s['n']} "
                     f"| {_mean_ci(base['metrics']['standard'][metric])} | {_mean_ci(mine['metrics']['standard'][metric])} "
                     f"| {_fmt(mine['diagnostics']['interest_similarity_mean']['mean'], 2)} "
                     f"| {gain} | {_p(s['t_pvalue'])} | {boot} |")
    return lines + [""]


def plot_results(result: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
    """One figure per metric and protocol: a panel per dataset (own y scale), a bar per method with its
    95% CI over seeds as the error bar (none for a single seed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from bamrec.reports.plots import _save

    configurations = [g for g in result["configurations"] if g["seeds"]]
    if not configurations:
        return []
    datasets = list(dict.fromkeys(g["dataset"] for g in configurations))
    methods = list(dict.fromkeys(g["method"] for g in configurations))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    cols = min(3, len(datasets))
    rows = -(-len(datasets) // cols)
    written = []
    for protocol in PROTOCOLS:
        for metric in result["metrics"]:
            fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.6), layout="constrained")
            axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
            for ax, dataset in zip(axes, datasets):
                here = [g for g in configurations if g["dataset"] == dataset]
                stats = [g["metrics"][protocol][metric] for g in here]
                means = [st["mean"] for st in stats]
                errors = [(st["ci_high"] - st["mean"]) if st["n"] > 1 else 0.0 for st in stats]
                x = np.arange(len(here))
                bars = ax.bar(x, means, yerr=errors if any(errors) else None, capsize=3,
                              color=[colours[g["method"]] for g in here])
                ax.bar_label(bars, labels=[f"{m:.3f}\n(n={st['n']})" for m, st in zip(means, stats)],
                             fontsize="x-small")
                ax.set_xticks(x, [g["method"] for g in here], rotation=30, ha="right", fontsize="x-small")
                ax.set_title(dataset, fontsize="small")
                ax.set_ylim(0, 1.25 * max(m + e for m, e in zip(means, errors)) or 1)
                ax.grid(axis="y", alpha=0.3)
            for ax in axes[len(datasets):]:
                ax.set_axis_off()
            fig.suptitle(f"{result['experiment']}: test {metric}, {protocol} protocol\n(error bars: 95% CI over seeds)",
                         fontsize="medium")
            name = f"{prefix}{metric.replace('@', '')}-{protocol}.png"
            written.append(_save(fig, out_dir / name))
    curves = plot_curves(configurations, datasets, colours, out_dir / f"{prefix}valid-curves.png",
                         result["experiment"])
    return written + ([curves] if curves else [])


CURVE_METRIC = "recall@20"  # the validation metric plotted against training time


def plot_curves(configurations: list[dict[str, Any]], datasets: list[str], colours: dict[str, str], path: Path,
                title: str) -> Path | None:
    """Validation ``CURVE_METRIC`` against training wall time, a panel per dataset, a line per cell
    (the method's colour; one label per method). None when no cell recorded a curve with times (cells
    converted from an older layout kept neither)."""
    from matplotlib.figure import Figure

    from bamrec.reports.plots import _save

    with_curves = [g for g in configurations if any(_curve_points(c) for c in g.get("curves") or ())]
    if not with_curves:
        return None
    shown = [d for d in datasets if any(g["dataset"] == d for g in with_curves)]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, dataset in zip(axes, shown):
        for g in (g for g in with_curves if g["dataset"] == dataset):
            for i, curve in enumerate(g["curves"]):
                points = _curve_points(curve)
                if points:
                    minutes, values = zip(*points)
                    ax.plot(minutes, values, color=colours[g["method"]], lw=1, alpha=0.8,
                            label=g["method"] if i == 0 else None)
        ax.set_title(dataset, fontsize="small")
        ax.set_xlabel("training time (min, validation checks included)", fontsize="x-small")
        ax.set_ylabel(f"valid {CURVE_METRIC}", fontsize="x-small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="xx-small")
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    # Two lines: on one panel (4.6 in wide) the one-line title ran off both edges.
    fig.suptitle(f"{title}\nvalidation {CURVE_METRIC} against training time, one line per cell", fontsize="medium")
    return _save(fig, path)


def _curve_points(curve: dict[str, Any]) -> list[tuple[float, float]]:
    """(minutes, validation ``CURVE_METRIC``) at the checks that recorded both."""
    return [(t / 60, v) for t, v in zip(curve.get("time_s") or [], curve.get(CURVE_METRIC) or [])
            if t is not None and v is not None]


def write_results(experiment: Experiment, out: Path) -> dict[str, Any]:
    """Write ``results.json``, ``results.md`` and ``plots/`` under ``out``; returns the results."""
    result = aggregate(experiment, out / "cells")
    from bamrec.rundir.layout import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", _json_safe(result))
    plots = plot_results(result, out / "plots")
    files.write_text(out / "results.md", render_markdown(result, plots, plot_base=out) + "\n")
    return result


def _json_safe(value: Any) -> Any:
    """NaN (a statistic of too few seeds) as null: strict JSON for other tools."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
