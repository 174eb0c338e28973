"""Bad input, as a user would give it, through the real command line (``bamrec.cli.main``).

For every mistake: a non-zero exit code, one line on stderr that names the problem, no traceback,
and no file of the user's changed (every file under the user's folders is hashed before and after).
One small training run is shared by the module; everything else is tiny hand-written files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bamrec.cli import main
from bamrec.data.sequences import SequenceDataset

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--seq-len", "8", "--hidden-size", "8", "--num-interests", "2", "--batch-size", "16",
         "--num-negatives", "10", "--eval-every", "20", "--max-iters", "40", "--no-progress"]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (what "no file of the user's changed" is checked on)."""
    digests = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            digests[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def fails_cleanly(capsys, argv: list[str], *needles: str, roots: tuple[Path, ...] = ()) -> str:
    """Run ``bamrec argv``; assert a non-zero exit, one error line naming ``needles``, no traceback,
    and unchanged files under ``roots``. Returns the error line."""
    before = snapshot(*roots)
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert code != 0, (argv, captured.err)
    assert "Traceback" not in captured.err and len(errors) == 1, captured.err
    assert all(line.startswith("bamrec") for line in captured.err.splitlines()), captured.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert snapshot(*roots) == before, "a user file changed"
    return errors[0]


# --- fixtures ---------------------------------------------------------------------------------


def _dataset(seed: int, num_items: int) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, num_items + 1, size=rng.integers(5, 15)).tolist() for _ in range(40)]
    sequences[0] = list(range(1, num_items + 1))
    return SequenceDataset.from_sequences(sequences)


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """The user's folder: two prepared datasets and one finished (and one interrupted) training run."""
    root = tmp_path_factory.mktemp("user")
    _dataset(0, 30).save(root / "data")
    _dataset(1, 30).save(root / "other-data")  # same size, other interactions
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), *FLAGS]) == 0
    return root


@pytest.fixture(scope="module")
def interrupted_run(user_dir, tmp_path_factory) -> Path:
    """A run stopped by Ctrl-C at iteration 30 (after one validation check), as a user would leave it."""
    from bamrec.data.sampling import TrainSampler

    out = tmp_path_factory.mktemp("interrupted") / "run"
    original = TrainSampler.sample
    calls = {"n": 0}

    def sample(self):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self)

    mp = pytest.MonkeyPatch()
    mp.setattr(TrainSampler, "sample", sample)
    try:
        main(["train", "--data", str(user_dir / "data"), "--out", str(out), *FLAGS])
    finally:
        mp.undo()
    assert (out / "last.ckpt").is_file() and (out / "model.safetensors").is_file()
    return out


@pytest.fixture
def raw(tmp_path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    return folder


# --- data prepare -----------------------------------------------------------------------------


def test_prepare_missing_file(capsys, tmp_path):
    fails_cleanly(capsys, ["data", "prepare", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
                  "nope.txt", "not a registered dataset")


def test_prepare_empty_file(capsys, raw, tmp_path):
    (raw / "empty.txt").write_text("")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "empty.txt"), "--format", "uid-iid", "--out",
                           str(tmp_path / "o")], "empty.txt", roots=(raw,))
    assert not (tmp_path / "o").exists()


def test_prepare_malformed_line(capsys, raw, tmp_path):
    (raw / "log.txt").write_text("1 10\n1 11\n2 10 12\n")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.txt"), "--format", "uid-iid", "--out",
                           str(tmp_path / "o")], "log.txt:3", "expected 2 fields", roots=(raw,))


def test_prepare_unknown_format_and_unguessable_name(capsys, raw, tmp_path):
    (raw / "log.txt").write_text("1 10\n")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.txt"), "--format", "xml", "--out", str(tmp_path / "o")],
                  "xml", "uid-iid")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.txt"), "--out", str(tmp_path / "o")],
                  "--format", roots=(raw,))


def test_prepare_directory_as_source(capsys, raw, tmp_path):
    fails_cleanly(capsys, ["data", "prepare", str(raw), "--out", str(tmp_path / "o")], str(raw),
                  "holds no Parquet part files")


