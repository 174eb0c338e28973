"""`bamrec export`: files and manifest, stale/damaged refusals, ONNX equal to torch for every backbone,
and the retrieval options of `bamrec evaluate` / `bamrec recommend` (incl. --all-users Parquet)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from bamrec.api import load_export, load_run  # noqa: E402
from bamrec.cli import main  # noqa: E402
from bamrec.config import ModelConfig  # noqa: E402
from bamrec.models import build_backbone  # noqa: E402
from bamrec.retrieval.export import ONNX_ATOL, ONNX_RTOL, export_onnx, export_run, open_export  # noqa: E402
from bamrec.retrieval.index import RETRIEVALS  # noqa: E402
from numerics import (  # noqa: E402
    assert_rank_metrics_close,
    assert_ranking_close,
    assert_ranks_close,
    assert_topk_tables_close,
    run_tied_targets,
)


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "exp"
    assert main(["export", str(tiny_run), "--out", str(out), "--index", "hnsw", "--hnsw-m", "8", "--onnx"]) == 0
    return out


def test_export_files_and_manifest(tiny_run, exported):
    import pyarrow.parquet as pq

    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == "bamrec-export/1"
    assert manifest["run"]["path"] == str(tiny_run.resolve())
    assert set(manifest["run"]["checksums"]) == {"config.json", "model.safetensors", "item_map.json"}
    assert manifest["config"]["model"]["model"] == "comirec-sa"
    assert manifest["index"]["params"]["kind"] == "hnsw" and manifest["index"]["params"]["hnsw_m"] == 8
    assert manifest["onnx"]["within_tolerance"] and manifest["onnx"]["max_abs_diff"] <= 1e-5
    assert set(manifest["files"]) == {"item_vectors.npy", "items.parquet", "index.faiss", "index.json",
                                      "user_interests.npy", "users.parquet", "user_interests.parquet",
                                      "extractor.onnx"}
    run = load_run(tiny_run)
    table = run.model.item_embeddings().detach().numpy()
    # The files hold copies of the weights (no arithmetic): bit-equal on any machine.
    assert np.array_equal(np.load(exported / "item_vectors.npy"), table[1:])
    items = pq.read_table(exported / "items.parquet").to_pydict()
    assert items["row"] == list(range(1, 31)) and items["item"] == run.item_ids[1:]
    assert np.array_equal(np.array(items["vector"], dtype=np.float32), table[1:])
    vectors = np.load(exported / "user_interests.npy")  # [U, K, D]
    dataset = run.dataset()
    assert vectors.shape == (40, 2, 8)
    expected = run.interests([dataset.sequence(u) for u in (1, 17, 40)]).numpy()
    np.testing.assert_allclose(vectors[[0, 16, 39]], expected, rtol=1e-6, atol=1e-6)
    users = pq.read_table(exported / "users.parquet").to_pydict()
    assert users["user"] == dataset.user_ids.tolist() and users["history_length"][0] == 30
    long = pq.read_table(exported / "user_interests.parquet").to_pydict()
    assert long["user"][:4] == [1, 1, 2, 2] and long["interest"][:4] == [0, 1, 0, 1]
    assert np.array_equal(np.array(long["vector"], dtype=np.float32).reshape(40, 2, 8), vectors)


def test_stale_and_damaged_exports_are_refused(tiny_run, exported, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    export = tmp_path / "exp"
    assert main(["export", str(run), "--out", str(export)]) == 0
    assert main(["export", str(run), "--out", str(export)]) == 2  # exists: needs --overwrite
    capsys.readouterr()
    open_export(export)
    weights = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))  # the run changed
    assert main(["recommend", str(export), "--user", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is stale" in err and "model.safetensors" in err
    assert main(["serve", str(export), "--port", "0"]) == 2
    assert "is stale" in capsys.readouterr().err
    (run / "model.safetensors").write_bytes(weights)
    open_export(export)
    (export / "items.parquet").write_bytes(b"not parquet")
    assert main(["evaluate", str(export)]) == 2
    assert "damaged: items.parquet" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["comirec-sa", "comirec-dr", "mind", "single", "remi", "sasrec"])
def test_onnx_extractor_matches_torch(model, tmp_path):
    pytest.importorskip("onnxruntime")
    config = ModelConfig(model=model, seq_len=12, hidden_size=16, num_interests=3)
    backbone = build_backbone(config, num_items=60, seed=3).eval()
    check = export_onnx(backbone, 12, tmp_path / "x.onnx")  # traced on 2 histories, checked on 16
    assert check["within_tolerance"] and check["checked_users"] == 16
    from bamrec.retrieval.export import onnx_interest_fn

    run = onnx_interest_fn(tmp_path / "x.onnx")
    generator = torch.Generator().manual_seed(9)
    history = torch.randint(1, 61, (5, 12), generator=generator)
    mask = torch.arange(12).unsqueeze(0) < torch.tensor([[12], [1], [5], [7], [12]])
    history = history * mask
    with torch.inference_mode():
        expected = backbone(history, mask).numpy()
    np.testing.assert_allclose(run(history, mask).numpy(), expected, rtol=ONNX_RTOL, atol=ONNX_ATOL)


@pytest.mark.order_sensitive
def test_retrieval_options_of_evaluate_and_recommend(tiny_run, exported, capsys):
    assert main(["evaluate", str(tiny_run), "--json", "--cutoffs", "5,10"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_run), "--json", "--cutoffs", "5,10", "--retrieval", "flat"]) == 0
    flat = json.loads(capsys.readouterr().out)
    # faiss's products against torch's: equal but for targets tied with another item within rounding.
    assert flat.pop("retrieval") == "flat"
    assert_rank_metrics_close(flat, exact, int(run_tied_targets(load_run(tiny_run)).sum()))
    assert main(["evaluate", str(exported), "--json", "--cutoffs", "5,10"]) == 0  # the export's hnsw index
    hnsw = json.loads(capsys.readouterr().out)
    assert hnsw["retrieval"] == "hnsw" and hnsw["users"] == exact["users"]
    assert main(["evaluate", str(tiny_run), "--retrieval", "ivf", "--protocol", "reference"]) == 2
    assert "standard protocol" in capsys.readouterr().err
    assert main(["evaluate", str(exported), "--retrieval", "ivf"]) == 2
    assert "hnsw index, not ivf" in capsys.readouterr().err

    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "5", "--exclude-history", "--json"]) == 0
    exact_recs = json.loads(capsys.readouterr().out)
    assert main(["recommend", str(tiny_run), "--user", "2", "-k", "5", "--exclude-history", "--json",
                 "--retrieval", "flat"]) == 0
    flat_recs = json.loads(capsys.readouterr().out)
    # faiss's scores equal torch's up to float rounding; items, ranks and interests exactly where untied.
    assert [r["rank"] for r in flat_recs] == [r["rank"] for r in exact_recs]
    assert_ranking_close([r["item"] for r in flat_recs], [r["score"] for r in flat_recs],
                         [r["item"] for r in exact_recs], [r["score"] for r in exact_recs],
                         extra_a=[r["interest"] for r in flat_recs], extra_b=[r["interest"] for r in exact_recs])
    assert main(["recommend", str(exported), "--items", "3", "4", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.order_sensitive
def test_evaluate_with_flat_index_equals_exact_ranks(tiny_run):
    run = load_run(tiny_run)
    exact = run.evaluate_result(cutoffs=(3, 10))
    flat = run.evaluate_result(cutoffs=(3, 10), retrieval="flat")
    # Within the top 10 the flat index ranks each target where exact ranking does, but for targets
    # tied with another item (or between interests) within rounding: faiss and torch sum differently.
    tied = run_tied_targets(run)
    inside = exact.ranks < 10
    assert_ranks_close(flat.ranks[inside], exact.ranks[inside], tied[inside])
    assert bool((flat.ranks[~inside & ~tied] >= 10).all())
    assert_ranks_close(flat.target_interest, exact.target_interest, tied)


@pytest.mark.order_sensitive
def test_all_users_parquet_streams_every_users_top_k(tiny_run, exported, tmp_path, capsys):
    import pyarrow.parquet as pq

    from bamrec.retrieval.batch import write_all_users

    out = tmp_path / "recs.parquet"
    assert main(["recommend", str(tiny_run), "--all-users", "--out", str(out), "-k", "4", "--exclude-history"]) == 0
    assert "40 users" in capsys.readouterr().out
    table = pq.read_table(out).to_pydict()
    run = load_run(tiny_run)
    # User 1 has all 30 items: with its history excluded nothing is left.
    assert 1 not in table["user"] and len(table["user"]) == 39 * 4
    assert table["rank"][:4] == [1, 2, 3, 4]
    # One user at a time against 1024 at a time: matrix products of other shapes round differently (on
    # another CPU or thread count), so scores agree to a tolerance and items exactly where not tied.
    for user in (2, 25, 40):
        lines = [i for i, u in enumerate(table["user"]) if u == user]
        expected = run.recommend(user=user, k=4, exclude_history=True)
        assert_ranking_close([table["item"][i] for i in lines], [table["score"][i] for i in lines],
                             [r.item for r in expected], [r.score for r in expected],
                             extra_a=[table["interest"][i] for i in lines], extra_b=[r.interest for r in expected])
    # Chunked: the same lines whatever the chunk size, to the same tolerance.
    small = tmp_path / "small.parquet"
    write_all_users(run.candidates(), small, 4, exclude_history=True, user_batch_size=7)
    assert_topk_tables_close(pq.read_table(small).to_pydict(), table)
    assert main(["recommend", str(tiny_run), "--all-users", "--out", str(out)]) == 2  # exists
    assert main(["recommend", str(tiny_run), "--all-users"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["recommend", str(exported), "--all-users", "--out", str(tmp_path / "h.parquet"), "-k", "3"]) == 0


def test_cli_retrieval_choices_match_the_library():
    from bamrec.cli import build_parser

    parser = build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["recommend"]._actions}
    assert tuple(actions["retrieval"].choices) == RETRIEVALS


def test_export_manifest_refuses_non_exports(tmp_path):
    from bamrec.errors import RunDirError

    with pytest.raises(RunDirError, match="not a bamrec export"):
        open_export(tmp_path)
    with pytest.raises(RunDirError, match="not a complete run"):
        export_run(type("R", (), {"path": tmp_path})(), tmp_path / "x")
    with pytest.raises(RunDirError, match="not a bamrec export"):
        load_export(tmp_path)
