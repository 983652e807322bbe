"""Recipes by name (pipeline/core/recipes.py): `train --recipe NAME` with the options given beside
it overriding the recipe's values, on the command line as under `mlflow run`, and each recipe
defined in that one file: no search space, doc or test copies one."""

from __future__ import annotations

import dataclasses
import re

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli.build import add_command
from pipeline.core.config import TrainConfig
from pipeline.core.recipes import FAST_CNN, RECIPES, WIDE_FCN, TrainOptions
from tests.conftest import ROOT


def built(*args: str) -> TrainOptions:
    """The TrainOptions `train ARGS` hands to its command."""
    app, got = typer.Typer(), []
    add_command(app, "train", TrainOptions, got.append)
    add_command(app, "other", TrainOptions, got.append)  # two commands: typer keeps the names
    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 0, result.output
    return got[0]


@pytest.mark.parametrize(
    "args, recipe, config",
    [
        ([], "", TrainConfig()),
        (["--recipe", "fast_cnn"], "fast_cnn", FAST_CNN),
        (["--recipe", "fast_cnn", "--epochs", "1"], "fast_cnn", dict(epochs=1)),
        # given, even when the value is train's own default: the recipe's 0.1 is overridden
        (["--recipe", "fast_cnn", "--lr", "0.02"], "fast_cnn", dict(lr=0.02)),
        (["--epochs", "2", "--recipe", "fast_cnn"], "fast_cnn", dict(epochs=2)),  # any order
        (["--recipe=wide_fcn", "--hidden", "64"], "wide_fcn", dict(hidden=(64,))),
        # as `mlflow run -P batch_size=64` passes a parameter MLproject does not declare
        (["--recipe", "fast_cnn", "--batch_size", "64"], "fast_cnn", dict(batch_size=64)),
        (["--recipe", "", "--epochs", "2"], "", TrainConfig(epochs=2)),
        (["--lr", "0.1"], "", TrainConfig(lr=0.1)),
    ],
)
def test_the_options_given_override_the_recipe(args, recipe, config):
    if isinstance(config, dict):
        config = dataclasses.replace(RECIPES[recipe], **config)
    opts = built(*args)
    assert (opts.recipe, opts.config) == (recipe, config)


def test_an_unknown_recipe_is_one_line_naming_the_recipes(command):
    out = command("train", "--recipe", "fastcnn")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert out.stderr == f"error: recipe: 'fastcnn' is not one of {', '.join(RECIPES)}\n"


def test_train_help_says_what_the_recipe_does_and_names_them(command):
    out = command("train", "--help")
    help_text = " ".join(out.stdout.replace("│", " ").split())
    assert "--recipe" in help_text and "options not given take" in help_text
    assert all(name in help_text for name in RECIPES)


# The fast CNN's settings that differ from train's defaults: a block of text setting 4 or more
# of them copies the recipe. Written the ways a copy spells a setting: --flag value,
# "--flag", "value", -P name=value, name: value, name=value.
SIGNATURE = {
    name: value
    for name, value in dataclasses.asdict(FAST_CNN).items()
    if value != getattr(TrainConfig(), name)
}
SETTING = re.compile(r"(?<![\w-])(?:--)?([a-z][a-z_-]*)[\"']?(?:\s*[:=,]\s*|\s+)[\"']?([\w.+-]+)")
COPIES_MAY_NOT_LIVE_IN = [
    # docs/history.md states the past: the commands measured before the recipe had a name
    *(p for p in (ROOT / "docs").glob("*.md") if p.name != "history.md"),
    ROOT / "README.md",
    ROOT / "MLproject",
    *(ROOT / "search_spaces").glob("*.yaml"),
    *(ROOT / "tests").glob("*.py"),
    *(ROOT / "bench").glob("*.py"),
]


def same(text: str, value: object) -> bool:
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(text) == value
        except ValueError:
            return False
    return text == str(value)


def copies(text: str) -> list[str]:
    """The blocks of `text` (runs of non-blank lines) that set 4 or more of the recipe's values."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        hits = {
            m[1].replace("-", "_")
            for m in SETTING.finditer(block)
            if m[1].replace("-", "_") in SIGNATURE and same(m[2], SIGNATURE[m[1].replace("-", "_")])
        }
        if len(hits) >= 4:
            found.append(block.strip()[:80])
    return found


def test_the_copy_finder_finds_the_recipe_where_it_is_defined_and_in_copies_of_it():
    assert copies((ROOT / "pipeline/core/recipes.py").read_text())
    flags = [
        f"--{name.replace('_', '-')} {str(value).lower()}" for name, value in SIGNATURE.items()
    ]
    assert copies("python -m pipeline train \\\n    " + " \\\n    ".join(flags))
    assert copies("\n".join(f"{name}: {str(value).lower()}" for name, value in SIGNATURE.items()))
    kwargs = ", ".join(f"{name}={value!r}" for name, value in SIGNATURE.items())
    assert copies(f"TrainConfig({kwargs})")
    assert not copies("python -m pipeline train --recipe fast_cnn --epochs 1")


@pytest.mark.parametrize("path", COPIES_MAY_NOT_LIVE_IN, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_fast_cnn_recipe_is_defined_once(path):
    """Its learning rate, head width (128), epochs (10) and the rest live in
    pipeline/core/recipes.py; docs, spaces and tests name it instead of copying it."""
    assert copies(path.read_text(encoding="utf-8")) == []


def test_the_wide_fcn_recipe_is_the_fcn_space_s_base():
    assert (
        WIDE_FCN is RECIPES["wide_fcn"]
        and "recipe: wide_fcn" in (ROOT / "search_spaces/fcn.yaml").read_text()
    )
