"""bamrec's ``original`` recipe computes what the original BaM code computes, step for step.

Each case builds the original's model (from ``BAM_ORIGINAL_SRC``) and bamrec's ``recipe=original``
objective with the same weights (through the checkpoint importer), then feeds both the same batch,
the same per-example negatives, the same selection draws and, for MIND, the same routing start; the
losses must agree to 1e-5 and every gradient too. The draws are fixed by substituting
``torch.randn`` / ``torch.multinomial`` (and the original's ``SSLoss.get_noise``) for the duration
of one step; the substitute records the selection probabilities, which must agree as well.

``test_each_switch_matters`` is the control: switching one option back to bamrec's default moves
the loss or the gradients, so agreement is not an accident of the batch. The last test trains the
original's MIND with its own ``main.py``, imports the checkpoint and reproduces the original's own
evaluation over a fixed routing start. Run with ``-s`` to see the differences per case.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bamrec.compat.reference import reference_state_to_backbone
from bamrec.config import run_config_from_flat
from bamrec.models import build_backbone, resolve_presets
from bamrec.training import losses
from bamrec.training.objective import Objective

N, D, K, L, B, S = 40, 8, 3, 6, 6, 16
T = 0.7  # selection temperature (the original multiplies the logits by it, as bamrec does)
LINEAR = 4  # d' of BaM_l
LENGTHS = (6, 1, 3, 6, 2, 4)  # short histories exercise every padding rule
SHORT = {"hard": "hard", "bam-p": "p", "bam-l": "l"}
GRAD_NAMES = {  # original parameter -> bamrec parameter
    "embeddings.weight": "backbone.embeddings.weight",
    "position_embedding": "backbone.position_embedding",
    "linear1.0.weight": "backbone.linear1.0.weight",
    "linear2.weight": "backbone.linear2.weight",
    "capsule_network.linear.weight": "backbone.linear.weight",
    "l1.weight": "selector.interest_proj.weight",
    "l1.bias": "selector.interest_proj.bias",
    "l2.weight": "selector.target_proj.weight",
    "l2.bias": "selector.target_proj.bias",
}


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(L).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)  # [B, L] left-aligned
    items = torch.randint(1, N + 1, (B, L), generator=g) * mask
    target = torch.randint(1, N + 1, (B,), generator=g)
    negatives = torch.rand(B, N + 1, generator=g).argsort(1)[:, :S].contiguous()  # without replacement, 0..N
    negatives[0, 0] = 0  # padding among the negatives, as the original allows
    row = negatives[1]
    if not bool((row == target[1]).any()):
        row[1] = target[1]  # and the positive
    return {"items": items, "mask": mask, "target": target, "negatives": negatives,
            "start": torch.randn(B, K, L, generator=g), "index": torch.randint(0, K, (B, 1), generator=g)}


@contextlib.contextmanager
def fixed_draws(batch: dict[str, torch.Tensor], record: list[torch.Tensor]):
    """Routing starts and selection draws from ``batch``; the selection probabilities go to ``record``."""
    real_randn, real_multinomial = torch.randn, torch.multinomial

    def randn(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        if shape == tuple(batch["start"].shape):
            return batch["start"].clone().to(kwargs.get("dtype") or torch.float32)
        return real_randn(*size, **kwargs)

    def multinomial(probs, num_samples, *args, **kwargs):
        if num_samples == 1 and tuple(probs.shape) == (B, K):
            record.append(probs.detach().clone())
            return batch["index"].clone()
        return real_multinomial(probs, num_samples, *args, **kwargs)

    torch.randn, torch.multinomial = randn, multinomial
    try:
        yield
    finally:
        torch.randn, torch.multinomial = real_randn, real_multinomial


def original_step(original, model: str, selection: str, multi: bool, batch: dict):
    """The original's loss and gradients for one batch (its main.py training step, without the optimiser)."""
    torch.manual_seed(0)
    if model == "mind":
        net = original.MIND(N, D, B, K, L, routing_times=3, relu_layer=False, selection=SHORT[selection], T=T,
                            linear_size=LINEAR)
    else:
        net = original.ComiRec(N, D, B, SHORT[selection], T, K, L, add_pos=True, linear_size=LINEAR)
    beta, lam = (0.01, 100 if selection == "hard" else 0) if model == "remi" else (0, 0)  # as its main.py
    net.set_device("cpu")
    net.set_sampler(S, beta=beta, device="cpu")
    net.sample_loss.get_noise = lambda batch_size: batch["negatives"].unsqueeze(1)  # [B, 1, S]
    net.train()
    record: list[torch.Tensor] = []
    with fixed_draws(batch, record):
        pos = batch["target"]
        interests, selected, attention = net(batch["items"], pos, batch["mask"].long())
        loss = net.calculate_sampled_loss(selected, pos, multi_interest=interests if multi else False)
        if lam > 0:
            loss = loss + lam * net.calculate_atten_loss(attention)
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    return net, float(loss), grads, record


