from pathlib import Path

import optuna
import pytest

from pipeline.core.config import MAX_DEPTH, TrainConfig
from pipeline.core.recipes import RECIPES
from pipeline.core.training import train
from pipeline.tuning.space import SpaceError, load_space
from tests.conftest import ROOT

LR = "lr: {type: float, low: 0.02, high: 0.4, log: true}"

SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))


MODEL = {
    "fcn.yaml": "fcn",
    "fcn_study.yaml": "fcn",
    "cnn.yaml": "fast_cnn",
    "study_cnn.yaml": "study_cnn",
}
STUDY_SPACES = [p for p in SPACES if p.name in ("fcn_study.yaml", "study_cnn.yaml")]


def test_the_shipped_spaces_exist():
    assert {p.name for p in SPACES} >= set(MODEL)


@pytest.mark.parametrize(
    "path", [*STUDY_SPACES, ROOT / "search_spaces/fcn.yaml"], ids=lambda p: p.name
)
def test_the_spaces_search_the_study_knobs(path):
    space = load_space(path)
    assert {"lr", "optimizer", "dropout", "init", "batch_norm"} <= set(space.searched)
    lr = next(p for p in space.params if p.name == "lr")
    assert lr.spec["log"] is True


@pytest.mark.parametrize("path", STUDY_SPACES, ids=lambda p: p.name)
def test_the_study_spaces_cover_every_optimizer_of_the_study(path):
    optimizers = next(p for p in load_space(path).params if p.name == "optimizer").spec["choices"]
    assert set(optimizers) == {"sgd", "momentum", "rmsprop", "adam", "adamw"}


def test_the_default_fcn_space_is_the_study_space_narrowed():
    """fcn.yaml keeps fcn_study.yaml's params (narrower bounds and choices, or fixed by itself or
    by its recipe to a value the study space allows) and its modern start points (docs/studies.md,
    "Search that earns its keep")."""
    default = load_space(ROOT / "search_spaces/fcn.yaml")
    study = load_space(ROOT / "search_spaces/fcn_study.yaml")
    narrowed = {p.name: p for p in default.params}
    recipe = RECIPES[default.recipe]
    for wide in study.params:
        p, spec = narrowed.get(wide.name), wide.spec
        if p is None:  # the recipe's value
            value = getattr(recipe, wide.name)
            assert (
                value in spec["choices"] if wide.kind == "categorical" else spec["value"] == value
            )
        elif p.kind == "float":
            assert spec["low"] <= p.spec["low"] < p.spec["high"] <= spec["high"]
        elif p.kind == "categorical":
            assert set(p.spec["choices"]) < set(spec["choices"]) or p.spec == spec
        elif p.kind == "layers":
            assert p.spec["depth"] == spec["depth"]
            assert (
                spec["width"]["low"]
                <= p.spec["width"]["low"]
                <= p.spec["width"]["high"]
                <= spec["width"]["high"]
            )
        elif p.kind == "fixed" and wide.kind == "categorical":
            assert p.spec["value"] in spec["choices"]
    assert set(narrowed) <= {p.name for p in study.params}
    study_starts = [{k: v for k, v in s.items() if k != "schedule"} for s in study.enqueue]
    assert default.enqueue and all(start in study_starts for start in default.enqueue)


def test_the_fcn_space_searches_depth_and_widths():
    hidden = next(
        p for p in load_space(ROOT / "search_spaces/fcn.yaml").params if p.name == "hidden"
    )
    assert hidden.kind == "layers" and hidden.spec["depth"][1] > hidden.spec["depth"][0]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_sampled_config_trains_for_a_step(path, tiny_data):
    space = load_space(path)
    model = MODEL.get(path.name, "fcn")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        config = space.sample(study.ask(), model=model, epochs=1, seed=0)
        assert isinstance(config, TrainConfig)
        assert config.model in space.families if space.families else config.model == model
        assert config.epochs == 1  # tune's --epochs caps a family's own epochs
        result = train(config, tiny_data)  # batch sizes above 64 train one batch of 64
        assert len(result.history) == 1


