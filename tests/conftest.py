"""Shared test fixtures: paths to the read-only real datasets and tiny in-memory datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(os.environ.get("BAMREC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # Tests run on 2-core machines, often beside other work; keep torch from oversubscribing.
    torch.set_num_threads(1)


# Thread counts a test marked ``order_sensitive`` runs under: it compares results computed at other
# shapes (batch, chunk sizes), by other code or in other processes, whose float sums run in another
# order; another thread count changes the order again. Passing under both shows that the comparison
# tolerates rounding instead of relying on one summation order (docs/testing.md).
ORDER_SENSITIVE_THREADS = (1, 2)


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("order_sensitive") is not None:
        if "torch_threads" not in metafunc.fixturenames:
            metafunc.fixturenames.append("torch_threads")
        metafunc.parametrize("torch_threads", ORDER_SENSITIVE_THREADS, indirect=True,
                             ids=[f"threads{n}" for n in ORDER_SENSITIVE_THREADS])


@pytest.fixture
def torch_threads(request):
    """torch's intra-op thread count for one ``order_sensitive`` test (set back to 1 afterwards)."""
    torch.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data; tests that need them are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def write_tiny_dataset(path: Path, num_users: int = 40, num_items: int = 30, max_len: int = 15,
                       seed: int = 0) -> Path:
    """A small random dataset (user 0 has every item, so N = num_items) saved at ``path``."""
    import numpy as np

    from bamrec.data.sequences import SequenceDataset

    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, num_items + 1, size=rng.integers(5, max_len)).tolist() for _ in range(num_users)]
    sequences[0] = list(range(1, num_items + 1))  # every item occurs
    SequenceDataset.from_sequences(sequences).save(path)
    return path


@pytest.fixture(scope="session")
def make_tiny_dataset():
    """``write_tiny_dataset``, for tests that need their own size or a copy they may change."""
    return write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny dataset: 40 users, 30 items, histories of 5-14 items; read-only for tests."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture
def data_dir(tiny_data) -> Path:
    """The tiny dataset under the name most tests use for "a prepared dataset directory"."""
    return tiny_data


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    """A run trained for a few steps on the tiny dataset (K = 2, d = 8, L = 8); read-only for tests."""
    from bamrec.api import train

    root = tmp_path_factory.mktemp("tiny-run")
    train({"data": str(tiny_data), "model": "comirec-sa", "seq_len": 8, "hidden_size": 8, "num_interests": 2,
           "batch_size": 16, "num_negatives": 10, "eval_every": 20, "max_iters": 40, "progress": False},
          out=root / "run", verbose=False)
    return root / "run"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say in the summary when the fidelity suite did not run (it needs the original code)."""
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if "BAM_ORIGINAL_SRC" in str(getattr(report, "longrepr", ""))]
    if skipped:
        terminalreporter.write_line(
            f"fidelity suite skipped: {len(skipped)} tests need the original BaM code "
            "(make test-fidelity BAM_ORIGINAL_SRC=/path/to/original/src runs them; docs/fidelity.md)")


@pytest.fixture(scope="session")
def titled_run(tmp_path_factory):
    """A run (ComiRec-SA, K = 3, d = 8, L = 8, a few steps) on 40 users / 30 items prepared from a CSV log
    with ``--items``: items 1-25 have a title and a genre, 26-30 have none; read-only for tests."""
    import numpy as np

    from bamrec.api import train
    from bamrec.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("titled-run")
    rng = np.random.default_rng(1)
    lines = ["uid,iid,ts"]
    for user in range(1, 41):
        for t, item in enumerate(rng.integers(1, 31, size=rng.integers(6, 16)).tolist()):
            lines.append(f"{user},{item},{t}")
    lines += [f"41,{item},{item}" for item in range(1, 31)]  # every item is rated at least once
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    genres = ("Drama", "Comedy", "Horror")
    (root / "items.csv").write_text("item,title,genre\n" + "".join(
        f"{i},Film {i} ({1990 + i}),{genres[i % 3]}\n" for i in range(1, 26)))
    prepare_dataset(root / "log.csv", root / "data", user_col="uid", item_col="iid", time_col="ts",
                    id_type="int", items=root / "items.csv")
    train({"data": str(root / "data"), "model": "comirec-sa", "seq_len": 8, "hidden_size": 8, "num_interests": 3,
           "batch_size": 16, "num_negatives": 10, "eval_every": 20, "max_iters": 40, "progress": False},
          out=root / "run", verbose=False)
    return root / "run"
