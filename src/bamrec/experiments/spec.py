"""Experiment files: a named grid of `bamrec train` options, expanded into cells.

An experiment file is TOML::

    name = "tiny"
    [grid]                       # every list is an axis; the cells are the product of the axes
    data = ["prepared/planted"]
    model = ["comirec-sa"]
    selection = ["hard", "bam-p"]
    seed = [1, 2]
    [fixed]                      # options every cell shares
    max_iters = 300
    seq_len = 30
    [compare]
    baseline = { selection = "hard" }

A baseline may be limited to some configurations with ``for``: ``{ selection = "bam-p", for = {
recipe = "recommended" } }`` compares only the configurations matching ``for`` against it.

A search over some options (a step-size search) is declared in ``[compare]`` too::

    tune = ["lr"]             # configurations that differ only in these options form one search
    tune_seed = 1             # the seed whose cells choose (default: the smallest seed of the file)
    tune_metric = "recall@10" # on the best validation check of each cell (default: recall@10)

The report then takes each search's configuration with the best validation value as the method
(its test numbers never choose), and compares every configuration with its baseline's chosen one.

Any `bamrec train` option (``bamrec.config.flat_fields()`` plus ``data``) can be an axis or fixed.
An axis value may also be an inline table that sets several options at once, e.g.
``scheme = [{selection = "hard"}, {label = "bam-p+multi", selection = "bam-p", multi_loss = true}]``
(``label`` names the value in tables; the axis name is then free). ``[[grid]]`` (an array of tables)
gives several sub-grids whose cells are joined; a scalar inside a sub-grid is fixed for that
sub-grid only. Cells run seed by seed (every configuration's first seed before any second seed),
then in file order, so the most informative cells finish first.

A cell's id is readable (its axis values) plus a hash of all its options, so editing a fixed option
makes new cells instead of silently reusing stale ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Mapping

from bamrec.config import flat_fields, run_config_from_flat
from bamrec.errors import ConfigError

# Options that say how a cell runs, not what it computes: never part of a cell's identity.
RUN_CONTROL = frozenset({"device", "progress"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    id: str  # readable axis values + hash of the options, a file name
    options: dict[str, Any]  # flat `bamrec train` options (data, model, seed, ...)
    axes: dict[str, str]  # axis name -> value label (seed included), for tables
    config_key: str  # hash of the options without the seed: cells of one configuration share it

    @property
    def seed(self) -> int:
        return int(self.options.get("seed", 2021))

    @property
    def dataset(self) -> str:
        return Path(str(self.options.get("data", ""))).name

    @property
    def method(self) -> str:
        """The configuration's label without dataset and seed (e.g. ``mind / bam-p+multi``)."""
        parts = [v for k, v in self.axes.items() if k not in ("data", "seed")]
        return " / ".join(parts) or self.options.get("model", "default")

    @property
    def config_label(self) -> str:
        return f"{self.dataset} / {self.method}"


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    name: str
    path: Path | None
    cells: tuple[Cell, ...]
    baselines: tuple[dict[str, Any], ...] = ()  # option subsets naming the baseline configurations
    metrics: tuple[str, ...] = ("recall@20", "ndcg@20")  # reported in tables and plots
    description: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    tune: tuple[str, ...] = ()  # options searched over: configurations differing only in them compete
    tune_seed: int | None = None  # the seed whose validation chooses (None: the file's smallest seed)
    tune_metric: str = "recall@10"  # validation metric of the choice, at each cell's best check


