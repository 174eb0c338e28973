"""The HTTP service against a live uvicorn server on 127.0.0.1 (random free port), with httpx:
answers identical to `bamrec recommend --json`, interests, batches, docs, and one-line 4xx refusals."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

from bamrec.api import load_run  # noqa: E402
from bamrec.cli import main  # noqa: E402
from bamrec.serve.app import create_app  # noqa: E402
from live_server import live_server  # noqa: E402
from numerics import assert_ranking_close  # noqa: E402


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def server(tiny_run):
    """A live uvicorn server in a thread, serving the tiny run with exact retrieval."""
    run = load_run(tiny_run)
    app = create_app(run.candidates(max_k=25, max_history=50, max_batch=8), {"model": "comirec-sa"})
    with live_server(app) as address, httpx.Client(base_url=address, timeout=10) as client:
        yield client


def _cli_json(capsys, *args) -> list:
    capsys.readouterr()
    assert main(["recommend", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_health_and_docs(server):
    assert server.get("/health").json()["status"] == "ok"
    assert server.get("/docs").status_code == 200
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/health", "/recommend", "/interests", "/recommend/batch", "/interests/batch"} <= set(paths)


def test_recommend_is_identical_to_the_cli(server, tiny_run, capsys):
    # Identical, floats included: one process, the same run and the same one-user shapes on both sides.
    answer = server.post("/recommend", json={"user": 2, "k": 5, "exclude_history": True})
    assert answer.status_code == 200
    assert answer.json()["items"] == _cli_json(capsys, str(tiny_run), "--user", "2", "-k", "5", "--exclude-history")
    answer = server.post("/recommend", json={"items": [3, 4, "7"], "k": 4})
    assert answer.json()["items"] == _cli_json(capsys, str(tiny_run), "--items", "3", "4", "7", "-k", "4")
    assert server.post("/recommend", json={"user": "2", "k": 5, "exclude_history": True}).json() == \
        server.post("/recommend", json={"user": 2, "k": 5, "exclude_history": True}).json()
    assert len(server.post("/recommend", json={"user": 3}).json()["items"]) == 20  # default k
    # User 1 has every item: nothing is left once the history is excluded.
    assert server.post("/recommend", json={"user": 1, "exclude_history": True, "k": 3}).json() == {"items": []}


@pytest.mark.order_sensitive
def test_interests_and_batches(server, tiny_run):
    run = load_run(tiny_run)
    got = np.array(server.post("/interests", json={"user": 5}).json()["interests"])
    expected = run.interests([run.dataset().sequence(5)]).numpy()[0]
    assert got.shape == (2, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    queries = [{"user": 2, "k": 3}, {"items": [5, 6], "k": 2, "exclude_history": True}, {"user": 9, "k": 4}]
    batch = server.post("/recommend/batch", json={"requests": queries}).json()["results"]
    single = [server.post("/recommend", json=q).json() for q in queries]
    # A batched forward pass equals single ones up to float rounding (matrix products of other shapes):
    # scores to a tolerance, items and interests exactly where the scores are not tied within it.
    for together, alone in zip(batch, single):
        a, b = together["items"], alone["items"]
        assert_ranking_close([r["item"] for r in a], [r["score"] for r in a], [r["item"] for r in b],
                             [r["score"] for r in b], extra_a=[r["interest"] for r in a],
                             extra_b=[r["interest"] for r in b])
    assert [len(r["items"]) for r in batch] == [3, 2, 4]
    vectors = server.post("/interests/batch", json={"requests": queries[:2]}).json()["results"]
    assert np.allclose(vectors[0]["interests"], server.post("/interests", json={"user": 2}).json()["interests"])


@pytest.mark.parametrize("path, body, status, reason", [
    ("/recommend", {"user": 999}, 404, "unknown user 999"),
    ("/recommend", {"user": "999"}, 404, "unknown user 999: not in"),  # as the dataset spells its ids
    ("/recommend", {"user": "abc"}, 404, "integers"),
    ("/recommend", {"items": [1, 77]}, 404, "unknown item id(s) [77]"),
    ("/recommend", {"user": 2, "k": 0}, 422, "k must be an integer in [1, 25]"),
    ("/recommend", {"user": 2, "k": 26}, 422, "k must be"),
    ("/recommend", {"user": 2, "k": "many"}, 422, "malformed request: k"),
    ("/recommend", {"user": 2, "items": [1]}, 422, "not both"),
    ("/recommend", {}, 422, "either a user"),
    ("/recommend", {"items": []}, 422, "history is empty"),
    ("/recommend", {"user": 2, "colour": "red"}, 422, "malformed request: colour"),
    ("/recommend", {"items": list(range(1, 31)) * 2}, 413, "longer than the limit of 50"),
    ("/interests", {"user": None}, 422, "either a user"),
    ("/recommend/batch", {"requests": [{"user": 2}] * 9}, 413, "larger than the limit of 8"),
    ("/recommend/batch", {"requests": {"user": 2}}, 422, "malformed request: requests"),
])
def test_bad_requests_get_one_line_4xx(server, path, body, status, reason):
    answer = server.post(path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert reason in error and "\n" not in error


def test_malformed_bodies_and_the_server_survives(server):
    for content, headers in ((b"{not json", {"content-type": "application/json"}),
                             (b"", {"content-type": "application/json"}),
                             (b"[1, 2]", {"content-type": "application/json"}),
                             (b"user=2", {"content-type": "application/x-www-form-urlencoded"})):
        answer = server.post("/recommend", content=content, headers=headers)
        assert answer.status_code == 422 and "malformed request" in answer.json()["error"]
    huge = server.post("/recommend", content=b"{" + b" " * (5 << 20) + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413
    assert server.get("/health").json()["status"] == "ok"


def test_one_error_shape_everywhere(server):
    """Starlette's own refusals (no such path, wrong method) answer {"error"} like the app's, not {"detail"}."""
    for answer, status, reason in ((server.get("/nothing"), 404, "no endpoint /nothing; see /docs"),
                                   (server.get("/recommend"), 405, "GET is not allowed on /recommend"),
                                   (server.post("/health", json={}), 405, "POST is not allowed on /health")):
        assert (answer.status_code, answer.json()) == (status, {"error": reason})
    assert server.get("/recommend").headers["allow"] == "POST"
    # A chunked upload says no length: it is bounded all the same, and the server stays up.
    chunks = (b" " * (1 << 20) for _ in range(6))
    answer = server.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (413, {"error": "request body larger than 4194304 bytes"})
    small = server.post("/recommend", content=(part for part in (b'{"user": ', b'2, "k": 2}')),
                        headers={"content-type": "application/json"})
    assert small.status_code == 200 and len(small.json()["items"]) == 2


def test_malformed_json_says_where_not_a_bare_offset(server):
    # pydantic reports the character offset where a field name would stand: it must read as an offset.
    answer = server.post("/recommend", content=b'{"user": 42,, }', headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["error"] == ("malformed request: the body is not valid JSON "
                                      "(Expecting property name enclosed in double quotes at character 12)")


def test_bamrec_serve_command_on_an_export(tiny_run, tmp_path):
    """The real command: `bamrec serve EXPORT --port P` in its own process, queried, then stopped."""
    export = tmp_path / "exp"
    assert main(["export", str(tiny_run), "--out", str(export), "--index", "flat"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bamrec.cli", "serve", str(export), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # --port 0: the system picks a free port, bound before the banner, which names it.
        banner = process.stdout.readline().decode()
        assert banner.startswith(f"serving {export} (flat) on http://127.0.0.1:"), (banner, process.stderr.read())
        port = int(banner.split("http://127.0.0.1:")[1].split()[0])
        assert port > 0
        deadline = time.time() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                assert process.poll() is None, process.stderr.read().decode()
                try:
                    health = client.get("/health").json()
                    break
                except httpx.TransportError:
                    assert time.time() < deadline, "bamrec serve did not start"
                    time.sleep(0.1)
            assert health["retrieval"] == "flat" and health["num_items"] == 30
            assert health["run"] == tiny_run.name  # the run's name, not the server's path to it
            items = client.post("/recommend", json={"user": 2, "k": 3}).json()["items"]
            expected = load_run(tiny_run).recommend(user=2, k=3)
            # Another process, and a faiss index against torch: equal but for ties within rounding.
            assert_ranking_close([r["item"] for r in items], [r["score"] for r in items],
                                 [r.item for r in expected], [r.score for r in expected])
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_busy_port_is_one_line_and_exit_2_before_serving(tiny_run, capsys):
    """A port another process listens on: refused before anything says "serving", exit 2."""
    busy = _free_socket()
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        capsys.readouterr()
        assert main(["serve", str(tiny_run), "--port", str(port)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (f"bamrec: error: port {port} on 127.0.0.1 is in use by another process: stop it or pass "
                       "--port with another port (--port 0 picks a free one)\n")
    finally:
        busy.close()
    assert main(["serve", str(tiny_run), "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid: not an address of this machine" in capsys.readouterr().err


def test_limits_and_ids_are_validated():
    from bamrec.errors import ConfigError, UnknownIdError
    from bamrec.retrieval.service import Limits, coerce_id

    with pytest.raises(ConfigError, match="max_k"):
        Limits(max_k=0)
    ids = np.array([1, 2, 3])
    assert coerce_id("2", ids) == 2 and coerce_id(2.0, ids) == 2
    for bad in (2.5, True, "x"):
        with pytest.raises(UnknownIdError, match="integers"):
            coerce_id(bad, ids)
    assert coerce_id(7, np.array(["a", "7"])) == "7"