@pytest.mark.parametrize(
    "name, recipe, first",
    [("cnn.yaml", "fast_cnn", True), ("fcn.yaml", "wide_fcn", False)],
)
def test_a_space_takes_what_it_does_not_search_from_its_recipe(name, recipe, first):
    """cnn.yaml is fast_cnn around it: it names the recipe instead of copying it, fixes nothing
    itself, and starts from the recipe by name; fcn.yaml ends its start points with wide_fcn
    (docs/training.md: `tune --epochs 40` trains it among its starts)."""
    space = load_space(ROOT / "search_spaces" / name)
    text = (ROOT / "search_spaces" / name).read_text()
    assert space.recipe == recipe and f"recipe: {recipe}\n" in text
    assert all(p.kind != "fixed" for p in space.params)  # no copy of the recipe's values
    assert f"  - {recipe}\n" in text
    start = space.enqueue[0 if first else -1]
    expected = RECIPES[recipe]
    trial = optuna.trial.FixedTrial(start)
    assert space.sample(trial, model=expected.model, epochs=expected.epochs, seed=0) == expected
    # a trial TPE samples differs from the recipe only in what the space searches
    sampled = space.sample(
        optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask(),
        model=expected.model,
        epochs=expected.epochs,
        seed=0,
    )
    differ = {f for f in TrainConfig.fields() if getattr(sampled, f) != getattr(expected, f)}
    assert differ and differ <= set(space.searched)


def test_the_study_cnn_space_takes_its_batch_from_the_study_cnn_recipe():
    space = load_space(ROOT / "search_spaces/study_cnn.yaml")
    assert space.recipe == "study_cnn" and "batch_size" not in {p.name for p in space.params}
    start = optuna.trial.FixedTrial({**space.enqueue[1], "weight_decay": 1e-4})
    config = space.sample(start, model="study_cnn", epochs=10, seed=0)
    assert config.batch_size == RECIPES["study_cnn"].batch_size


