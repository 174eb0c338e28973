"""Planted-interest generator: structure, seeding, ground truth files and the CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from bamrec.cli import data_synthetic
from bamrec.data.sequences import SequenceDataset
from bamrec.data.synthetic import (
    GroundTruth,
    SyntheticConfig,
    generate,
    load_ground_truth,
    target_origin_shares,
    write_synthetic,
)
from bamrec.errors import ConfigError, DataError

SMALL = SyntheticConfig(users=400, items=300, topics=10, interests_per_user=3, min_len=8, max_len=30, seed=7)


def _positions(dataset: SequenceDataset) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(1, dataset.num_users + 1), dataset.lengths)
    return users, dataset.items.astype(np.int64)


def test_shapes_lengths_and_ids():
    dataset, truth = generate(SMALL)
    assert dataset.num_users == 400 and dataset.num_items == 300
    assert dataset.lengths.min() >= 8 and dataset.lengths.max() <= 30
    assert dataset.items.dtype == np.int32 and dataset.items.min() >= 1 and dataset.items.max() <= 300
    assert truth.item_topic.shape == (300,) and truth.user_topics.shape == (400, 3)
    # topics of near-equal size: 300 / 10 = 30 each
    assert np.bincount(truth.item_topic).tolist() == [30] * 10
    # each user's planted topics are distinct
    assert all(len(set(row)) == 3 for row in truth.user_topics.tolist())


def test_weights_follow_zipf_profile():
    _, truth = generate(SyntheticConfig(users=5, items=400, topics=5, max_len=50, seed=1))
    # m = 4, imbalance 1: 1, 1/2, 1/3, 1/4 normalised by 25/12
    np.testing.assert_allclose(truth.user_weights, np.tile([0.48, 0.24, 0.16, 0.12], (5, 1)))
    _, flat = generate(SyntheticConfig(users=5, items=400, topics=5, max_len=50, imbalance=0.0, seed=1))
    np.testing.assert_allclose(flat.user_weights, 0.25)


def test_no_repeated_items_within_a_user():
    dataset, _ = generate(SMALL)
    users, items = _positions(dataset)
    keys = users * 1000 + items
    assert len(np.unique(keys)) == len(keys)


def test_items_come_from_planted_topics_except_noise():
    config = SyntheticConfig(users=2000, items=400, topics=8, min_len=10, max_len=40, noise=0.1, seed=3)
    dataset, truth = generate(config)
    users, items = _positions(dataset)
    rank = truth.target_rank(users, items)
    share = np.bincount(rank + 1, minlength=5) / len(rank)  # [unplanted, dominant, minor...]
    assert share[0] == pytest.approx(0.1, abs=0.01)
    # topic items follow the weights (times 1 - noise); sessions make draws correlated, so loose tolerance
    np.testing.assert_allclose(share[1:], 0.9 * np.array([0.48, 0.24, 0.16, 0.12]), atol=0.02)


def test_zero_noise_has_only_planted_items():
    dataset, truth = generate(SyntheticConfig(**{**SMALL.__dict__, "noise": 0.0}))
    users, items = _positions(dataset)
    assert (truth.target_rank(users, items) >= 0).all()


def test_long_sessions_keep_one_topic_per_user():
    config = SyntheticConfig(users=50, items=300, topics=10, min_len=5, max_len=20, session_len=1e9, noise=0.0)
    dataset, truth = generate(config)
    users, items = _positions(dataset)
    rank = truth.target_rank(users, items)
    per_user_ranks = [set(rank[users == u].tolist()) for u in range(1, 51)]
    assert all(len(r) == 1 for r in per_user_ranks)


def test_test_targets_often_from_minor_interests():
    dataset, _ = generate(SyntheticConfig(users=1000, items=2000, topics=20, seed=5))
    shares = dataset.manifest["truth"]
    # expected: minor = 0.95 * 0.52 = 0.494, dominant = 0.95 * 0.48 = 0.456
    assert shares["test_target_minor"] == pytest.approx(0.494, abs=0.05)
    assert shares["test_target_dominant"] == pytest.approx(0.456, abs=0.05)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_seeded():
    a, ta = generate(SMALL)
    b, tb = generate(SMALL)
    c, _ = generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    assert a.checksum() == b.checksum() and np.array_equal(ta.user_topics, tb.user_topics)
    assert a.checksum() != c.checksum()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_len": 40}, "each topic needs at least max_len"),
        ({"interests_per_user": 10}, "must be smaller than topics"),
        ({"min_len": 3}, "min_len must be at least 4"),
        ({"noise": 1.0}, "noise must be in"),
        ({"session_len": 0.5}, "session_len"),
    ],
)
def test_invalid_configs(change, message):
    with pytest.raises(ConfigError, match=message):
        generate(SyntheticConfig(**{**SMALL.__dict__, **change}))


def test_target_rank_hand_example():
    truth = GroundTruth(
        item_topic=np.array([0, 1, 2, 3, 1]),  # items 1..5
        user_topics=np.array([[1, 0], [3, 2]]),  # user 1: dominant topic 1, minor 0
        user_weights=np.array([[0.7, 0.3], [0.7, 0.3]]),
    )
    users = np.array([1, 1, 1, 2, 2, 2])
    items = np.array([2, 1, 3, 4, 3, 1])
    assert truth.target_rank(users, items).tolist() == [0, 1, -1, 0, 1, -1]


def test_target_origin_shares_hand_example():
    # item i has topic i - 1; last items 1, 2, 3 -> topics 0 (dominant of user 1),
    # 1 (minor of user 2), 2 (not planted for user 3)
    truth = GroundTruth(np.array([0, 1, 2]), np.array([[0, 1], [0, 1], [1, 0]]), np.full((3, 2), 0.5))
    dataset = SequenceDataset.from_sequences([[2, 1], [3, 2], [1, 3]])
    shares = target_origin_shares(dataset, truth)
    assert shares == pytest.approx(
        {"test_target_dominant": 1 / 3, "test_target_minor": 1 / 3, "test_target_unplanted": 1 / 3}
    )


def test_write_and_load(tmp_path):
    out, dataset = write_synthetic(tmp_path / "syn", SMALL)
    loaded = SequenceDataset.load(out, verify=True)
    assert loaded.checksum() == dataset.checksum()
    assert loaded.manifest["source"] == "synthetic"
    assert loaded.manifest["generator"]["topics"] == 10 and loaded.manifest["generator"]["seed"] == 7
    truth = load_ground_truth(out)
    _, expected = generate(SMALL)
    assert np.array_equal(truth.item_topic, expected.item_topic)
    assert np.array_equal(truth.user_topics, expected.user_topics)
    np.testing.assert_allclose(truth.user_weights, expected.user_weights)
    with pytest.raises(DataError, match="--overwrite"):
        write_synthetic(out, SMALL)
    write_synthetic(out, SMALL, overwrite=True)


def test_load_ground_truth_absent_or_partial(tmp_path):
    SequenceDataset.from_sequences([[1, 2, 3, 4]]).save(tmp_path / "plain")
    assert load_ground_truth(tmp_path / "plain") is None
    out, _ = write_synthetic(tmp_path / "syn", SMALL)
    (out / "truth_user_weights.npy").unlink()
    with pytest.raises(DataError, match="truth_user_weights.npy"):
        load_ground_truth(out)


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_synthetic.register(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["synthetic", "--out", str(out), "--users", "50", "--items", "200", "--topics", "5",
         "--interests-per-user", "2", "--imbalance", "2", "--min-len", "6", "--max-len", "12", "--seed", "3"]
    )
    assert args.handler(args) == 0
    assert "wrote" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["interests_per_user"] == 2 and manifest["generator"]["imbalance"] == 2.0
    truth = load_ground_truth(out)
    np.testing.assert_allclose(truth.user_weights[0], [0.8, 0.2])  # 1 : 1/4
    assert SequenceDataset.load(out).lengths.max() <= 12


def test_main_cli_error_is_one_line(tmp_path, capsys):
    pytest.importorskip("bamrec.cli.data")  # the `data` group lives in another module
    from bamrec.cli import main

    assert main(["data", "synthetic", "--out", str(tmp_path / "x"), "--max-len", "500"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bamrec: error: each topic needs at least max_len") and len(err.splitlines()) == 1
    assert main(["data", "synthetic", "--out", str(tmp_path / "ok"), "--users", "20", "--items", "125",
                 "--topics", "5", "--max-len", "25"]) == 0
    assert load_ground_truth(tmp_path / "ok").user_topics.shape == (20, 4)