def test_semicolon_csv_gets_a_delimiter_hint_and_delimiter_works(capsys, raw, tmp_path):
    (raw / "log.csv").write_text("user;item;time\n1;10;5\n1;11;6\n2;10;7\n")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.csv"), "--user-col", "user", "--item-col", "item",
                           "--out", str(tmp_path / "o")], "no column 'user'", "--delimiter ';'", roots=(raw,))
    assert main(["data", "prepare", str(raw / "log.csv"), "--user-col", "user", "--item-col", "item",
                 "--time-col", "time", "--delimiter", ";", "--out", str(tmp_path / "o")]) == 0
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.csv"), "--delimiter", ";;", "--user-col", "user",
                           "--item-col", "item", "--out", str(tmp_path / "o2")], "--delimiter", "one character")


def test_integer_ids_asked_for_but_text_found(capsys, raw, tmp_path):
    (raw / "log.txt").write_text("1 10\n1 B07X\n")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.txt"), "--format", "uid-iid", "--id-type", "int",
                           "--out", str(tmp_path / "o")], "item id 'B07X' is not an integer", "--id-type str")


@pytest.mark.parametrize("fmt, text", [("uid-iid", "user item\n1 10\n1 11\n2 10\n"),
                                       ("sequence", "user_id items\n1 10 11\n2 10 11\n")])
def test_header_line_is_skipped_with_a_warning(capsys, raw, tmp_path, fmt, text):
    # A header line must not turn into a user and an item (nor make every id a string) silently.
    (raw / "log.txt").write_text(text)
    capsys.readouterr()
    assert main(["data", "prepare", str(raw / "log.txt"), "--format", fmt, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert f"log.txt:1: skipped a header line '{text.splitlines()[0]}' (format {fmt} has none" in err
    dataset = SequenceDataset.load(tmp_path / "o")
    assert dataset.user_ids.tolist() == ["1", "2"] and dataset.item_ids.tolist() == ["10", "11"]
    assert any("skipped a header line" in w for w in dataset.manifest["warnings"])


@pytest.mark.parametrize("flag", ["--min-user-count", "--min-item-count"])
def test_prepare_negative_kcore(capsys, raw, tmp_path, flag):
    (raw / "log.txt").write_text("1 10\n")
    fails_cleanly(capsys, ["data", "prepare", str(raw / "log.txt"), "--format", "uid-iid", flag, "-1",
                           "--out", str(tmp_path / "o")], flag, "an integer >= 0")


def test_offline_download_suggests_from(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BAMREC_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BAMREC_MIRROR", raising=False)
    # A closed local port: the connection is refused at once, as on a machine without network.
    fails_cleanly(capsys, ["data", "prepare", "ml-1m", "--mirror", "http://127.0.0.1:9", "--out", str(tmp_path / "o"),
                           "--no-progress"], "--from PATH")


# --- data stats / export ----------------------------------------------------------------------


def test_stats_and_export_of_a_non_dataset(capsys, tmp_path, user_dir):
    fails_cleanly(capsys, ["data", "stats", str(tmp_path / "missing")], "not a prepared dataset")
    fails_cleanly(capsys, ["data", "export", str(user_dir / "data"), "--out", str(user_dir / "data" / "items.npy")],
                  "already exists", roots=(user_dir / "data",))


def test_stats_into_a_closed_pipe_exits_quietly(user_dir):
    # `bamrec data stats DIR | head`: the reader goes away; Unix tools exit quietly (no traceback).
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    process = subprocess.Popen([sys.executable, "-m", "bamrec.cli", "data", "stats", str(user_dir / "data")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # closed before bamrec writes anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) != 0
    assert err == "", err


def test_broken_pipe_in_process(capsys, user_dir, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["data", "stats", str(user_dir / "data")]) == 141
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


# --- train: options ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, form", [
    ("--cutoffs", "abc", "comma-separated positive integers like 10,20,50"),
    ("--cutoffs", "10,0", "comma-separated positive integers"),
    ("--seq-len", "0", "a positive integer"),
    ("--num-interests", "0", "a positive integer"),
    ("--num-interests", "2.5", "a positive integer"),
    ("--lr", "-0.1", "a positive number"),
    ("--lr", "nan", "a positive number"),
    ("--remi-beta", "-1", "a number >= 0"),
    ("--valid-users", "-5", "an integer >= 0"),
    ("--selection", "soft", "invalid choice"),
    ("--device", "gpu", "auto, cpu, cuda, cuda:N or mps"),
])
def test_train_option_out_of_range(capsys, user_dir, tmp_path, flag, value, form):
    line = fails_cleanly(capsys, ["train", "--data", str(user_dir / "data"), "--out", str(tmp_path / "r"), *FLAGS,
                                  flag, value], f"argument {flag}", form, roots=(user_dir / "data",))
    assert line.startswith("bamrec train: error:")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("device, message", [("cuda:7", "cuda:7"), ("mps", "mps")])
def test_train_on_a_device_this_machine_lacks(capsys, user_dir, tmp_path, device, message):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    fails_cleanly(capsys, ["train", "--data", str(user_dir / "data"), "--out", str(tmp_path / "r"), *FLAGS,
                           "--device", device], message, "--device cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text, needles", [
    ('[eval]\ncutoffs = "10,20"\n', ("eval.cutoffs", "a list of positive integers like [10, 20, 50]")),
    ("[model]\nnum_interests = 2.7\n", ("model.num_interests must be a positive integer, got 2.7",)),
    ("[train]\nselection = 3\n", ("train.selection must be one of hard, bam-p, bam-l, got 3",)),
    ('[train]\nmulti_loss = "true"\n', ("train.multi_loss must be true or false, got 'true'",)),
    ('lr = "1e-3"\n', ("train.lr must be a positive number, got the string '1e-3'",)),
    ("[model]\nseq_len = 0\n", ("model.seq_len must be a positive integer, got 0",)),
    ('device = "gpu"\n', ("train.device must be one of auto, cpu",)),
    ("data = 5\n", ("data must be the path of a prepared dataset",)),
    ("[train]\nlerning_rate = 0.1\n", ("unknown option 'lerning_rate'",)),
    ("model = [\n", ("cannot parse config file",)),
])
def test_config_file_values_of_the_wrong_type(capsys, user_dir, tmp_path, text, needles):
    config = tmp_path / "run.toml"
    config.write_text(text)
    fails_cleanly(capsys, ["train", "--config", str(config), "--data", str(user_dir / "data"), "--out",
                           str(tmp_path / "r"), "--max-iters", "20", "--eval-every", "20", "--no-progress"],
                  *needles, roots=(config, user_dir / "data"))
    assert not (tmp_path / "r").exists()


def test_train_on_a_missing_or_empty_dataset(capsys, tmp_path):
    fails_cleanly(capsys, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), *FLAGS],
                  "not a prepared dataset")
    (tmp_path / "empty").mkdir()
    fails_cleanly(capsys, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), *FLAGS],
                  "not a prepared dataset")