BAD = {
    "unknown type": ("lr: {type: floaty, low: 0.1, high: 1}", "lr: unknown type 'floaty'"),
    # Optuna's distributions say what is wrong with the bounds
    "low > high": (
        "lr: {type: float, low: 0.1, high: 0.01}",
        "lr: `low <= high` must hold, but got (low=0.1, high=0.01)",
    ),
    "log with low 0": (
        "weight_decay: {type: float, low: 0, high: 0.1, log: true}",
        "weight_decay: `low > 0` must hold for `log=True`",
    ),
    "step with log": (
        "lr: {type: float, low: 0.01, high: 0.1, log: true, step: 0.01}",
        "lr: The parameter `step` is not supported when `log` is true",
    ),
    "negative step": (
        "batch_size: {type: int, low: 64, high: 512, step: -64}",
        "batch_size: `step > 0` must hold, but got step=-64",
    ),
    "range not a whole number of steps": (
        "batch_size: {type: int, low: 64, high: 500, step: 128}",
        "batch_size: high - low is not a multiple of step 128; make it one",
    ),
    "int log from 0": (
        "max_shift: {type: int, low: 0, high: 2, log: true}",
        "max_shift: `low >= 1` must hold for `log=True`",
    ),
    "lr of 0": (
        "lr: {type: float, low: 0, high: 0.1, log: true}",
        "lr: value 0 is invalid: lr: 0 must be a number > 0",
    ),
    "unknown parameter": ("lrr: {type: float, low: 0.1, high: 1}", "lrr: unknown parameter"),
    "set by tune": ("epochs: {type: int, low: 1, high: 5}", "epochs: is set by tune"),
    "empty choices": (
        "optimizer: {type: categorical, choices: []}",
        "optimizer: The `choices` must contain one or more elements",
    ),
    "bad choice": (
        "optimizer: {type: categorical, choices: [sgd, lbfgs]}",
        "optimizer: value 'lbfgs' is invalid",
    ),
    "bad YAML": ("lr: {type: float, low: 0.1\nhigh", "not valid YAML at line"),
    "not a mapping": ("- lr\n- dropout", "must be a non-empty mapping"),
    "unknown key": ("lr: {type: float, low: 0.1, high: 1, lg: true}", "lr: unknown key(s) lg"),
    "out of range": (
        "dropout: {type: float, low: 0.0, high: 1.5}",
        "dropout: value 1.5 is invalid",
    ),
    "int bounds": (
        "batch_size: {type: int, low: 64.5, high: 512}",
        "batch_size: low must be an integer",
    ),
    "layers depth": (
        "hidden: {type: layers, depth: [0, 2], width: {low: 8, high: 64}}",
        "hidden: depth must be [low, high]",
    ),
    "layers deeper than train allows": (
        f"hidden: {{type: layers, depth: [1, {MAX_DEPTH + 1}], width: {{low: 8, high: 64}}}}",
        f"hidden: depth must be [low, high] with integers 1 <= low <= high <= {MAX_DEPTH}",
    ),
    "layers depth reversed": (
        "hidden: {type: layers, depth: [3, 2], width: {low: 8, high: 64}}",
        "hidden: depth: `low <= high` must hold",
    ),
    "searches nothing": ("lr: 0.1", "searches nothing"),
    # trials are selected on val: none may train on it (train --holdout false may)
    "no held-out split": (
        "lr: {type: float, low: 0.1, high: 1}\nholdout: false",
        "holdout: tune selects on the validation split",
    ),
    "no held-out split in a family": (
        "model:\n  fcn: {epochs: 2, holdout: false}\n  fast_cnn: {epochs: 2}",
        "model: fcn: holdout: tune selects on the validation split",
    ),
    "fixed without value": ("lr: {type: fixed}", "lr: a fixed parameter needs a value"),
    # model families (the frontier)
    "model as a value": (
        "model: fcn\nlr: {type: float, low: 0.1, high: 1}",
        "model: is set by tune (--model), unless it maps model families",
    ),
    "unknown family": ("model:\n  resnet: {epochs: 2}", "model: unknown family 'resnet'"),
    "family without epochs": (
        "model:\n  fcn: {lr: 0.1}\n  fast_cnn: {epochs: 2}",
        "model: fcn: must map its parameters, its epochs among them",
    ),
    "family param unknown": (
        "model:\n  fcn: {epochs: 2, lrr: 0.1}\n  fast_cnn: {epochs: 2}",
        "model: fcn: lrr: unknown parameter",
    ),
    "epochs as a float": (
        "model:\n  fcn: {epochs: {type: float, low: 1, high: 2}}",
        "model: fcn: epochs: type float cannot give a number of epochs",
    ),
    "hidden in a cnn": (
        "model:\n  fcn: {epochs: 2}\n  fast_cnn: {epochs: 2, hidden: 64}",
        "model: fast_cnn: searches hidden, which fast_cnn ignores",
    ),
    "shared and own": (
        "lr: 0.1\nmodel:\n  fcn: {epochs: 2, lr: 0.2}\n  fast_cnn: {epochs: 2}",
        "model: fcn: lr is also given outside `model`",
    ),
    "start without family": (
        "model:\n  fcn: {epochs: 2}\n  fast_cnn: {epochs: 2}\nenqueue:\n  - {epochs: 2}",
        "enqueue #1: model: None is not one of this space's families",
    ),
    "start outside family": (
        "model:\n  fcn: {epochs: {type: int, low: 1, high: 3}}\n"
        "  fast_cnn: {epochs: 2}\nenqueue:\n  - {model: fcn, epochs: 9}",
        "enqueue #1: epochs: 9 is outside the space",
    ),
    # recipes by name
    "unknown recipe": (f"recipe: fast\n{LR}", "recipe: 'fast' is not one of study_fcn, study_cnn"),
    "recipe beside families": (
        "recipe: fast_cnn\nmodel:\n  fcn: {epochs: 2}\n  fast_cnn: {epochs: 2}",
        "recipe: with model families, give each family its recipe",
    ),
    "a family's recipe of another model": (
        "model:\n  fcn: {epochs: 2, recipe: fast_cnn}\n  fast_cnn: {epochs: 2}",
        "model: fcn: recipe: fast_cnn is not a fcn",
    ),
    "start from an unknown recipe": (
        f"recipe: fast_cnn\n{LR}\nenqueue: [fast]",
        "enqueue #1: 'fast' is not one of study_fcn",
    ),
    "start from a recipe the space does not name": (
        f"{LR}\nenqueue: [fast_cnn]",
        "enqueue #1: fast_cnn: starts only a space whose own recipe: is a fast_cnn",
    ),
    "start from a recipe outside the space": (
        "recipe: fast_cnn\nlr: {type: float, low: 0.2, high: 0.4}\nenqueue: [fast_cnn]",
        "enqueue #1: fast_cnn: lr: 0.1 is outside the space",
    ),
    "start from a recipe the space changes": (
        f"recipe: fast_cnn\n{LR}\nwhiten: false\nenqueue: [fast_cnn]",
        "enqueue #1: fast_cnn: its trial would have whiten False, not the recipe's True",
    ),
    "start from a recipe with other epochs": (
        "model:\n  fcn: {epochs: 2}\n  fast_cnn: {recipe: fast_cnn, epochs: 2}\n"
        "enqueue: [fast_cnn]",
        "enqueue #1: fast_cnn: its trial would have epochs 2, not the recipe's 10",
    ),
    "start of another family's recipe": (
        "model:\n  fcn: {epochs: 2}\n  study_cnn: {epochs: 2}\nenqueue: [fast_cnn]",
        "enqueue #1: fast_cnn: model: 'fast_cnn' is not one of this space's families",
    ),
    "recipe not a name": (f"recipe: [fast_cnn]\n{LR}", "recipe: ['fast_cnn'] is not one of"),
    "a start's family not a name": (
        "model:\n  fcn: {epochs: 2}\n  fast_cnn: {epochs: 2}\nenqueue:\n  - {model: [fcn]}",
        "enqueue #1: model: ['fcn'] is not one of this space's families",
    ),
    "start neither a name nor a mapping": (
        f"{LR}\nenqueue: [3]",
        "enqueue #1: must be a recipe's name or a mapping",
    ),
}


