"""Item metadata reaches every output of a run (recommend's table and --json, --all-users Parquet) and
``Candidates.explain`` tells what each interest is made of: the window the model read, its weights, the
cosines and each interest's own top-k, which the merged list is the max over."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bamrec.api import load_run
from bamrec.cli import main
from bamrec.retrieval.service import Query


def _cli(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_recommend_json_and_table_carry_titles(titled_run, capsys):
    recs = json.loads(_cli(capsys, "recommend", str(titled_run), "--user", "3", "-k", "30", "--json"))
    assert len(recs) == 30
    described = [r for r in recs if int(r["item"]) <= 25]
    assert all(r["title"] == f"Film {r['item']} ({1990 + int(r['item'])})" for r in described)
    assert all(set(r) == {"rank", "item", "score", "interest", "title", "genre"} for r in recs)
    bare = [r for r in recs if int(r["item"]) > 25]
    assert len(bare) == 5 and all(r["title"] is None and r["genre"] is None for r in bare)  # ids still work
    table = _cli(capsys, "recommend", str(titled_run), "--user", "3", "-k", "30").splitlines()
    header = next(line for line in table if line.lstrip().startswith("rank"))
    assert header.split() == ["rank", "item", "score", "interest", "title"]
    first = table[table.index(header) + 1]
    assert first.split()[1] == str(recs[0]["item"]) and first.endswith(recs[0]["title"] or first.split()[-1])


def test_a_run_without_metadata_prints_what_it_did(tiny_run, capsys):
    recs = json.loads(_cli(capsys, "recommend", str(tiny_run), "--user", "3", "-k", "3", "--json"))
    assert all(set(r) == {"rank", "item", "score", "interest"} for r in recs)
    table = _cli(capsys, "recommend", str(tiny_run), "--user", "3", "-k", "3")
    assert "title" not in table


def test_all_users_parquet_has_a_title_column(titled_run, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "recs.parquet"
    _cli(capsys, "recommend", str(titled_run), "--all-users", "-k", "4", "--out", str(out))
    table = pq.read_table(out).to_pylist()
    assert table[0].keys() == {"user", "rank", "item", "score", "interest", "title"}
    for line in table:
        expected = f"Film {line['item']} ({1990 + line['item']})" if line["item"] <= 25 else None
        assert line["title"] == expected


def test_a_moved_or_other_dataset_gives_no_titles(titled_run, tmp_path):
    run = load_run(titled_run)
    assert run.item_metadata().has_title
    assert run.item_metadata(tmp_path) is None  # nothing there
    # The data directory of another run: other items, so its titles would be wrong ones.
    other = load_run(titled_run)
    other.record = {**other.record, "dataset": {**other.record["dataset"], "checksum": "0" * 64}}
    assert other.item_metadata() is None


def test_explain_weights_cosine_and_per_interest_tops(titled_run):
    run = load_run(titled_run)
    candidates = run.candidates()
    dataset = run.dataset()
    (answer,) = candidates.explain([Query(user=7, k=5, exclude_history=True)])
    sequence = dataset.sequence(dataset.user_index()[7])
    window = sequence[-run.config.model.seq_len:]
    assert [h["item"] for h in answer["history"]] == dataset.item_ids[window - 1].tolist()
    assert answer["history_length"] == len(sequence)
    assert answer["history"][0].keys() == {"item", "title", "genre"}
    assert answer["weights_kind"] == "attention"
    weights = np.array(answer["weights"])  # [K, len(window)]
    assert weights.shape == (3, len(window))
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    interests = np.array(answer["interests"])  # [K, D]
    np.testing.assert_allclose(interests, candidates.interests([Query(user=7)])[0], rtol=1e-5, atol=1e-6)
    cosine = np.array(answer["cosine"])
    unit = interests / np.linalg.norm(interests, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, unit @ unit.T, rtol=1e-5, atol=1e-6)
    # The merged list is the max over interests: each of its items is in the top-5 of the interest that
    # retrieved it, with the same score, and nothing of the history is offered.
    merged = candidates.recommend([Query(user=7, k=5, exclude_history=True)])[0]
    seen = set(dataset.item_ids[sequence - 1].tolist())
    for rec in merged:
        own = {r["item"]: r["score"] for r in answer["top"][rec.interest]}
        assert own[rec.item] == pytest.approx(rec.score, rel=1e-5)
    assert all(len(top) == 5 and not ({r["item"] for r in top} & seen) for top in answer["top"])
    assert all(r["interest"] == i for i, top in enumerate(answer["top"]) for r in top)


def test_explain_of_an_ad_hoc_history_and_of_mind(titled_run, tmp_path):
    from bamrec.api import train

    run = load_run(titled_run)
    (answer,) = run.candidates().explain([Query(items=[3, 4, 26], k=2)])
    assert [h["item"] for h in answer["history"]] == [3, 4, 26]
    assert answer["history"][2]["title"] is None and answer["history"][0]["title"] == "Film 3 (1993)"
    data = run.record["dataset"]["path"]
    mind = train({"data": data, "model": "mind", "seq_len": 8, "hidden_size": 8, "num_interests": 3,
                  "batch_size": 16, "num_negatives": 10, "eval_every": 10, "max_iters": 10, "progress": False},
                 out=tmp_path / "mind", verbose=False)
    assert mind is not None
    mind_run = load_run(tmp_path / "mind")
    (answer,) = mind_run.candidates().explain([Query(items=[3, 4, 26], k=2)])
    assert answer["weights_kind"] == "routing"
    weights = torch.tensor(answer["weights"])  # [K, 3]; B2I routing: each item's weights sum to 1 over K
    torch.testing.assert_close(weights.sum(0), torch.ones(3))
