"""Run directories: everything needed to use a trained model without the trainer's state.

Layout (docs/architecture.md, "Contracts")::

    .bamrec-run        marker: this directory was written by bamrec (format, creation time)
    config.json        resolved RunConfig, seed, versions, runtime (threads), dataset path/checksum/stats
    model.safetensors  weights of the backbone (``backbone.*``) and the selector (``selector.*``)
    item_map.json      original item id -> embedding row (row 0 is padding)
    metrics.jsonl      one line per validation check
    summary.json       test metrics after training
    diagnostics.json   interest-balance diagnostics
    train.log          the training log
    last.ckpt          optimiser/sampler state for ``--resume`` (not needed to use the model)

The marker is what makes a directory a bamrec run (runs written before it existed are recognised by a
``config.json`` of the run format): ``--overwrite`` refuses any other non-empty directory and removes
only the files listed in :data:`RUN_FILES` (other files, a user's notes, are kept); ``--resume`` needs
a bamrec run with a ``last.ckpt``. The process writing a run holds its ``.lock`` (``bamrec.locks``):
the caller of :func:`prepare_run_dir` takes it first, so a second writer is refused before
``--overwrite`` removes anything.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from bamrec import files, locks
from bamrec.config import RunConfig, run_config_from_dict, to_dict
from bamrec.data.sequences import SequenceDataset
from bamrec.errors import RunDirError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ITEM_MAP_FILE = "item_map.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
DIAGNOSTICS_FILE = "diagnostics.json"
RESUME_FILE = "last.ckpt"
LOG_FILE = "train.log"
MARKER_FILE = ".bamrec-run"
RUN_FORMAT = "bamrec-run/1"
# Every file bamrec writes into a run directory (what --overwrite removes, with their ".tmp" siblings).
RUN_FILES = (MARKER_FILE, CONFIG_FILE, WEIGHTS_FILE, ITEM_MAP_FILE, METRICS_FILE, SUMMARY_FILE, DIAGNOSTICS_FILE,
             RESUME_FILE, LOG_FILE)


def versions() -> dict[str, str]:
    """Versions of everything that can change the numbers."""
    from bamrec import __version__

    return {
        "bamrec": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def is_bamrec_run(path: Path) -> bool:
    """True when ``path`` carries the marker, or (runs older than the marker) a config.json of the run format."""
    if (path / MARKER_FILE).is_file():
        return True
    try:
        return json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")).get("format") == RUN_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def runtime() -> dict[str, Any]:
    """How this process runs torch (threads, OpenMP wait policy): speed only, never the numbers' meaning."""
    return {
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def prepare_run_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Check ``path`` for the run asked and create it; returns it.

    A new run needs a missing or empty directory, or ``overwrite`` of a bamrec run (only bamrec's own
    files are removed); ``resume`` needs a bamrec run with a resume state (``last.ckpt``).
    """
    path = Path(path)
    check_run_dir(path, overwrite=overwrite, resume=resume)
    if resume:
        _check_resumable_dir(path)
        # A NAME.tmp is what a killed writer left (kill -9 runs no clean-up); the caller holds the lock,
        # so no live writer owns it. Never read, but removed so it cannot be mistaken for anything.
        files.remove_stale_temporaries(path, RUN_FILES)
        return path
    if path.exists() and locks.contents(path):
        if not overwrite:
            raise RunDirError(f"run directory {path} already exists; pass --overwrite to replace it or --resume "
                              "to continue it")
        if not is_bamrec_run(path):
            raise RunDirError(f"refusing to --overwrite {path}: it is not a bamrec run directory (no {MARKER_FILE} "
                              "marker); choose another --out or empty it yourself")
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
            (path / (name + ".tmp")).unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / MARKER_FILE, {"format": RUN_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return path


def check_run_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> None:
    """The mistakes in asking for run directory ``path`` that need no look inside it (made before
    its lock is taken, which creates a missing directory)."""
    path = Path(path)
    if overwrite and resume:
        raise RunDirError("--resume and --overwrite exclude each other: --resume continues the run in "
                          f"{path}, --overwrite starts it again")
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory")
    if resume and not path.is_dir():
        raise RunDirError(f"cannot resume {path}: the directory does not exist (drop --resume to start a new run)")


def _check_resumable_dir(path: Path) -> None:
    if not path.is_dir():
        raise RunDirError(f"cannot resume {path}: the directory does not exist (drop --resume to start a new run)")
    if not is_bamrec_run(path):
        raise RunDirError(f"cannot resume {path}: it is not a bamrec run directory (no {MARKER_FILE} marker)")
    if not (path / RESUME_FILE).is_file():
        raise RunDirError(f"cannot resume {path}: it has no resumable state ({RESUME_FILE}; the run stopped before "
                          "its first validation check, or was imported); start it again with --overwrite")


def dataset_record(dataset: SequenceDataset, data_path: str | Path) -> dict[str, Any]:
    """What a run remembers about its dataset, to refuse mismatched data later."""
    return {
        "path": str(Path(data_path).resolve()),
        "checksum": dataset.manifest.get("checksum") or dataset.checksum(),
        "num_items": dataset.num_items,
        "num_users": dataset.num_users,
        "stats": dataset.stats(),
    }


def write_config(path: Path, config: RunConfig, dataset: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    record = {
        "format": RUN_FORMAT,
        "config": to_dict(config),
        "seed": config.train.seed,
        "versions": versions(),
        "runtime": runtime(),
        "dataset": dataset,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
    }
    record.update(extra or {})
    write_json(path / CONFIG_FILE, record)


def read_config(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The RunConfig and the full record of a run directory."""
    file = Path(path) / CONFIG_FILE
    if not Path(path).exists():  # most often a typo in the path: say so rather than "not a run"
        raise RunDirError(f"run directory {path} does not exist")
    if not file.is_file():
        raise RunDirError(f"{path} is not a bamrec run directory (no {CONFIG_FILE})")
    record = read_json(file)
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        record = record if isinstance(record, dict) else {}
        raise RunDirError(f"{file} has format {record.get('format')!r}, expected {RUN_FORMAT!r}")
    return run_config_from_dict(record["config"]), record


def write_json(file: Path, value: Any) -> None:
    files.write_text(file, json.dumps(value, indent=2, sort_keys=True) + "\n")  # atomic: old or new, never half


def read_json(file: Path) -> Any:
    """A JSON file of a run directory; a damaged one is a RunDirError naming it."""
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{file} is damaged (not valid JSON: {_first_line(exc)}); "
                          "train the run again or restore the file") from None