def bamrec_step(state: dict, model: str, selection: str, multi: bool, batch: dict, monkeypatch, **overrides):
    """bamrec's ``recipe=original`` loss and gradients with the original's weights."""
    flat = {"recipe": "original", "model": model, "selection": selection, "multi_loss": multi, "temperature": T,
            "num_negatives": S, "hidden_size": D, "num_interests": K, "seq_len": L, "bam_l_dim": LINEAR,
            **overrides}
    config = resolve_presets(run_config_from_flat(flat))
    imported, selector_state = reference_state_to_backbone(
        state, backbone="mind" if model == "mind" else "comirec-sa", seq_len=L, num_interests=K)
    backbone = build_backbone(config.model, N)  # the recipe's model, with the imported weights
    backbone.load_state_dict(imported.state_dict())
    objective = Objective(backbone, config.train, N)
    if selector_state is not None:
        objective.selector.load_state_dict(selector_state)
    objective.train()
    monkeypatch.setattr(losses, "sample_negatives", lambda *args, **kwargs: batch["negatives"].clone())
    record: list[torch.Tensor] = []
    with fixed_draws(batch, record):
        out = objective(batch["items"], batch["mask"], batch["target"])
    out.loss.backward()
    grads = {name: p.grad for name, p in objective.named_parameters()}
    return float(out.loss), grads, record


def max_grad_diff(theirs: dict, ours: dict) -> float:
    worst = 0.0
    for name, grad in theirs.items():
        if name not in GRAD_NAMES:
            continue
        mine = ours[GRAD_NAMES[name]]
        if grad is None or mine is None:  # BaM_l's projections: no gradient in either (discrete draw)
            assert grad is None and (mine is None or not bool(mine.any())), name
            continue
        worst = max(worst, float((grad - mine).abs().max()))
    return worst


CASES = [(m, s, multi) for m in ("comirec-sa", "mind", "remi") for s in ("hard", "bam-p", "bam-l")
         for multi in (False, True)]


@pytest.mark.parametrize("model,selection,multi", CASES)
def test_original_recipe_loss_and_gradients_match(original, monkeypatch, model, selection, multi) -> None:
    batch = make_batch()
    net, their_loss, their_grads, their_probs = original_step(original, model, selection, multi, batch)
    our_loss, our_grads, our_probs = bamrec_step(net.state_dict(), model, selection, multi, batch, monkeypatch)
    loss_diff = abs(their_loss - our_loss)
    grad_diff = max_grad_diff(their_grads, our_grads)
    print(f"\nFIDELITY {model} {selection} multi={multi}: loss {their_loss:.6f} vs {our_loss:.6f}, "
          f"|dloss| {loss_diff:.2e}, max |dgrad| {grad_diff:.2e}")
    assert loss_diff < 1e-5
    assert grad_diff < 1e-5
    if selection != "hard":  # the same selection probabilities reached the draw
        assert len(their_probs) == len(our_probs) == 1
        torch.testing.assert_close(their_probs[0], our_probs[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model,selection,option,value,moves", [
    ("mind", "bam-p", "routing_norm", "valid", "loss"),
    ("remi", "hard", "rr_positions", "valid", "loss"),
    ("remi", "bam-p", "ihn_detach", True, "grads"),  # same value, different gradient
])
def test_each_switch_matters(original, monkeypatch, model, selection, option, value, moves) -> None:
    batch = make_batch()
    net, their_loss, their_grads, _ = original_step(original, model, selection, True, batch)
    our_loss, our_grads, _ = bamrec_step(net.state_dict(), model, selection, True, batch, monkeypatch,
                                         **{option: value})
    if moves == "loss":
        assert abs(their_loss - our_loss) > 1e-3
    else:
        assert abs(their_loss - our_loss) < 1e-5
        assert max_grad_diff(their_grads, our_grads) > 1e-5


