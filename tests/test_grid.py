"""Grids in study files and KEY=VALUE overrides: expansion, names, exclusion, baseline, typing, one line per mistake,
and that adding a value to a grid trains only the new cells."""

from __future__ import annotations

import json
import sqlite3

import pytest
from studies import run_cli

from nnstudy.config import load_study, parse_study
from nnstudy.errors import UserError

BASE = """name = "g"
seeds = [0, 1]
[dataset]
name = "digits"
subset = 200
test_subset = 60
[model]
kind = "mlp"
hidden = [12]
[train]
lr = 0.05
batch_size = 32
epochs = 1
"""

GRID = BASE + """[grid]
"model.activation" = ["relu", "sigmoid"]
model.init = ["default", "xavier"]
"""


def write(tmp_path, text: str, name: str = "g.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line(*argv) -> str:
    rc, _, err = run_cli(*argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("nnstudy: error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- expansion


def test_grid_is_the_product_named_by_values(tmp_path):
    study = load_study(str(write(tmp_path, GRID)))
    assert list(study.variants) == ["relu-default", "relu-xavier", "sigmoid-default", "sigmoid-xavier"]
    assert study.baseline_name == "relu-default"  # the first cell, when nothing says otherwise
    assert study.variants["sigmoid-xavier"].model.activation == "sigmoid"
    assert study.variants["sigmoid-xavier"].model.init == "xavier"
    assert study.variants["relu-default"].model.hidden == [12]  # the base's settings under every cell
    assert study.grid.factors == {"model.activation": ["relu", "sigmoid"], "model.init": ["default", "xavier"]}
    assert study.grid.cells["relu-xavier"] == {"model.activation": "relu", "model.init": "xavier"}


def test_numbers_and_lists_carry_their_key_in_the_name():
    raw = {"name": "n", "dataset": {"name": "digits"}, "model": {"kind": "mlp"},
           "grid": {"train.lr": [0.1, 0.01], "model.hidden": [[16], [32, 16]], "train.nesterov": [True, False]}}
    names = list(parse_study(raw, "dict").variants)
    assert names[0] == "lr0.1-hidden16-nesterov"
    assert "lr0.01-hidden32x16-no-nesterov" in names and len(names) == 8


def test_exclude_by_name_and_by_coordinates_and_hand_written_variants_beside(tmp_path):
    text = BASE + """baseline_placeholder = 0
[variants.wide]
model.hidden = [64]
[grid]
"model.activation" = ["relu", "sigmoid", "tanh"]
"model.init" = ["default", "xavier"]
exclude = ["tanh-default", { "model.activation" = "sigmoid", "model.init" = "xavier" }]
""".replace("baseline_placeholder = 0\n", "")
    text = text.replace('name = "g"\n', 'name = "g"\nbaseline = "relu-xavier"\n')
    study = load_study(str(write(tmp_path, text)))
    assert list(study.variants) == ["wide", "relu-default", "relu-xavier", "sigmoid-default", "tanh-xavier"]
    assert study.baseline_name == "relu-xavier"
    assert "wide" not in study.grid.cells


def test_a_cell_is_the_same_run_as_the_hand_written_variant(tmp_path):
    from nnstudy.config import config_hash

    by_hand = load_study(str(write(tmp_path, BASE + '[variants.x]\nmodel.activation = "sigmoid"\n'
                                                      'model.init = "xavier"\n', "h.toml")))
    grid = load_study(str(write(tmp_path, GRID)))
    assert config_hash(grid.variants["sigmoid-xavier"], 0, "f") == config_hash(by_hand.variants["x"], 0, "f")


# ---------------------------------------------------------------- overrides


def test_overrides_typed_as_toml_and_recorded(tmp_path):
    path = write(tmp_path, BASE + "[variants.a]\n[variants.b]\nmodel.norm = \"batch\"\n")
    study = load_study(str(path), {"settings": ["train.lr=0.2", "train.nesterov=true", "model.hidden=24,12",
                                                "variants.b.model.dropout=0.5", "seeds=3,4,5",
                                                "model.args.depth=3"]})
    a, b = study.variants["a"], study.variants["b"]
    assert a.model.args == {"depth": 3}
    assert a.train.lr == 0.2 and b.train.lr == 0.2 and a.train.nesterov is True
    assert a.model.hidden == [24, 12] and b.model.dropout == 0.5 and a.model.dropout == 0.0
    assert study.seeds == [3, 4, 5]
    assert study.overrides == ["train.lr=0.2", "train.nesterov=true", "model.hidden=24,12",
                               "variants.b.model.dropout=0.5", "seeds=3,4,5", "model.args.depth=3"]


def test_a_comma_list_makes_extends_or_replaces_a_grid(tmp_path):
    plain = load_study(str(write(tmp_path, BASE)), {"settings": ["model.activation=relu,tanh"]})
    assert list(plain.variants) == ["relu", "tanh"]
    extended = load_study(str(write(tmp_path, GRID)), {"settings": ["train.lr=0.1,0.05"]})
    assert "sigmoid-xavier-lr0.05" in extended.variants and len(extended.variants) == 8
    replaced = load_study(str(write(tmp_path, GRID)), {"settings": ["model.activation=tanh,relu"]})
    assert list(replaced.variants) == ["tanh-default", "tanh-xavier", "relu-default", "relu-xavier"]
    lists = load_study(str(write(tmp_path, BASE)), {"settings": ["model.hidden=[8],[16,8]"]})
    assert list(lists.variants) == ["hidden8", "hidden16x8"]


def test_init_writes_the_overrides_in(tmp_path):
    target = tmp_path / "q.toml"
    rc, _, err = run_cli("init", "quickstart", target, "train.epochs=3", "model.dropout=0.1,0.2")
    assert rc == 0, err
    study = load_study(str(target))
    assert study.overrides == ["train.epochs=3", "model.dropout=0.1,0.2"]
    assert all(v.train.epochs == 3 for v in study.variants.values())
    assert study.grid.factors == {"model.dropout": [0.1, 0.2]}
    assert "[variants.mlp]" in target.read_text()  # the file's own tables and comments stay


# ---------------------------------------------------------------- one line per mistake


BAD_FILE_GRIDS = [
    ('"model.activation" = []', "non-empty list"),
    ('"model.activaton" = ["relu"]', "did you mean 'model.activation'"),
    ('"train.lr" = ["fast", 0.1]', "train.lr = 'fast'"),
    ('"model.activation" = ["relu", "swish"]', "not a known activation"),
    ('"dataset.name" = ["digits", "mnist"]', "dataset.name cannot vary"),
    ('seeds = [[0], [1]]', "seeds cannot vary"),
    ('"model.hidden" = [16, 32]', "grid over it lists lists"),
    ('"model.activation" = ["relu", "relu"]', "twice"),
    ('"train.lr" = [0.1, 0.01, 0.001]\n"train.momentum" = [0.0, 0.5, 0.9]\nmax_cells = 8', "max_cells = 9"),
    ('"model.activation" = ["relu"]\nexclude = ["tanh"]', "matches no cell"),
    ('"model.activation" = ["relu"]\nexclude = ["relu"]', "leaves no cell"),
    (('"model.activation" = ["relu", "tanh"]\n"model.init" = ["xavier"]\n"model.pool" = ["max"]\n'
      '"train.loss" = ["cross_entropy"]\n"model.kind" = ["mlp"]\n"model.norm" = ["none"]\n'
      '"model.hidden" = [[1111111111111111], [2222222222222222]]\n'
      '"train.schedule" = ["constant"]'), "not a usable folder name"),
]


@pytest.mark.parametrize("grid, message", BAD_FILE_GRIDS)
def test_bad_grid_in_a_file_is_one_line(tmp_path, grid, message):
    path = write(tmp_path, BASE + "[grid]\n" + grid + "\n")
    line = one_line("run", path, "--out", tmp_path / "out")
    assert message in line, line
    assert not (tmp_path / "out" / "nnstudy.db").exists()  # nothing written


def test_two_cells_with_one_name_and_a_cell_named_like_a_variant(tmp_path):
    out = tmp_path / "out"
    path = write(tmp_path, BASE + '[grid]\n"model.args" = [{a = "x y"}, {a = "x_y"}]\n')
    assert "two cells are named" in one_line("run", path, "--out", out)
    path = write(tmp_path, BASE + '[variants.relu]\n[grid]\n"model.activation" = ["relu", "tanh"]\n')
    assert "name of a variant written by hand" in one_line("run", path, "--out", out)
    assert not out.exists()


BAD_OVERRIDES = [
    (["train.lrr=0.1"], "did you mean 'train.lr'"),
    (["trian.lr=0.1"], "did you mean 'train.lr'"),
    (["train.lr=fast"], "train.lr = 'fast': Input should be a valid number"),
    (["train.epochs=2.5"], "valid integer"),
    (["model.activation="], "empty value"),
    (["model.activation=relu,,tanh"], "empty value"),
    (["model.activation=[]"], "empty list"),
    (["name=a,b"], "name cannot vary"),
    (["dataset.name=digits,mnist"], "dataset.name cannot vary"),
    (["claims=1"], "edit the study file"),
    (["model.activation=relu"], "is a grid setting"),
    (["variants.bb.model.norm=batch"], "did you mean 'b'"),
    (["model.norm=none"], "contradicts variant b"),
    (["variants.b.model.norm=batch,none"], "takes one value"),
    (["train.lr=0.1", "train.lr=0.2"], "already set"),
    (["model.init=default,xavier", "model.activation=relu,tanh", "grid.max_cells=3"], "max_cells = 4"),
    (["noequals"], None),
]


@pytest.mark.parametrize("settings, message", BAD_OVERRIDES)
def test_bad_override_is_one_line_and_nothing_is_written(tmp_path, settings, message):
    path = write(tmp_path, GRID if message == "is a grid setting" else
                 BASE + '[variants.a]\n[variants.b]\nmodel.norm = "batch"\n')
    out = tmp_path / "out"
    line = one_line("run", path, *settings, "--out", out)
    if message is None:  # a word without '=' after STUDY: argparse's own one line
        assert "unrecognized arguments: noequals" in line
    else:
        assert message in line and "override" in line, line
    assert not out.exists()


# ---------------------------------------------------------------- adding a value trains only the new cells


def _stored(out):
    with sqlite3.connect(out / "nnstudy.db") as conn:
        return {(v, s): (h, st) for v, s, h, st in
                conn.execute("SELECT variant, seed, config_hash, status FROM runs WHERE study='g'")}


@pytest.mark.slow  # two small studies trained in-process: about a minute on a busy 2-core machine
def test_adding_a_grid_value_trains_only_the_new_cells(tmp_path):
    path, out, cache = write(tmp_path, BASE), tmp_path / "out", tmp_path / "cache"
    args = ["run", path, "--out", out, "--cache-dir", cache, "--quiet", "--executor", "local", "--no-probes"]
    rc, _, err = run_cli(*args, "model.activation=relu,sigmoid")
    assert rc == 0, err
    first = _stored(out)
    assert sorted(first) == [("relu", 0), ("relu", 1), ("sigmoid", 0), ("sigmoid", 1)]
    rc, _, err = run_cli(*args, "model.activation=relu,sigmoid,tanh")
    assert rc == 0, err
    assert "6 runs; 4 already finished, 2 to train" in err
    second = _stored(out)
    assert {k: second[k] for k in first} == first  # same identities, not retrained
    assert second[("tanh", 0)][1] == "done"
    spec = json.loads(sqlite3.connect(out / "nnstudy.db").execute(
        "SELECT spec FROM studies WHERE name='g'").fetchone()[0])
    assert spec["grid"]["cells"]["tanh"] == {"model.activation": "tanh"}
    assert spec["overrides"] == ["model.activation=relu,sigmoid,tanh"]

    # A bad override on a study with results: one line, and every stored run as it was.
    assert "did you mean 'train.lr'" in one_line(*args, "model.activation=relu,sigmoid", "train.lrr=1")
    assert _stored(out) == second

    # Exports carry each cell's coordinates as a param (MLflow) and an hparam (TensorBoard).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from nnstudy.export.study import load_study_export

    params = {r.name: r.params for r in load_study_export(out, "g").runs}
    assert params["tanh/seed-1"]["grid.model.activation"] == "tanh"
    rc, _, err = run_cli("export", "g", "--to", "tensorboard", tmp_path / "tb", "--out", out)
    assert rc == 0, err
    acc = EventAccumulator(str(tmp_path / "tb" / "g" / "sigmoid" / "seed-0"))
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["grid.model.activation"].string_value == "sigmoid"


def test_api_takes_settings():
    import nnstudy

    study = nnstudy.load_study({"name": "d", "dataset": {"name": "digits"}, "model": {"kind": "mlp"}},
                               settings=["model.init=default,xavier"])
    assert study.variants == ["default", "xavier"]
    with pytest.raises(UserError, match="did you mean"):
        nnstudy.load_study({"name": "d", "dataset": {"name": "digits"}}, settings=["model.inti=xavier"])
