"""SASRec: causality, the last valid position as the user vector, padding, determinism, training."""

from __future__ import annotations

import pytest
import torch

from bamrec.config import run_config_from_flat
from bamrec.errors import ConfigError
from bamrec.models import SASRec, build_backbone

N, D, L = 30, 8, 6


def model(seed: int = 0, dropout: float = 0.0) -> SASRec:
    return SASRec(N, D, L, num_blocks=2, num_heads=2, dropout=dropout, seed=seed).eval()


def left_aligned(histories: list[list[int]], length: int = L) -> tuple[torch.Tensor, torch.Tensor]:
    items = torch.zeros(len(histories), length, dtype=torch.long)
    for row, h in enumerate(histories):
        items[row, : len(h)] = torch.tensor(h)
    return items, items > 0


def test_causal_a_position_sees_only_the_past():
    m = model()
    items, mask = left_aligned([[3, 7, 1, 9, 4, 2]])
    changed = items.clone()
    changed[0, 3] = 11  # change position 3
    a, b = m.sequence_states(items, mask), m.sequence_states(changed, mask)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=0)  # earlier positions untouched
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_user_vector_is_the_last_valid_position():
    m = model()
    items, mask = left_aligned([[3, 7, 1, 9, 4, 2], [5, 6], [8, 2, 2, 4]])
    states = m.sequence_states(items, mask)
    out = m(items, mask)
    assert out.shape == (3, 1, D)
    for row, last in enumerate([5, 1, 3]):
        torch.testing.assert_close(out[row, 0], states[row, last])
    # a prefix of a history gives the state the full history has at that position
    prefix_items, prefix_mask = left_aligned([[3, 7, 1]])
    torch.testing.assert_close(m(prefix_items, prefix_mask)[0, 0], states[0, 2], rtol=1e-6, atol=1e-6)


def test_padding_does_not_change_the_output():
    m = model()
    short_items, short_mask = left_aligned([[3, 7, 1]], length=3)
    long_items, long_mask = left_aligned([[3, 7, 1]], length=L)
    garbage = long_items.clone()
    garbage[0, 3:] = torch.tensor([5, 9, 12])  # ids under the mask
    reference = m(short_items, short_mask)
    torch.testing.assert_close(m(long_items, long_mask), reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m(garbage, long_mask), reference, rtol=1e-6, atol=1e-6)


def test_deterministic_given_the_seed_and_dropout_only_in_training():
    items, mask = left_aligned([[3, 7, 1, 9], [5, 6]])
    a, b, c = model(seed=1, dropout=0.5), model(seed=1, dropout=0.5), model(seed=2, dropout=0.5)
    # Bit-equal on purpose: the same seed and the same shapes in one process.
    assert torch.equal(a(items, mask), b(items, mask)) and torch.equal(a(items, mask), a(items, mask))
    assert not torch.equal(a(items, mask), c(items, mask))
    a.train()
    torch.manual_seed(0)
    first = a(items, mask)
    torch.manual_seed(0)
    assert torch.equal(first, a(items, mask))  # dropout follows the global seed (the trainer sets it)
    assert not torch.equal(first, a(items, mask))


def test_config_options_and_errors():
    cfg = run_config_from_flat({"model": "sasrec", "num_blocks": 1, "num_heads": 4, "dropout": 0.3})
    m = build_backbone(cfg.model, num_items=N)
    assert isinstance(m, SASRec) and len(m.blocks) == 1 and m.blocks[0].attention.num_heads == 4
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        run_config_from_flat({"model": "sasrec", "hidden_size": 10, "num_heads": 4})
    with pytest.raises(ConfigError, match="dropout"):
        run_config_from_flat({"dropout": 1.0})


def test_trains_with_full_softmax(tmp_path):
    import numpy as np

    from bamrec.api import train
    from bamrec.data.sequences import SequenceDataset

    rng = np.random.default_rng(0)
    SequenceDataset.from_sequences([rng.integers(1, 31, size=12).tolist() for _ in range(30)]).save(tmp_path / "d")
    result = train({"data": str(tmp_path / "d"), "model": "sasrec", "loss": "full", "seq_len": 8, "hidden_size": 8,
                    "batch_size": 16, "eval_every": 10, "max_iters": 20, "progress": False}, tmp_path / "run",
                   verbose=False)
    assert result.iters == 20 and 0 <= result.test["recall@20"] <= 1
    saved = (tmp_path / "run" / "config.json").read_text()
    assert '"num_interests": 1' in saved and '"model": "sasrec"' in saved  # resolved: K = 1


def test_written_out_attention_is_sdpa_without_dropout():
    # attention_with_dropout (the CPU training path) at p = 0 is scaled_dot_product_attention, padded
    # rows (only the diagonal allowed) included
    from bamrec.models.sasrec import attention_with_dropout

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, L, 4) for _ in range(3))
    _, mask = left_aligned([[3, 7, 1, 9, 4, 2], [5, 6], [8, 2, 2, 4]])
    allowed = ((torch.ones(L, L, dtype=torch.bool).tril() & mask[:, None, :]) | torch.eye(L, dtype=torch.bool))[:, None]
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(attention_with_dropout(q, k, v, allowed, 0.0), expected, rtol=1e-5, atol=1e-6)


def test_inverted_dropout_drops_p_and_rescales_the_rest():
    from bamrec.models.sasrec import inverted_dropout

    x = torch.ones(200_000)
    assert inverted_dropout(x, 0.2, training=False) is x and inverted_dropout(x, 0.0, training=True) is x
    torch.manual_seed(3)
    y = inverted_dropout(x, 0.2, training=True)
    assert set(y.unique().tolist()) == {0.0, 1.25}
    assert (y == 0).float().mean().item() == pytest.approx(0.2, abs=0.005)
    torch.manual_seed(3)
    assert torch.equal(inverted_dropout(x, 0.2, training=True), y)  # the global generator decides


def test_training_with_dropout_stays_causal_and_differentiable():
    # the written-out attention must keep the causal mask: with the same random draws, changing
    # position 3 leaves positions 0-2 exactly as they were
    m = model(dropout=0.3).train()
    items, mask = left_aligned([[3, 7, 1, 9, 4, 2], [5, 6, 0, 0, 0, 0]])
    changed = items.clone()
    changed[0, 3] = 11
    torch.manual_seed(5)
    a = m.sequence_states(items, mask)
    torch.manual_seed(5)
    b = m.sequence_states(changed, mask)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=0)
    assert not torch.allclose(a[0, 3:], b[0, 3:])
    torch.manual_seed(6)
    assert not torch.allclose(m.sequence_states(items, mask), a)  # dropout does act in training
    a.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.blocks.parameters() if p.requires_grad)