def test_trained_mind_checkpoint_imports_and_evaluates_as_the_original(original, tmp_path) -> None:
    """The original's main.py trains MIND; bamrec imports its model.pt and evaluates it like the
    original's utils.evaluate does, both starting routing from the same fixed logits."""
    import bamrec
    from bamrec.compat.importer import import_reference
    from bamrec.data.prepare import export_uid_iid
    from bamrec.data.synthetic import SyntheticConfig, generate

    dataset, _ = generate(SyntheticConfig(users=150, items=300, topics=6, interests_per_user=3, min_len=8,
                                          max_len=40, seed=3))
    data_dir = dataset.save(tmp_path / "data")
    work = tmp_path / "original"
    # "electronics": the name main.py maps to seq_len 30. Its --max_iter counts thousands, so the test lets
    # it validate (and checkpoint) every 100 iterations and interrupts it after the second check with
    # Ctrl-C, which main.py answers by loading its best checkpoint and running its test evaluation.
    seq_len = 30
    export_uid_iid(dataset, work / "data" / "electronics")
    command = [sys.executable, str(original.src / "main.py"), "--dataset", "electronics", "--model", "mind",
               "--selection", "p", "--multi_loss", "1", "--device", "cpu", "--sampled_n", "200",
               "--test_iter", "100", "--path", "mind"]
    log = work / "runs" / "electronics" / "mind" / "log.txt"
    process = subprocess.Popen(command, cwd=work, env=dict(os.environ, OMP_NUM_THREADS="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if log.is_file() and "[iter: 200]" in log.read_text():
                break
            time.sleep(0.5)
        assert process.poll() is None, "the original's main.py ended early"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    checkpoint = work / "runs" / "electronics" / "mind" / "model.pt"
    assert checkpoint.is_file()
    assert "Exiting from training early" in stdout and re.search(r"recall:\s*\[", stdout)

    start = torch.randn(1, 4, seq_len, generator=torch.Generator().manual_seed(11))  # [1, K, L], K = 4 in main.py
    net = original.MIND(dataset.num_items, 64, 128, 4, seq_len, routing_times=3, relu_layer=False, selection="p")
    net.set_device("cpu")
    net.set_sampler(200, device="cpu")  # its checkpoint holds the loss's noise buffer
    net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    net.eval()
    loader = original.utils.get_DataLoader(_original_test_data(original, work), dataset.num_users, dataset.num_items,
                                           1, seq_len, train_flag=0)
    with fixed_draws({"start": start, "index": torch.zeros(1, 1, dtype=torch.long)}, []), torch.no_grad():
        theirs = original.utils.evaluate(net, loader, "cpu")

    run_dir = import_reference(checkpoint, data=data_dir, backbone="mind", seq_len=seq_len, num_negatives=200,
                              out=tmp_path / "run")
    run = bamrec.load_run(run_dir)
    assert run.config.model.routing_norm == "padded" and run.config.train.recipe == "original"
    run.model.eval_routing_logits.copy_(start[0])
    ours = run.evaluate(split="test", protocol="reference", cutoffs=(10, 20))
    # Their evaluation scores one user at a time with its own products, ours in batches: the same
    # lists but for targets tied with another item within rounding, each of which moves a mean by at
    # most 1 / users.
    from numerics import run_tied_targets

    bound = run_tied_targets(run, "test").sum() / ours["users"] + 1e-9
    for i, k in enumerate((10, 20)):
        print(f"\nFIDELITY trained MIND eval @{k}: recall {theirs['recall'][i]:.4f} vs {ours[f'recall@{k}']:.4f}, "
              f"nDCG {theirs['nDCG'][i]:.4f} vs {ours[f'ndcg@{k}']:.4f}")
        assert abs(theirs["recall"][i] - ours[f"recall@{k}"]) <= bound
        assert abs(theirs["nDCG"][i] - ours[f"ndcg@{k}"]) <= bound


def _original_test_data(original, work: Path) -> dict:
    """The original's test split of the exported file (its utils.data_partition, run in ``work``)."""
    here = os.getcwd()
    os.chdir(work)
    try:
        return original.utils.data_partition("electronics")[2]
    finally:
        os.chdir(here)