def test_remi_beta_zero_stays_zero_and_help_shows_the_preset(capsys, user_dir, tmp_path):
    # 0 is a value (off), not "the preset", and --help states the model-dependent default.
    assert main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--remi-beta REMI_BETA (default: 0.01 with --model remi, else 0 = off)" in help_text
    out = tmp_path / "remi"
    flags = [f for f in FLAGS if f not in ("40", "--max-iters")] + ["--max-iters", "20"]
    assert main(["train", "--data", str(user_dir / "data"), "--model", "remi", "--remi-beta", "0", "--out",
                 str(out), *flags]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]["train"]
    assert saved["remi_beta"] == 0.0 and saved["remi_lambda"] == 100.0


# --- evaluate / recommend / report on a run ---------------------------------------------------


def test_evaluate_on_another_dataset(capsys, user_dir):
    fails_cleanly(capsys, ["evaluate", str(user_dir / "run"), "--data", str(user_dir / "other-data")],
                  "is not the one run", roots=(user_dir,))


def test_corrupted_or_truncated_weights(capsys, user_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(user_dir / "run", run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    fails_cleanly(capsys, ["evaluate", str(run)], "model.safetensors is damaged", roots=(run,))
    weights.write_bytes(b"\x00" * 64)  # garbage
    fails_cleanly(capsys, ["recommend", str(run), "--user", "1"], "model.safetensors is damaged", roots=(run,))


def test_evaluate_and_recommend_options(capsys, user_dir, tmp_path):
    run = str(user_dir / "run")
    roots = (user_dir,)
    fails_cleanly(capsys, ["evaluate", str(tmp_path / "missing")], "does not exist")
    (tmp_path / "empty").mkdir()
    fails_cleanly(capsys, ["evaluate", str(tmp_path / "empty")], "not a bamrec run directory")
    fails_cleanly(capsys, ["evaluate", run, "--cutoffs", "0"], "argument --cutoffs", roots=roots)
    fails_cleanly(capsys, ["evaluate", run, "--device", "gpu"], "argument --device", roots=roots)
    fails_cleanly(capsys, ["recommend", run, "--user", "1", "-k", "0"], "argument -k", "a positive integer",
                  roots=roots)
    fails_cleanly(capsys, ["recommend", run, "--user", "nobody"], "'nobody'", roots=roots)
    fails_cleanly(capsys, ["recommend", run, "--items", "999"], "unknown item id", roots=roots)
    fails_cleanly(capsys, ["report", run, "--cutoff", "0", "--out", str(tmp_path / "rep")], "argument --cutoff")
    fails_cleanly(capsys, ["report", str(tmp_path / "missing")], "does not exist")


def test_evaluate_labels_diagnostics_with_where_they_come_from(capsys, user_dir):
    # The diagnostics' labels follow --protocol and --split.
    capsys.readouterr()
    assert main(["evaluate", str(user_dir / "run"), "--protocol", "reference", "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid (") and "reference protocol" in out.splitlines()[0]
    heading = next(line for line in out.splitlines() if line.startswith("interest balance"))
    assert "computed after training on the test split, standard protocol" in heading
    assert "not this evaluation's valid split, reference protocol" in heading


def test_import_reference_of_a_non_checkpoint(capsys, user_dir, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    fails_cleanly(capsys, ["import-reference", str(bad), "--data", str(user_dir / "data"), "--out", str(tmp_path / "r")],
                  "cannot read", roots=(bad,))
    fails_cleanly(capsys, ["import-reference", str(bad), "--data", str(user_dir / "data"), "--seq-len", "0",
                           "--out", str(tmp_path / "r")], "argument --seq-len")


# --- resume -----------------------------------------------------------------------------------


def test_interrupted_training_resumed_with_other_options(capsys, user_dir, interrupted_run):
    fails_cleanly(capsys, ["train", "--data", str(user_dir / "data"), "--out", str(interrupted_run), "--resume",
                           *FLAGS, "--lr", "0.5"], "cannot resume", "options differ", roots=(interrupted_run,))
    fails_cleanly(capsys, ["train", "--data", str(user_dir / "other-data"), "--out", str(interrupted_run), "--resume",
                           *FLAGS], "cannot resume", "another dataset", roots=(interrupted_run,))


def test_interrupted_training_resumes(capsys, user_dir, interrupted_run):
    assert main(["train", "--data", str(user_dir / "data"), "--out", str(interrupted_run), "--resume", *FLAGS]) == 0
    summary = json.loads((interrupted_run / "summary.json").read_text())
    assert summary["iters"] == 40


# --- siblings: other damaged files ------------------------------------------------------------


@pytest.mark.parametrize("name, needle", [("config.json", "config.json is damaged"),
                                          ("item_map.json", "item_map.json is damaged")])
def test_damaged_run_files(capsys, user_dir, tmp_path, name, needle):
    run = tmp_path / "run"
    shutil.copytree(user_dir / "run", run)
    (run / name).write_text('{"format": "bamrec-run/1", "con')  # cut off mid-write
    fails_cleanly(capsys, ["evaluate", str(run)], needle, roots=(run,))


@pytest.mark.parametrize("name, needle", [("items.npy", "items.npy is damaged"),
                                          ("manifest.json", "manifest.json is damaged")])
def test_damaged_prepared_dataset(capsys, user_dir, tmp_path, name, needle):
    data = tmp_path / "data"
    shutil.copytree(user_dir / "data", data)
    (data / name).write_bytes((data / name).read_bytes()[:20])
    fails_cleanly(capsys, ["data", "stats", str(data)], needle, roots=(data,))
    fails_cleanly(capsys, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *FLAGS], needle, roots=(data,))


@pytest.mark.parametrize("argv, needle", [
    (["serve", "RUN", "--port", "70000"], "argument --port: expected a port number from 0 to 65535"),
    (["serve", "RUN", "--max-k", "0"], "argument --max-k: expected a positive integer"),
    (["export", "RUN", "--out", "x", "--device", "gpu"], "argument --device"),
    (["export", "RUN", "--out", "x", "--hnsw-m", "-1"], "argument --hnsw-m: expected a positive integer"),
    (["experiment", "x.toml", "--jobs", "0"], "argument --jobs: expected a positive integer"),
    (["data", "synthetic", "--out", "x", "--users", "many"], "argument --users"),
])
def test_other_commands_options(capsys, user_dir, argv, needle):
    argv = [str(user_dir / "run") if a == "RUN" else a for a in argv]
    fails_cleanly(capsys, argv, needle, roots=(user_dir,))
