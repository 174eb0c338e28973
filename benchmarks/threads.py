"""Training speed under thread settings, alone and beside busy processes (the basis of `--threads`' default).

    python benchmarks/threads.py --data prepared/ml-100k --repeats 2

For each repeat, neighbour (none, a ``while 1: pass`` spinner, a second training with the same
setting) and setting (torch defaults, ``OMP_WAIT_POLICY=PASSIVE``, 1 thread, ``OMP_NUM_THREADS=2``
spinning), a fresh process times ComiRec-SA training steps (L = 50, hard selection, batch 128,
1,280 shared negatives) for ``--seconds`` after 5 warm-up steps; settings are interleaved and the
1-minute load average is printed with each figure. The environment's own OpenMP variables are
removed first, so "defaults" means torch's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "torch defaults (spin-wait)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "OMP_NUM_THREADS=2 (spin-wait)": {"OMP_NUM_THREADS": "2"},
}
NEIGHBOURS = ("none", "spinner", "training")


def probe(data: str, seconds: float) -> None:
    """The measured process: print {"its": ...} after ``seconds`` of training steps."""
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from bamrec.config import run_config_from_flat
    from bamrec.data.sampling import TrainSampler
    from bamrec.data.sequences import SequenceDataset
    from bamrec.data.split import LeaveOneOut
    from bamrec.models import build_backbone, resolve_presets
    from bamrec.training.objective import Objective

    config = resolve_presets(run_config_from_flat({"data": data, "model": "comirec-sa", "seq_len": 50}))
    dataset = SequenceDataset.load(data)
    objective = Objective(build_backbone(config.model, dataset.num_items, seed=0), config.train, dataset.num_items)
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    sampler = TrainSampler(LeaveOneOut(dataset), 50, 128, seed=0, device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        batch = sampler.sample()
        out = objective(batch.history, batch.mask, batch.target, generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    print(json.dumps({"its": steps / (time.perf_counter() - start), "threads": torch.get_num_threads()}))


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared ml-100k")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.data, args.seconds)
        return
    me = [sys.executable, __file__, "--data", args.data, "--probe"]
    results = []
    for repeat in range(args.repeats):
        for neighbour in NEIGHBOURS:
            for name, extra in SETTINGS.items():
                other = None
                if neighbour == "spinner":
                    other = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
                elif neighbour == "training":
                    other = subprocess.Popen([*me, "--seconds", "100000"], env=_env(extra), stdout=subprocess.DEVNULL)
                    time.sleep(3)  # let it pass its start-up
                load = float(Path("/proc/loadavg").read_text().split()[0])
                try:
                    done = subprocess.run([*me, "--seconds", str(args.seconds)], env=_env(extra), check=True,
                                          capture_output=True, text=True)
                finally:
                    if other:
                        other.kill()
                        other.wait()
                its = json.loads(done.stdout.splitlines()[-1])["its"]
                results.append({"repeat": repeat, "neighbour": neighbour, "setting": name, "its": its, "load": load})
                print(f"{repeat + 1} {neighbour:9s} {name:30s} {its:7.2f} it/s  load {load:.1f}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
