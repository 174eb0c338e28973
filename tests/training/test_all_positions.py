"""SASRec trained as in its paper: a next-item loss at every position of the window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import bamrec
from bamrec.config import RunConfig, TrainConfig, ModelConfig, run_config_from_flat
from bamrec.data.sampling import WindowSampler
from bamrec.data.sequences import SequenceDataset
from bamrec.data.split import LeaveOneOut
from bamrec.errors import ConfigError
from bamrec.models import build_backbone, resolve_presets
from bamrec.training import objective as objective_module
from bamrec.training.objective import Objective, position_losses


def _split(sequences: list[list[int]]) -> LeaveOneOut:
    return LeaveOneOut(SequenceDataset.from_sequences(sequences))


def test_window_pairs_each_position_with_the_next_training_item():
    # One user, 7 interactions: the training prefix is items 1..5 (the last two are validation/test).
    split = _split([[11, 12, 13, 14, 15, 16, 17], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    sampler = WindowSampler(split, seq_len=4, batch_size=64, seed=0)
    batch = sampler.sample()
    assert batch.history.shape == batch.target.shape == batch.mask.shape == (64, 4)
    for b in range(64):
        user = int(batch.user[b])  # 1-based
        row = split.dataset.items[split.dataset.offsets[user - 1]:split.dataset.offsets[user]].tolist()
        train = row[:-2]
        window = train[-5:]  # seq_len + 1 most recent training items
        valid = len(window) - 1
        assert batch.mask[b].tolist() == [True] * valid + [False] * (4 - valid)
        assert batch.history[b, :valid].tolist() == window[:-1]
        assert batch.target[b, :valid].tolist() == window[1:]
        assert batch.history[b, valid:].eq(0).all() and batch.target[b, valid:].eq(0).all()
    assert set(batch.user.tolist()) == {1, 2}


def _sasrec_objective(loss: str, num_items: int = 30, seq_len: int = 6) -> Objective:
    config = resolve_presets(RunConfig(model=ModelConfig(model="sasrec", hidden_size=8, seq_len=seq_len),
                                       train=TrainConfig(loss=loss, num_negatives=12)))
    backbone = build_backbone(config.model, num_items, seed=3)
    return Objective(backbone, config.train, num_items, seed=3).eval()  # eval: no dropout


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_each_positions_loss_sees_only_earlier_items(loss):
    objective = _sasrec_objective(loss)
    history = torch.tensor([[3, 7, 9, 2, 5, 0]])  # [1, L], 5 valid positions
    mask = history > 0
    target = torch.tensor([[7, 9, 2, 5, 8, 0]])

    def loss_at(position: int, items: torch.Tensor) -> torch.Tensor:
        only = torch.zeros_like(target)
        only[0, position] = target[0, position]  # the loss of this one position
        generator = torch.Generator().manual_seed(1)  # the same sampled negatives each time
        return objective(items, mask, only, generator).loss

    for position in range(5):
        reference = loss_at(position, history)
        later = history.clone()
        later[0, position + 1:5] = torch.tensor([11, 12, 13, 14])[:4 - position]  # every later item differs
        torch.testing.assert_close(loss_at(position, later), reference)
        earlier = history.clone()
        earlier[0, position] = 20  # the item at the position itself is seen
        assert not torch.allclose(loss_at(position, earlier), reference)


def test_full_loss_is_the_mean_cross_entropy_over_valid_positions():
    objective = _sasrec_objective("full")
    history = torch.tensor([[3, 7, 9, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    mask = history > 0
    target = torch.tensor([[7, 9, 4, 0, 0, 0], [2, 3, 4, 5, 6, 10]])
    out = objective(history, mask, target)
    states = objective.backbone.sequence_states(history, mask)  # [B, L, D]
    scores = states @ objective.backbone.item_embeddings()[1:].T  # [B, L, N]
    expected = torch.nn.functional.cross_entropy(scores[target > 0], target[target > 0] - 1)
    torch.testing.assert_close(out.loss, expected)
    assert out.selected_index.tolist() == [0, 0] and out.probs.shape == (2, 1)


@pytest.mark.order_sensitive
def test_chunked_full_loss_equals_the_materialised_one(monkeypatch):
    objective = _sasrec_objective("full")
    queries = torch.randn(9, 8, requires_grad=True)
    targets = torch.randint(1, 31, (9,))
    table = objective.backbone.item_embeddings()
    plain = position_losses(queries, targets, table, objective.config, None)
    monkeypatch.setattr(objective_module, "POSITION_SOFTMAX_CHUNK_ELEMENTS", 9 * 7)  # chunks of 7 items
    chunked = position_losses(queries, targets, table, objective.config, None)
    torch.testing.assert_close(chunked, plain)
    (grad_plain,) = torch.autograd.grad(plain.sum(), queries)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), queries)
    torch.testing.assert_close(grad_chunked, grad_plain)


def test_sampled_loss_uses_one_set_of_shared_negatives():
    objective = _sasrec_objective("sampled")
    queries = torch.randn(5, 8)
    targets = torch.tensor([1, 2, 3, 4, 5])
    table = objective.backbone.item_embeddings().detach()
    got = position_losses(queries, targets, table, objective.config, torch.Generator().manual_seed(4))
    negatives = torch.randint(1, 31, (12,), generator=torch.Generator().manual_seed(4))
    logits = torch.cat([(queries * table[targets]).sum(-1, keepdim=True), queries @ table[negatives].T], 1)
    expected = logits.logsumexp(1) - logits[:, 0]
    torch.testing.assert_close(got, expected)


def test_presets_and_errors():
    sasrec = resolve_presets(run_config_from_flat({"model": "sasrec"}))
    assert sasrec.train.targets == "all"
    assert resolve_presets(run_config_from_flat({"model": "sasrec", "targets": "one"})).train.targets == "one"
    assert resolve_presets(run_config_from_flat({"model": "comirec-sa"})).train.targets == "one"
    # A multi-interest term has no per-position form: the preset falls back to one target...
    assert resolve_presets(run_config_from_flat({"model": "sasrec", "multi_loss": True})).train.targets == "one"
    # ... and asking for both is a mistake.
    with pytest.raises(ConfigError, match="multi_loss"):
        resolve_presets(run_config_from_flat({"model": "sasrec", "targets": "all", "multi_loss": True}))
    with pytest.raises(ConfigError, match="sequence model"):
        resolve_presets(run_config_from_flat({"model": "comirec-sa", "targets": "all"}))
    with pytest.raises(ConfigError, match="targets"):
        run_config_from_flat({"model": "sasrec", "targets": "every"})


def test_trainer_trains_sasrec_on_every_position(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 31, size=rng.integers(6, 20)).tolist() for _ in range(50)]
    sequences[0] = list(range(1, 31))
    SequenceDataset.from_sequences(sequences).save(tmp_path / "data")
    result = bamrec.train({"data": str(tmp_path / "data"), "model": "sasrec", "loss": "full", "seq_len": 8,
                           "hidden_size": 8, "batch_size": 16, "eval_every": 20, "max_iters": 40,
                           "progress": False}, tmp_path / "run", verbose=False)
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["config"]["train"]["targets"] == "all"
    assert "a next-item target at every position (full softmax)" in (result.run_dir / "train.log").read_text()
    losses = [line["loss"] for line in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