def load_experiment(path: str | Path) -> Experiment:
    """Read and expand an experiment file; every cell's options are validated like `bamrec train`'s."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse experiment file {path}: {exc}") from None
    return parse_experiment(data, path)


def parse_experiment(data: Mapping[str, Any], path: Path | None = None) -> Experiment:
    where = str(path or "experiment")
    known = {"name", "description", "notes", "grid", "fixed", "compare"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: `name` must be a short name of letters, digits, '.', '_' or '-', got {name!r}")
    fixed = dict(data.get("fixed", {}))
    _check_options(fixed, f"{where} [fixed]")
    grids = data.get("grid", {})
    grids = grids if isinstance(grids, list) else [grids]
    if not grids or not all(isinstance(g, Mapping) for g in grids):
        raise ConfigError(f"{where}: [grid] must be a table of axes, or [[grid]] tables")
    cells: list[tuple[int, int, Cell]] = []
    for g, grid in enumerate(grids):
        for position, cell in enumerate(_expand(grid, fixed, f"{where} grid {g + 1}" if len(grids) > 1 else where)):
            cells.append((len(cells), position, cell))
    by_id: dict[str, Cell] = {}
    for _, _, cell in cells:
        if cell.id in by_id:
            continue  # sub-grids may overlap; a cell runs once
        by_id[cell.id] = cell
    seeds = sorted({c.seed for c in by_id.values()})
    ordered = sorted(by_id.values(), key=lambda c: seeds.index(c.seed))  # stable: file order within a seed
    compare = dict(data.get("compare", {}))
    compare_keys = {"baseline", "metrics", "tune", "tune_seed", "tune_metric"}
    unknown = sorted(set(compare) - compare_keys)
    if unknown:
        raise ConfigError(f"{where} [compare]: unknown key(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(compare_keys))}")
    baseline = compare.get("baseline", [])
    baselines = tuple(dict(b) for b in (baseline if isinstance(baseline, list) else [baseline]))
    for b in baselines:
        scope = b.get("for", {})
        if not isinstance(scope, Mapping):
            raise ConfigError(f"{where} [compare] baseline: `for` must be a table of options, got {scope!r}")
        _check_options({k: v for k, v in b.items() if k != "for"}, f"{where} [compare] baseline")
        _check_options(dict(scope), f"{where} [compare] baseline `for`")
    metrics = tuple(compare.get("metrics", ("recall@20", "ndcg@20")))
    from bamrec.evaluation.metrics import parse_metric

    for m in metrics:
        parse_metric(m)
    tune, tune_seed, tune_metric = _parse_tune(compare, where)
    notes = data.get("notes", [])
    notes = [str(n) for n in notes] if isinstance(notes, list) else [str(notes)]
    return Experiment(name=name, path=path, cells=tuple(ordered), baselines=baselines, metrics=metrics,
                      description=str(data.get("description", "")), notes=tuple(notes), tune=tune,
                      tune_seed=tune_seed, tune_metric=tune_metric)


def _parse_tune(compare: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], int | None, str]:
    """``[compare]``'s search: the tuned options, the choosing seed and the validation metric."""
    from bamrec.evaluation.metrics import parse_metric

    tune = compare.get("tune", [])
    if not isinstance(tune, list) or not all(isinstance(t, str) for t in tune):
        raise ConfigError(f"{where} [compare] tune: a list of option names, e.g. [\"lr\"], got {tune!r}")
    _check_options({t: None for t in tune}, f"{where} [compare] tune")
    seed = compare.get("tune_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{where} [compare] tune_seed: an integer seed, got {seed!r}")
    metric = compare.get("tune_metric", "recall@10")
    if not isinstance(metric, str):
        raise ConfigError(f"{where} [compare] tune_metric: a metric such as \"recall@10\", got {metric!r}")
    parse_metric(metric)
    return tuple(tune), seed, metric


def _check_options(options: Mapping[str, Any], where: str) -> None:
    valid = set(flat_fields()) | {"data"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(unknown)}; any `bamrec train` option works "
                          f"(data, {', '.join(flat_fields())})")


def _expand(grid: Mapping[str, Any], fixed: Mapping[str, Any], where: str) -> list[Cell]:
    """The cells of one grid, in product order (first axis outermost)."""
    axes: list[tuple[str, list[Any]]] = []
    local = dict(fixed)
    for axis, values in grid.items():
        if not isinstance(values, list):
            _check_options({axis: values}, where)
            local[axis] = values  # a scalar in a grid is fixed for this grid
            continue
        if not values:
            raise ConfigError(f"{where}: axis {axis!r} has no values")
        for value in values:
            if isinstance(value, Mapping):
                _check_options({k: v for k, v in value.items() if k != "label"}, f"{where} axis {axis!r}")
            else:
                _check_options({axis: value}, where)
        axes.append((axis, values))
    cells = []
    for combo in product(*(values for _, values in axes)):
        options = dict(local)
        labels: dict[str, str] = {}
        for (axis, _), value in zip(axes, combo):
            if isinstance(value, Mapping):
                settings = {k: v for k, v in value.items() if k != "label"}
                options.update(settings)
                labels[axis] = str(value.get("label") or ",".join(f"{k}={_text(v)}" for k, v in settings.items()))
            else:
                options[axis] = value
                labels[axis] = Path(str(value)).name if axis == "data" else _text(value)
        if "seed" not in labels:
            labels["seed"] = _text(options.get("seed", 2021))
        try:
            run_config_from_flat({k: v for k, v in options.items()})
        except ConfigError as exc:
            raise ConfigError(f"{where}: cell {labels}: {exc}") from None
        cells.append(make_cell(options, labels))
    return cells


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _hash(options: Mapping[str, Any]) -> str:
    identity = {k: v for k, v in options.items() if k not in RUN_CONTROL}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def make_cell(options: Mapping[str, Any], axes: Mapping[str, str]) -> Cell:
    """A cell from its flat options and axis labels (the id is derived, never given)."""
    options = dict(options)
    seed_label = axes.get("seed", _text(options.get("seed", 2021)))
    readable = [v for k, v in axes.items() if k != "seed"] + [f"s{seed_label}"]
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "-", "_".join(readable)).strip("-")[:90]
    without_seed = {k: v for k, v in options.items() if k != "seed"}
    return Cell(id=f"{slug}-{_hash(options)}", options=options, axes=dict(axes), config_key=_hash(without_seed))
