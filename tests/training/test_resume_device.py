"""Resuming on another device: generator states are device-specific (a CUDA generator state is not a CPU one),
so a resume on another device type re-seeds the streams deterministically from the saved states.

Simulated on the CPU: the checkpoint is made to look as if it had been written on CUDA (device type and
16-byte Philox generator states, which is what a CUDA generator's ``get_state`` returns)."""

from __future__ import annotations

import shutil

import torch

import bamrec
from bamrec.rundir import layout as ckpt

from .test_trainer import config, data_dir  # noqa: F401  (fixture)


def cuda_like(run_dir):
    payload = torch.load(run_dir / ckpt.RESUME_FILE, weights_only=False)
    philox = torch.tensor(list(range(16)), dtype=torch.uint8)  # seed (8 bytes) + offset (8 bytes)
    for rank in payload["ranks"]:
        rank["device_type"] = "cuda"
        rank["selection_generator"] = philox.clone()
        rank["sampler"] = {"generator": (philox + 1).clone()}
        rank["cuda_rng"] = (philox + 2).clone()
    torch.save(payload, run_dir / ckpt.RESUME_FILE)


def test_resume_of_a_cuda_checkpoint_on_the_cpu_reseeds_deterministically(data_dir, tmp_path):  # noqa: F811
    first = tmp_path / "a"
    bamrec.train(config(data_dir, selection="bam-p", max_iters=20), first, verbose=False)
    cuda_like(first)
    second = tmp_path / "b"
    shutil.copytree(first, second)
    a = bamrec.train(config(data_dir, selection="bam-p", max_iters=60, device="cpu"), first, resume=True,
                     verbose=False)
    b = bamrec.train(config(data_dir, selection="bam-p", max_iters=60, device="cpu"), second, resume=True,
                     verbose=False)
    assert a.iters == 60 and [r["iter"] for r in ckpt.read_jsonl(first / ckpt.METRICS_FILE)] == [20, 40, 60]
    assert a.test == b.test  # bit-equal on purpose: the re-seeding is deterministic (same process and shapes)
    log = (first / ckpt.LOG_FILE).read_text()
    assert "written on cuda" in log and "re-seeded" in log
    resumed = torch.load(first / ckpt.RESUME_FILE, weights_only=False)
    assert resumed["ranks"][0]["device_type"] == "cpu"  # the next resume on the CPU continues exactly


def test_resume_on_the_same_device_restores_exactly(data_dir, tmp_path):  # noqa: F811
    bamrec.train(config(data_dir, max_iters=20), tmp_path / "run", verbose=False)
    bamrec.train(config(data_dir, max_iters=40), tmp_path / "run", resume=True, verbose=False)
    assert "re-seeded" not in (tmp_path / "run" / ckpt.LOG_FILE).read_text()
