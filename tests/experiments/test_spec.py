"""Experiment files: grid expansion, cell ids, order, errors."""

from __future__ import annotations

import pytest

from bamrec.errors import ConfigError
from bamrec.experiments.spec import load_experiment, parse_experiment

ISSUE_EXAMPLE = '''
name = "tiny"
[grid]
data = ["prepared/planted"]
model = ["comirec-sa"]
selection = ["hard", "bam-p"]
seed = [1, 2]
[fixed]
max_iters = 300
seq_len = 30
[compare]
baseline = { selection = "hard" }
'''


def test_issue_example_expands_seed_by_seed(tmp_path):
    file = tmp_path / "tiny.toml"
    file.write_text(ISSUE_EXAMPLE)
    exp = load_experiment(file)
    assert exp.name == "tiny" and len(exp.cells) == 4
    assert [(c.options["selection"], c.seed) for c in exp.cells] == [("hard", 1), ("bam-p", 1), ("hard", 2),
                                                                     ("bam-p", 2)]
    first = exp.cells[0]
    assert first.options == {"data": "prepared/planted", "model": "comirec-sa", "selection": "hard", "seed": 1,
                             "max_iters": 300, "seq_len": 30}
    assert first.id.startswith("planted_comirec-sa_hard_s1-")
    assert first.config_key == exp.cells[2].config_key != exp.cells[1].config_key
    assert exp.baselines == ({"selection": "hard"},)
    assert load_experiment(file).cells == exp.cells  # ids are stable


def test_changing_a_fixed_option_changes_the_ids():
    a = parse_experiment({"name": "x", "grid": {"seed": [1]}, "fixed": {"max_iters": 10}})
    b = parse_experiment({"name": "x", "grid": {"seed": [1]}, "fixed": {"max_iters": 20}})
    c = parse_experiment({"name": "x", "grid": {"seed": [1]}, "fixed": {"max_iters": 10, "device": "cpu"}})
    assert a.cells[0].id != b.cells[0].id
    assert a.cells[0].id == c.cells[0].id  # the device says how a cell runs, not what it computes


def test_bundled_axis_values_and_sub_grids():
    exp = parse_experiment({
        "name": "study",
        "fixed": {"max_iters": 10},
        "grid": [
            {"data": "d/small", "model": ["mind"], "scheme": [
                {"selection": "hard"}, {"label": "bam-p+multi", "selection": "bam-p", "multi_loss": True}],
             "seed": [1, 2]},
            {"data": "d/big", "model": ["single", "mind"], "seq_len": 100, "seed": [1]},
        ],
    })
    assert len(exp.cells) == 6
    # every first seed before any second seed, file order within a seed
    assert [(c.dataset, c.method, c.seed) for c in exp.cells] == [
        ("small", "mind / selection=hard", 1), ("small", "mind / bam-p+multi", 1),
        ("big", "single", 1), ("big", "mind", 1),
        ("small", "mind / selection=hard", 2), ("small", "mind / bam-p+multi", 2)]
    bam = exp.cells[1]
    assert bam.options["multi_loss"] is True and bam.options["selection"] == "bam-p"
    assert exp.cells[3].options["seq_len"] == 100 and "seq_len" not in exp.cells[0].options


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "grid": {"lerning_rate": [0.1]}}, "unknown option(s) lerning_rate"),
    ({"name": "x", "grid": {"selection": ["soft"]}}, "invalid selection 'soft'"),
    ({"name": "x y", "grid": {}}, "`name` must be"),
    ({"name": "x", "grid": {"seed": []}}, "has no values"),
    ({"name": "x", "grid": {}, "fixd": {}}, "unknown key(s) fixd"),
    ({"name": "x", "grid": {}, "compare": {"baseline": {"selektion": "hard"}}}, "unknown option(s) selektion"),
])
def test_mistakes_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_experiment(data)
