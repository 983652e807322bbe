import re

import pytest

from pipeline.core.config import TrainConfig, parse_hidden
from pipeline.core.errors import ConfigError
from pipeline.core.options import parse_bool


def test_defaults_are_the_study_base_fcn():
    c = TrainConfig()
    assert (c.model, c.hidden, c.optimizer, c.lr, c.epochs, c.batch_size) == (
        "fcn",
        (300, 200),
        "sgd",
        0.02,
        50,
        512,
    )


@pytest.mark.parametrize(
    "text, sizes",
    [("300,200", (300, 200)), (" 64 , 32 ", (64, 32)), ([128], (128,)), ("16384", (16384,))],
)
def test_parse_hidden(text, sizes):
    assert parse_hidden(text) == sizes


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "hidden: '' is empty"),
        ([], "hidden: [] is empty"),
        ("300,,200", "hidden: '300,,200' has an empty entry"),
        ("300,", "hidden: '300,' has an empty entry"),
        ("16385", "hidden: '16385' is not a list of positive layer sizes up to 16384"),
        ("2.5", "hidden: '2.5' is not a list of positive layer sizes"),
        ([True], "hidden: [True] is not a list of positive layer sizes"),
    ],
)
def test_parse_hidden_refuses_what_would_not_be_meant(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_hidden(text)


@pytest.mark.parametrize(
    "value, expected", [("true", True), ("False", False), ("1", True), ("no", False), (True, True)]
)
def test_parse_bool(value, expected):
    assert parse_bool(value, "batch_norm") is expected


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"model": "resnet"}, "model: 'resnet' is not one of fcn, study_cnn, fast_cnn"),
        ({"optimizer": "lbfgs"}, "optimizer: 'lbfgs' is not one of sgd, momentum"),
        ({"init": "zeros"}, "init: 'zeros' is not one of default, normal"),
        ({"lr": 0.0}, "lr: 0.0 must be a number > 0"),
        ({"lr": float("nan")}, "lr: nan must be a number > 0"),
        ({"lr": float("inf")}, "lr: inf must be a number > 0"),
        ({"dropout": 1.0}, "dropout: 1.0 must be a number in [0, 1)"),
        ({"dropout": -0.1}, "dropout: -0.1 must be a number in [0, 1)"),
        ({"epochs": 0}, "epochs: 0 must be an integer from 1 to 10000"),
        ({"epochs": 10**20}, "epochs: 100000000000000000000 must be an integer from 1 to 10000"),
        ({"epochs": True}, "epochs: True must be an integer from 1 to 10000"),
        ({"batch_size": 2.5}, "batch_size: 2.5 must be an integer from 1 to 50000"),
        ({"batch_size": 50_001}, "batch_size: 50001 must be an integer from 1 to 50000"),
        ({"hidden": "300,x"}, "hidden: '300,x' is not a list of positive layer sizes"),
        ({"hidden": "300,0"}, "hidden: '300,0' is not a list of positive layer sizes"),
        ({"batch_norm": "maybe"}, "batch_norm: 'maybe' must be true or false"),
        ({"weight_decay": -1.0}, "weight_decay: -1.0 must be a number >= 0"),
        ({"seed": -3}, "seed: -3 must be an integer from 0 to 2147483647"),
        ({"schedule": "step"}, "schedule: 'step' is not one of constant, cosine, onecycle"),
        ({"label_smoothing": 1.0}, "label_smoothing: 1.0 must be a number in [0, 1)"),
        ({"label_smoothing": -0.1}, "label_smoothing: -0.1 must be a number in [0, 1)"),
        ({"augment": "sometimes"}, "augment: 'sometimes' must be true or false"),
        ({"max_shift": 9}, "max_shift: 9 must be an integer from 0 to 8"),
        ({"max_shift": -1}, "max_shift: -1 must be an integer from 0 to 8"),
        ({"max_shift": 1.5}, "max_shift: 1.5 must be an integer from 0 to 8"),
        ({"cutout": 29}, "cutout: 29 must be an integer from 0 to 28"),
        ({"ema": 1.0}, "ema: 1.0 must be a number in [0, 1)"),
        ({"ema": -0.5}, "ema: -0.5 must be a number in [0, 1)"),
        ({"tta_shift": 3}, "tta_shift: 3 must be an integer from 0 to 2"),
        ({"head_hidden": -1}, "head_hidden: -1 must be an integer from 0 to 16384"),
    ],
)
def test_bad_values_name_the_parameter(kwargs, names):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    assert str(e.value).startswith(names)
    assert "\n" not in str(e.value)


def test_to_dict_is_flat_and_readable():
    d = TrainConfig(hidden=(64, 32), batch_norm="true").to_dict()
    assert d["hidden"] == "64,32" and d["batch_norm"] == "true" and d["lr"] == 0.02
    assert set(d) == set(TrainConfig.fields())
