"""A full disk, for real: `train`, `data prepare`, `export` and `experiment` writing to a small tmpfs.

Each test runs ``tests/cli/disk_full_probe.py`` in a mount namespace of its own (``unshare -m`` as
root, ``unshare -rm`` otherwise, where user namespaces are allowed) with a tmpfs mounted there, so
nothing is mounted on the machine itself. It is skipped, saying why, where neither works. What a user
must see: one line naming the file and "no space left on device", exit 74, no ``.tmp`` file left,
and the last good checkpoint intact (``evaluate`` and ``--resume`` work on it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("disk_full_probe.py")
SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
        "--num-negatives", "10", "--eval-every", "20", "--no-progress"]
FULL = re.compile(r"^bamrec: error: cannot write (\S+): no space left on device; free some space")


@functools.lru_cache(maxsize=1)
def _unshare() -> list[str] | None:
    """The unshare command that gives a private mount namespace here, or None."""
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]) if os.geteuid() == 0 else (["unshare", "-rm"],):
        try:
            probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def _run_probe(tmp_path: Path, size: str, steps: list[dict]) -> list[dict]:
    prefix = _unshare()
    if prefix is None:
        pytest.skip("needs a private mount namespace for a small tmpfs (root, or unprivileged user namespaces)")
    mount = tmp_path / "disk"
    mount.mkdir()
    spec = {"mount": str(mount), "result": str(tmp_path / "result.json"), "steps": steps}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*prefix, "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$1" && exec "$2" "$3" "$4"',
                           "sh", str(mount), sys.executable, str(PROBE), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "result.json").read_text())


def _one_full_disk_line(result: dict) -> str:
    """The file the command's one error line names; it exited 74 without a traceback."""
    assert result["rc"] == 74, result["err"]
    lines = result["err"].strip().splitlines()
    assert "Traceback" not in result["err"], result["err"]
    match = FULL.match(lines[-1])
    assert match, lines[-1]
    return match.group(1)


def test_train_on_a_full_disk_keeps_its_last_checkpoint(data_dir, tmp_path):
    mount = tmp_path / "disk"
    run = str(mount / "run")
    train, evaluate, listing, _, resume, after = _run_probe(tmp_path, "4m", [
        {"start": ["train", "--data", str(data_dir), "--out", run, "--max-iters", "1000000", *TINY],
         "wait_for": "run/last.ckpt"},
        {"run": ["evaluate", run]},
        {"list": "run"},
        {"free": True},
        {"run": ["train", "--data", str(data_dir), "--out", run, "--resume", "--max-iters", "200", *TINY]},
        {"list": "run"},
    ])
    assert train["filled"] > 0
    assert _one_full_disk_line(train).startswith(run)
    assert not [name for name in listing["files"] if name.endswith(".tmp")], listing
    assert {"model.safetensors", "last.ckpt", "config.json"} <= set(listing["files"])
    assert evaluate["rc"] == 0 and "recall" in evaluate["out"], evaluate["err"]  # the kept weights load
    assert resume["rc"] == 0, resume["err"]  # ... and so does the resume state
    assert "summary.json" in after["files"]


def _csv(path: Path, rows: int) -> Path:
    lines = ["user,item,ts"] + [f"u{i % 997},i{(i * 7919) % 5003},{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_prepare_on_a_full_disk(tmp_path):
    log = _csv(tmp_path / "log.csv", 200_000)  # items.npy alone is 800 kB: more than the 512 kB disk
    out = str(tmp_path / "disk" / "prepared")
    prepare, listing = _run_probe(tmp_path, "512k", [
        {"run": ["data", "prepare", str(log), "--user-col", "user", "--item-col", "item", "--time-col", "ts",
                 "--out", out]},
        {"list": "prepared"},
    ])
    assert _one_full_disk_line(prepare).startswith(out)
    assert not [name for name in listing["files"] if name.endswith(".tmp")], listing
    assert "manifest.json" not in listing["files"]  # a half dataset is never taken for a dataset


def test_export_on_a_full_disk_leaves_no_half_export(tiny_run, tmp_path):
    out = str(tmp_path / "disk" / "export")
    _, export, listing = _run_probe(tmp_path, "1m", [
        {"fill": True},
        {"run": ["export", str(tiny_run), "--out", out, "--index", "flat"]},
        {"list": "export"},
    ])
    assert _one_full_disk_line(export).startswith(out)
    assert listing["files"] in (None, []), listing  # neither the files written so far nor temporary ones


def test_experiment_on_a_full_disk_stops_in_one_line(data_dir, tmp_path):
    spec = tmp_path / "tiny.toml"
    fixed = "\n".join(f"{TINY[i][2:].replace('-', '_')} = {TINY[i + 1]}" for i in range(0, len(TINY) - 1, 2))
    spec.write_text(f'name = "tiny"\n[grid]\ndata = ["{data_dir}"]\nseed = [1]\n[fixed]\n{fixed}\nmax_iters = 1000000\n')
    out = tmp_path / "disk" / "exp"
    experiment, listing, _, again = _run_probe(tmp_path, "4m", [
        {"start": ["experiment", str(spec), "--out", str(out), "--threads", "1"], "wait_for": "exp/runs/*/last.ckpt"},
        {"list": "exp"},
        {"free": True},
        {"run": ["experiment", str(spec), "--out", str(out), "--threads", "1", "--report-only"]},
    ])
    assert experiment["rc"] == 74, experiment["err"]
    last = experiment["err"].strip().splitlines()[-1]
    assert re.match(r"bamrec: error: cell \S+ could not write its files: no space left on device", last), last
    assert "Traceback" not in experiment["err"]
    assert not [name for name in listing["files"] if name.endswith(".tmp")], listing
    assert any(name.endswith("/last.ckpt") for name in listing["files"]), listing  # the cell's last checkpoint
    assert again["rc"] == 0, again["err"]