HUGE = "9" * 400  # a finite YAML integer no float holds
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
    for a, b in zip("abcdefgh", "bcdefghi")
)  # 346 bytes that PyYAML would expand to 9**9 strings
STRICT = {
    # no number of a space is infinite or NaN, wherever it is
    "step .inf": (
        "lr: {type: float, low: 0.02, high: 0.4, step: .inf}",
        "line 1: '.inf' is not a finite number",
    ),
    "low .nan": ("dropout: {type: float, low: .NaN, high: 0.2}", "line 1: '.NaN' is not a finite"),
    "-inf in an enqueue entry": (
        f"{LR}\nenqueue:\n  - {{lr: -.inf}}",
        "line 3: '-.inf' is not a finite number",
    ),
    "inf among choices": (
        "dropout: {type: categorical, choices: [0.1, .Inf]}",
        "line 1: '.Inf' is not a finite number",
    ),
    "huge int as a float bound": (
        f"lr: {{type: float, low: 0.02, high: {HUGE}}}",
        "lr: high must be a finite number, got 9999999999999999",
    ),
    "huge int as a fixed value": (
        f"{LR}\nweight_decay: {HUGE}",
        "weight_decay: value 9999999999999999",
    ),
    "huge int step": (
        f"batch_size: {{type: int, low: 64, high: 512, step: {HUGE}}}",
        "batch_size: high - low is not a multiple of step 999999",
    ),
    "huge int start": (f"{LR}\nenqueue:\n  - {{lr: {HUGE}}}", "enqueue #1: lr: 99999"),
    # YAML would keep the last of two equal keys
    "a parameter twice": (f"{LR}\n{LR}", "line 2: 'lr' is given twice; give it once"),
    "a bound twice": (
        "lr: {type: float, low: 0.02, low: 0.03, high: 0.4}",
        "line 1: 'low' is given twice",
    ),
    "a key twice in an enqueue entry": (
        f"{LR}\nenqueue:\n  - {{lr: 0.1, lr: 0.2}}",
        "line 3: 'lr' is given twice",
    ),
    "a family twice": (
        "model:\n  fcn: {epochs: 2}\n  fcn: {epochs: 3}",
        "line 3: 'fcn' is given twice",
    ),
    # aliases: refused where they are used, before anything expands
    "an alias": ("lr: &s {type: float, low: 0.02, high: 0.4}\ndropout: *s", "line 2: an alias"),
    "nested aliases (a bomb)": (BOMB, "line 2: an alias (*name) is not allowed"),
    "an alias in an enqueue entry": (
        f"{LR}\nenqueue:\n  - &one {{lr: 0.1}}\n  - *one",
        "line 4: an alias",
    ),
    # whatever the file holds, the line quotes it short
    "a huge string": ("optimizer: " + "x" * 100_000, "optimizer: value 'xxxxx"),
    "a long key": ("x" * 1000 + ": 1", "broken.yaml: 'xxxxxxx"),  # PyYAML's longest
    "a huge list": (
        "optimizer: {type: categorical, choices: [" + ", ".join(["sgd"] * 10_000) + "]}",
        "optimizer: choices repeat a value",
    ),
    "deep nesting": ("lr: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
}


@pytest.mark.parametrize("case", [*BAD, *STRICT])
def test_a_malformed_space_is_one_short_line_naming_file_and_key(case, tmp_path):
    text, message = {**BAD, **STRICT}[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text + "\n")
    with pytest.raises(SpaceError) as e:
        load_space(path)
    line = str(e.value)
    assert line.startswith("broken.yaml: ") and message in line, line
    assert "\n" not in line and len(line) <= 300


def test_a_missing_space_file_is_an_error(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(Path(tmp_path / "nope.yaml"))


def test_enqueued_configs_become_optuna_params(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n"
        "optimizer: {type: categorical, choices: [sgd, adam]}\n"
        "hidden: {type: layers, depth: [1, 3], width: {low: 16, high: 512}}\n"
        "enqueue:\n  - {optimizer: adam, lr: 1.0e-3, hidden: [300, 200]}\n  - {lr: 0.05}\n"
    )
    space = load_space(path)
    assert space.enqueue == (
        {"optimizer": "adam", "lr": 1e-3, "n_layers": 2, "width_1": 300, "width_2": 200},
        {"lr": 0.05},
    )
    study = optuna.create_study()
    study.enqueue_trial(space.enqueue[0])
    config = space.sample(study.ask(), model="fcn", epochs=1, seed=0)
    assert (config.optimizer, config.lr, config.hidden) == ("adam", 1e-3, (300, 200))


@pytest.mark.parametrize(
    "start, message",
    [
        ("{lr: 5.0}", "enqueue #1: lr: 5.0 is outside the space"),
        ("{momentum: 0.9}", "enqueue #1: momentum is not a searched parameter"),
        ("{hidden: [300, 200, 100, 50]}", "enqueue #1: hidden: [300, 200, 100, 50] is outside"),
        ("{optimizer: lbfgs}", "enqueue #1: optimizer: 'lbfgs' is outside the space"),
    ],
)
def test_a_bad_enqueued_config_is_one_line(start, message, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n"
        "optimizer: {type: categorical, choices: [sgd, adam]}\n"
        "hidden: {type: layers, depth: [1, 3], width: {low: 16, high: 512}}\n"
        f"enqueue:\n  - {start}\n"
    )
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value).startswith("s.yaml: " + message.split(":")[0])
    assert message in str(e.value)
