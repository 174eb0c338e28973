#!/usr/bin/env python3
"""The fidelity tables of docs/fidelity.md, generated from the committed cell summaries.

    python experiments/fidelity/table.py            # print the tables
    python experiments/fidelity/table.py --write    # replace them in docs/fidelity.md (between markers)

Both grids run under ``bamrec experiment`` (experiments/fidelity/ml-100k.toml and ml-1m.toml). The
ml-100k tables come from its cell summaries (ml-100k/cells/*.json), grouped by the file's axes (model,
scheme, variant). The ML-1M comparison comes from the runner's aggregate (ml-1m/results.json): mean
[95% t-interval] over seeds, and the paired comparison of the original recipe against the defaults
(paired t-test over seeds; per-user bootstrap on one seed).

Per (model, scheme, variant): mean ± sample std over the seeds present (n), of test recall@20 and
nDCG@20 under the standard protocol and recall@20 under the reference protocol, and the mean best
iteration, and the largest share of training examples one interest received in the last 500
iterations (0.25 = balanced over K = 4). Then each variant minus bamrec's defaults, and the BaM effect, (BaM_p + multi-loss) - hard, both
paired by seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "fidelity.md"
VARIANT_ORDER = ("bamrec", "original", "+negatives", "+valid_protocol", "+routing_norm", "+routing_eval",
                 "+routing_norm=interests", "+rr_positions", "+ihn_detach")


def load(grid: str) -> list[dict]:
    """The finished cells of ``grid`` (the runner's ``cells/*.json``), flat: model, scheme, variant,
    seed, test metrics per protocol, best iteration and the last check's selection shares."""
    cells = []
    for path in sorted((HERE / grid / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        cells.append({**{axis: record["axes"][axis] for axis in ("model", "scheme", "variant")},
                      "seed": record["seed"], "best_iter": record["best_iter"],
                      "test_standard": record["test"]["standard"], "test_reference": record["test"]["reference"],
                      "selection_shares_last": record["selection_shares_last"]})
    return cells


def fmt(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def order(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def cell_table(cells: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["model"], c["scheme"], c["variant"])].append(c)
    lines = ["| model | scheme | variant | n | recall@20 | nDCG@20 | recall@20 (ref.) | best iter | max sel. share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], k[1], order(k[2]))):
        g = groups[key]
        lines.append("| " + " | ".join([
            *key, str(len(g)),
            fmt([c["test_standard"]["recall@20"] for c in g]), fmt([c["test_standard"]["ndcg@20"] for c in g]),
            fmt([c["test_reference"]["recall@20"] for c in g]),
            f"{statistics.mean(c['best_iter'] for c in g):.0f}",
            f"{statistics.mean(max(c['selection_shares_last']) for c in g):.3f}"]) + " |")
    return "\n".join(lines)


def bam_effect_table(cells: list[dict]) -> str:
    by = {(c["model"], c["scheme"], c["variant"], c["seed"]): c for c in cells}
    lines = ["| model | variant | seeds | Δ recall@20 (BaM_p+multi − hard) | Δ recall@20 (ref.) |", "|---|---|---|---|---|"]
    keys = sorted({(m, v) for m, _, v, _ in by}, key=lambda k: (k[0], order(k[1])))
    for model, variant in keys:
        seeds = sorted(s for (m, sc, v, s) in by if (m, sc, v) == (model, "hard", variant)
                       and (model, "bamp-multi", variant, s) in by)
        if not seeds:
            continue
        std = [by[(model, "bamp-multi", variant, s)]["test_standard"]["recall@20"]
               - by[(model, "hard", variant, s)]["test_standard"]["recall@20"] for s in seeds]
        ref = [by[(model, "bamp-multi", variant, s)]["test_reference"]["recall@20"]
               - by[(model, "hard", variant, s)]["test_reference"]["recall@20"] for s in seeds]
        lines.append(f"| {model} | {variant} | {len(seeds)} | {fmt(std)} | {fmt(ref)} |")
    return "\n".join(lines)


def variant_effect_table(cells: list[dict]) -> str:
    """Each variant minus bamrec's defaults, paired by seed, per model and scheme."""
    by = {(c["model"], c["scheme"], c["variant"], c["seed"]): c for c in cells}
    lines = ["| model | scheme | variant | seeds | Δ recall@20 (variant − bamrec) | Δ recall@20 (ref.) |",
             "|---|---|---|---|---|---|"]
    keys = sorted({(m, sc, v) for m, sc, v, _ in by if v != "bamrec"}, key=lambda k: (k[0], k[1], order(k[2])))
    for model, scheme, variant in keys:
        seeds = sorted(s for (m, sc, v, s) in by if (m, sc, v) == (model, scheme, variant)
                       and (model, scheme, "bamrec", s) in by)
        if not seeds:
            continue
        deltas = {p: [by[(model, scheme, variant, s)][f"test_{p}"]["recall@20"]
                      - by[(model, scheme, "bamrec", s)][f"test_{p}"]["recall@20"] for s in seeds]
                  for p in ("standard", "reference")}
        lines.append(f"| {model} | {scheme} | {variant} | {len(seeds)} | {fmt(deltas['standard'])} | "
                     f"{fmt(deltas['reference'])} |")
    return "\n".join(lines)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def ci(stat: dict) -> str:
    if stat.get("mean") is None:
        return "-"
    if stat.get("ci_low") is None or stat.get("n", 0) < 2:
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} [{stat['ci_low']:.4f}, {stat['ci_high']:.4f}]"


def runner_tables(results: dict, name: str) -> dict[str, str]:
    """Configurations and paired comparisons from a runner aggregate (``results.json``)."""
    rows = ["| configuration | seeds | recall@20 | nDCG@20 | recall@20 (ref.) | best iter |", "|---|---|---|---|---|---|"]
    for c in results["configurations"]:
        if not c["seeds"]:
            continue  # not run yet (the header counts the finished cells)
        m = c["metrics"]
        rows.append(f"| {c['label']} | {len(c['seeds'])} | {ci(m['standard']['recall@20'])} | "
                    f"{ci(m['standard']['ndcg@20'])} | {ci(m['reference']['recall@20'])} | {c['best_iter']['mean']:.0f} |")
    comp = ["| configuration | against | protocol | seeds | Δ recall@20 | relative | t-test p | bootstrap Δ [95%] (seed) |",
            "|---|---|---|---|---|---|---|---|"]
    for c in results["comparisons"]:
        if c["metric"] != "recall@20" or not c["over_seeds"].get("n"):
            continue  # another metric, or no paired seed yet
        o, b = c["over_seeds"], c.get("bootstrap") or {}
        boot = (f"{b['diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}] ({b['seed']})" if b else "-")
        p = "-" if o.get("t_pvalue") is None else f"{o['t_pvalue']:.2g}"
        comp.append(f"| {c['configuration']} | {c['baseline']} | {c['protocol']} | {o['n']} | {o['diff']:+.4f} | "
                    f"{pct(o.get('relative_gain'))} | {p} | {boot} |")
    done = f"{results['cells_done']} of {results['cells_total']} cells finished."
    return {f"{name}:configurations": done + "\n\n" + "\n".join(rows), f"{name}:comparisons": "\n".join(comp)}


def tables(grid: str) -> dict[str, str]:
    cells = load(grid)
    return {f"{grid}:cells": cell_table(cells), f"{grid}:variants": variant_effect_table(cells),
            f"{grid}:bam": bam_effect_table(cells)}


def write(doc: Path, blocks: dict[str, str]) -> None:
    text = doc.read_text()
    for name, body in blocks.items():
        start, end = f"<!-- table {name} -->", f"<!-- end {name} -->"
        if start not in text or end not in text:
            raise SystemExit(f"{doc} lacks the markers {start} ... {end}")
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{body}\n{end}{tail}"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grids", default="ml-100k")
    p.add_argument("--write", action="store_true", help=f"replace the tables in {DOC}")
    args = p.parse_args(argv)
    blocks: dict[str, str] = {}
    for grid in args.grids.split(","):
        if (HERE / grid / "cells").is_dir():
            blocks.update(tables(grid))
    runner = HERE / "ml-1m" / "results.json"
    if runner.is_file():
        blocks.update(runner_tables(json.loads(runner.read_text()), "ml-1m"))
    if args.write:
        write(DOC, blocks)
    else:
        for name, body in blocks.items():
            print(f"## {name}\n\n{body}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
