from pathlib import Path

import optuna
import pytest

from pipeline.core.config import TrainConfig
from pipeline.core.training import train
from pipeline.tuning.space import SpaceError, load_space
from tests.conftest import ROOT

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
    """fcn.yaml keeps fcn_study.yaml's params (a fixed one or narrower bounds and choices) and
    its modern start points (docs/studies.md, "Search that earns its keep")."""
    default = load_space(ROOT / "search_spaces/fcn.yaml")
    study = load_space(ROOT / "search_spaces/fcn_study.yaml")
    narrowed = {p.name: p for p in default.params}
    assert set(narrowed) == {p.name for p in study.params}
    for wide in study.params:
        p, spec = narrowed[wide.name], wide.spec
        if p.kind == "float":
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


def test_the_cnn_space_starts_from_the_fast_recipe():
    from pipeline.core.recipes import FAST_CNN

    space = load_space(ROOT / "search_spaces/cnn.yaml")
    assert {"lr", "weight_decay", "label_smoothing", "max_shift", "dropout", "init"} <= set(
        space.searched
    )
    first = space.sample(
        optuna.trial.FixedTrial(space.enqueue[0]), model="fast_cnn", epochs=FAST_CNN.epochs, seed=0
    )
    assert first == FAST_CNN  # the YAML's first trial and the benchmark's recipe agree


def test_the_fcn_space_s_last_start_point_is_the_fcn_recipe_at_40_epochs():
    from pipeline.core.recipes import WIDE_FCN

    space = load_space(ROOT / "search_spaces/fcn.yaml")
    last = space.sample(
        optuna.trial.FixedTrial(space.enqueue[-1]), model="fcn", epochs=WIDE_FCN.epochs, seed=0
    )
    assert last == WIDE_FCN  # docs/training.md: `tune --epochs 40` trains it among its starts


BAD = {
    "unknown type": ("lr: {type: floaty, low: 0.1, high: 1}", "lr: unknown type 'floaty'"),
    "low > high": ("lr: {type: float, low: 0.1, high: 0.01}", "lr: low (0.1) is greater than high"),
    "log with low 0": (
        "lr: {type: float, low: 0, high: 0.1, log: true}",
        "lr: log scale needs low > 0",
    ),
    "unknown parameter": ("lrr: {type: float, low: 0.1, high: 1}", "lrr: unknown parameter"),
    "set by tune": ("epochs: {type: int, low: 1, high: 5}", "epochs: is set by tune"),
    "empty choices": (
        "optimizer: {type: categorical, choices: []}",
        "optimizer: choices must be a non-empty list",
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
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_malformed_space_is_one_line_naming_file_and_key(case, tmp_path):
    text, message = BAD[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text + "\n")
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value).startswith("broken.yaml: ") and message in str(e.value)
    assert "\n" not in str(e.value)


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
