"""One definition per option: the CLI, MLproject, helper arguments and logged parameters all
agree with the options classes (pipeline/core/options.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import typer.main
import yaml

from pipeline.cli import mlproject
from pipeline.cli.app import app
from pipeline.cli.command_settings import COMMANDS, ENTRY_POINTS
from pipeline.core import options
from pipeline.core.config import TrainConfig
from pipeline.core.recipes import TrainOptions
from pipeline.replication.replicate_settings import ReplicateOptions, ReplicateSettings
from pipeline.tuning.tune_settings import DEFAULT_EPOCHS, TuneOptions, TuneSettings
from pipeline.tuning.workers.processes import helper_argv
from tests.conftest import ROOT

SPEC = yaml.safe_load(Path(ROOT, "MLproject").read_text())["entry_points"]


def test_the_checked_in_mlproject_is_what_the_definitions_generate():
    assert Path(ROOT, "MLproject").read_text() == mlproject.generate(), (
        "run python -m pipeline.cli.mlproject"
    )


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_mlproject_names_defaults_and_flags_follow_the_definitions(name):
    spec, cls = SPEC[name], ENTRY_POINTS[name]
    undeclared = {o.name for o in mlproject.undeclared(cls)}
    defined = [o for o in options.of(cls) if not o.hidden and o.name not in undeclared]
    assert list(spec["parameters"]) == [o.name for o in defined]
    for option in defined:
        param = spec["parameters"][option.name]
        if option.kind == "paths":
            assert "default" not in param and f" {{{option.name}}}" in spec["command"]
            continue
        assert param["type"] == ("float" if option.kind == "float" else "string")
        if option.kind == "float":
            assert param["default"] == option.default
        else:
            assert param["default"] == options.as_text(option, option.default)
        if option.kind == "flag":
            assert f"case {{{option.name}}} in true) echo {option.flag};;" in spec["command"]
        else:
            assert f"{option.flag} {{{option.name}}}" in spec["command"]


@pytest.mark.parametrize("name", COMMANDS)
def test_the_cli_options_are_the_definitions(name):
    command = typer.main.get_command(app).commands[name]
    cli = {p.name: p for p in command.params}
    defined = options.of(COMMANDS[name])
    assert list(cli) == [o.name for o in defined]
    for option in defined:
        param = cli[option.name]
        assert getattr(param, "hidden", False) == option.hidden
        if option.kind == "paths":
            assert param.required
            continue
        assert param.opts == [option.flag]
        default = param.default.value if hasattr(param.default, "value") else param.default
        assert str(default) == options.as_text(option, option.default) or default == option.default
        if option.kind == "choice":
            assert [c.value for c in type(param.default)] == list(option.choices)


def test_mlproject_leaves_the_recipe_and_what_it_fills_undeclared():
    """Declared with a default, each would reach `train` as given and override the recipe;
    undeclared, MLflow passes on only those given. The entry point's comment names them all."""
    undeclared = [o.name for o in mlproject.undeclared(TrainOptions)]
    assert undeclared == ["recipe", *TrainConfig.fields()]
    assert list(SPEC["train"]["parameters"]) == ["data_dir"]
    text = Path(ROOT, "MLproject").read_text()
    train = text[text.index("  train:") : text.index("  tune:")]
    assert all(re.search(rf"\b{name}\b", train) for name in undeclared)
    assert mlproject.undeclared(TuneOptions) == []


def test_tune_help_says_the_epochs_the_code_uses():
    help_text = options.of(TuneOptions)[
        [o.name for o in options.of(TuneOptions)].index("epochs")
    ].full_help()
    assert f"{DEFAULT_EPOCHS['fast_cnn']} for fast_cnn" in help_text


def test_train_logs_every_train_option():
    logged = {o.param_name for o in options.of(TrainOptions)} - {None}
    assert set(TrainConfig().to_dict()) == logged == set(TrainConfig.fields())


def test_tune_logs_its_options_as_resolved():
    settings = TuneOptions(storage="postgresql://me:secret@db/x", n_trials=0, timeout=60).resolve()
    params = settings.params()
    assert set(params) == {o.param_name for o in options.of(TuneOptions)} - {None}
    assert params["storage"] == "postgresql://me@db/x" and params["n_trials"] is None
    assert params["epochs"] == DEFAULT_EPOCHS["fcn"] and params["space"].endswith("fcn.yaml")


def test_replicate_logs_its_options_and_the_threads():
    params = ReplicateSettings.build(seeds=2, workers=1).params()
    assert set(params) == ({o.param_name for o in options.of(ReplicateOptions)} - {None}) | {
        "threads_per_process"
    }
    assert params["train_processes"] == 1 and params["seeds"] == 2


def test_tune_helpers_get_the_resolved_settings_and_their_share():
    opts = TuneOptions(model="fast_cnn", n_trials=5, workers=2, data_dir="elsewhere", helper_of="")
    settings = opts.resolve()
    [helper] = helper_argv(opts, settings)
    typed = dict(zip(helper[::2], helper[1::2]))
    assert typed["--n-trials"] == "2" and typed["--workers"] == "1"
    assert typed["--epochs"] == str(DEFAULT_EPOCHS["fast_cnn"])
    assert typed["--study-name"] == "fast_cnn" and typed["--space"].endswith("cnn.yaml")
    assert typed["--data-dir"] == "elsewhere" and "--helper-of" not in typed
    assert set(typed) == {o.flag for o in options.of(TuneOptions) if not o.hidden}


def test_to_argv_gives_the_options_back():
    given = {"recipe": "wide_fcn", "hidden": "64,32", "batch_norm": True, "data_dir": "d"}
    opts = options.build(TrainOptions, given)
    argv = options.to_argv(opts)
    typed = {flag[2:].replace("-", "_"): value for flag, value in zip(argv[::2], argv[1::2])}
    converted = {
        o.name: (float if o.kind == "float" else int if o.kind == "int" else str)(typed[o.name])
        for o in options.of(TrainOptions)
    }
    assert options.build(TrainOptions, converted) == opts
    assert "--recipe" not in options.to_argv(options.build(TrainOptions, {}))
    assert "--quick" in options.to_argv(ReplicateOptions(quick=True))
    assert "--quick" not in options.to_argv(ReplicateOptions())


def test_tune_settings_take_every_default_from_tune_options():
    # a default of its own would be a second definition, free to drift from the option's
    own = [f.name for f in dataclasses.fields(TuneSettings) if f.default is not dataclasses.MISSING]
    assert own == []
    settings = TuneOptions().resolve()
    for name in ("storage", "seed", "grace_period", "heartbeat", "keep_models", "objectives"):
        assert getattr(settings, name) == getattr(TuneOptions(), name)


def test_tune_settings_keep_their_contract():
    fields = {f.name for f in dataclasses.fields(TuneSettings)}
    assert {
        "model",
        "space",
        "study_name",
        "storage",
        "n_trials",
        "timeout",
        "epochs",
        "seed",
        "pruner",
        "total_trials",
        "heartbeat",
        "grace_period",
        "workers",
        "helper_of",
    } <= fields
    settings = TuneOptions(n_trials=0, timeout=60, heartbeat=0, total_trials=0).resolve()
    assert (settings.n_trials, settings.heartbeat, settings.total_trials, settings.own_trials) == (
        None,
        None,
        None,
        None,
    )