def append_jsonl(file: Path, value: Any) -> None:
    files.append_line(file, json.dumps(value, sort_keys=True))  # a whole record or none


def drop_checks_after(path: Path, iteration: int) -> int:
    """Remove the lines of ``metrics.jsonl`` past ``iteration`` (a resume goes back to it); how many."""
    file = Path(path) / METRICS_FILE
    if not file.is_file():
        return 0
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.strip() or json.loads(line).get("iter", 0) <= iteration]
    if len(kept) < len(lines):
        files.write_text(file, "".join(kept))
    return len(lines) - len(kept)


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def save_weights(path: Path, module: torch.nn.Module, metadata: dict[str, str]) -> None:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    files.write_bytes(path / WEIGHTS_FILE, safetensors_bytes(state, metadata=metadata))


def load_weights(path: Path, module: torch.nn.Module) -> None:
    """Load ``model.safetensors`` into ``module``, refusing any key or shape mismatch with the reason."""
    file = Path(path) / WEIGHTS_FILE
    if not file.is_file():
        raise RunDirError(f"{path} has no {WEIGHTS_FILE}: the run was never checkpointed")
    try:
        state = load_file(str(file))
    except Exception as exc:  # safetensors raises its own error types (truncated header, bad JSON, ...)
        raise RunDirError(f"{file} is damaged or not a safetensors file ({_first_line(exc)}); "
                          "train the run again or restore the file") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise RunDirError(
            f"{file} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "was it written for another model configuration?"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise RunDirError(
                f"{file}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[name].shape)} "
                "(another dataset or model size?)"
            )
    module.load_state_dict(state)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_item_map(path: Path, dataset: SequenceDataset) -> None:
    ids = dataset.item_ids.tolist()
    write_json(path / ITEM_MAP_FILE, {
        "num_items": len(ids),
        "id_type": "int" if np.issubdtype(dataset.item_ids.dtype, np.integer) else "str",
        "rows": {str(item): row for row, item in enumerate(ids, start=1)},
    })


def read_item_map(path: Path) -> tuple[list[Any], dict[str, int]]:
    """``(ids, rows)``: ``ids[row]`` is the original id of embedding row ``row`` (``ids[0]`` is None)."""
    file = Path(path) / ITEM_MAP_FILE
    if not file.is_file():
        raise RunDirError(f"{path} has no {ITEM_MAP_FILE}")
    record = read_json(file)
    if not isinstance(record, dict) or not isinstance(record.get("rows"), dict) or "num_items" not in record:
        raise RunDirError(f"{file} is damaged (no item rows); train the run again or restore the file")
    rows: dict[str, int] = record["rows"]
    ids: list[Any] = [None] * (record["num_items"] + 1)
    cast = int if record.get("id_type") == "int" else str
    for key, row in rows.items():
        ids[row] = cast(key)
    return ids, rows
