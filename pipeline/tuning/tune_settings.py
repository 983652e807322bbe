"""`tune`'s options as typed (`TuneOptions`, each defined once) and the settings they resolve to
(`TuneSettings`: defaults by model filled in, the search space loaded), built once at the edge
(the CLI) and passed down. Imports no optuna: `tune --help` and its argument errors stay instant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import options
from pipeline.core.config import MAX_EPOCHS, MAX_SEED, MODELS, data_dir
from pipeline.core.errors import ConfigError
from pipeline.core.recipes import CNN, FAST_CNN
from pipeline.tuning.directions import (
    FRONTIER,
    FRONTIER_SPACE,
    OBJECTIVES,
    PRUNERS,
    Direction,
    directions,
    resolve_pruner,
)
from pipeline.tuning.space import SearchSpace, SpaceError, load_space

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
DEFAULT_SPACE = {"fcn": "fcn.yaml", "fast_cnn": "cnn.yaml", "study_cnn": "study_cnn.yaml"}
# Trial length by model: 20 FCN epochs; the CNNs' own recipes (core/recipes.py).
DEFAULT_EPOCHS = {"fcn": 20, "fast_cnn": FAST_CNN.epochs, "study_cnn": CNN.epochs}
DEFAULT_STORAGE = "sqlite:///optuna.db"
MAX_TRIALS = 1_000_000
MAX_WORKERS = 64  # processes on this machine, each with its own copy of the data
# A full trial takes at most this share of --timeout (tuning/search/budget.py): the default 540 s
# then gives 20-epoch trials up to 10.0 s per epoch of the 1024-512 FCN, 14 up to 14.3 s; the
# fast Xeon (4 s) and the slow EPYC (13.2 s, or its emulation) sit inside a tier, not at an edge.
TRIAL_SHARE = 0.37
# The tags that name a study on its runs and logged models (`TuneSettings.tags`).
STUDY_TAG, STORAGE_TAG = "study_name", "optuna_storage"
STUDY_NAME_LENGTH = 512  # the width of the study name column in Optuna's RDB storage
RAY_ADDRESS = re.compile(r"auto|local|[\w.-]+:\d{1,5}")  # ray.init's forms we accept


def _by_model(values: Mapping[str, object]) -> str:  # "20 for fcn, 10 for fast_cnn"
    return ", ".join(f"{value} for {model}" for model, value in values.items())


def shares(n_trials: int, workers: int) -> list[int]:
    """This call's n_trials split over the workers (0: no limit for each); no worker gets 0
    trials out of a positive count."""
    if n_trials == 0:
        return [0] * workers
    workers = min(workers, n_trials)
    return [n_trials // workers + (i < n_trials % workers) for i in range(workers)]


@dataclass(frozen=True)
class TuneOptions:
    """`tune` as typed on the command line (0 or empty: the default named in its help)."""

    model: str = options.choice(
        "fcn",
        "The network every trial trains (unused with a space "
        "that picks it per trial, as search_spaces/frontier.yaml does).",
        MODELS,
    )
    space: str = options.text(
        "", f"Search-space YAML; empty: search_spaces/{_by_model(DEFAULT_SPACE)}."
    )
    n_trials: int = options.integer(
        100, "Trials to add in this call.", low=0, high=MAX_TRIALS, zero="no limit"
    )
    timeout: float = options.number(
        540.0, "Seconds after which no new trial starts.", low=0, zero="no limit"
    )
    epochs: int = options.integer(
        0,
        "Epochs per trial (pruning may stop earlier); with a space of model families, "
        "the most any trial trains.",
        low=0,
        high=MAX_EPOCHS,
        zero=f"{_by_model(DEFAULT_EPOCHS)} (their recipes' lengths), fewer where one trial "
        f"would take over {TRIAL_SHARE:.0%} of --timeout on this machine; a resumed study's "
        "own; the space's own with families",
    )
    study_name: str = options.text(
        "", "Optuna study; empty: the model name. The same name resumes the study."
    )
    storage: str = options.text(
        DEFAULT_STORAGE,
        "Optuna storage: an RDB URL (sqlite:///, postgresql://, "
        "mysql+pymysql://) or a journal file path.",
    )
    seed: int = options.integer(
        0, "Seeds the sampler and every trial's training.", low=0, high=MAX_SEED
    )
    pruner: str = options.choice(
        "auto",
        "Stops poor trials early on val_acc; auto: halving (at epochs 1, 3, 9 up to "
        "2/3 of the trial, only the best third of the trials there go on), or none for a "
        "frontier (Optuna prunes no multi-objective study).",
        PRUNERS,
    )
    objectives: str = options.choice(
        OBJECTIVES[0],
        f"What the study optimizes: val_acc (maximized), or {FRONTIER}: the "
        "accuracy-vs-time frontier (train_time_s minimized), over the model families of "
        f"search_spaces/{FRONTIER_SPACE} unless --space says otherwise.",
        OBJECTIVES,
    )
    total_trials: int = options.integer(
        0,
        "Study-wide cap shared by all workers: no worker starts a trial once the study "
        "holds this many (retries of dead workers' trials still run). RDB storages only.",
        low=0,
        high=MAX_TRIALS,
        zero="no cap",
    )
    heartbeat: int = options.integer(
        60,
        "Seconds between a running trial's heartbeats in an RDB storage.",
        low=0,
        high=3600,
        zero="off",
    )
    grace_period: int = options.integer(
        180,
        "Seconds without a heartbeat after which a trial's worker counts as dead: the "
        "trial fails, its MLflow runs end KILLED, and it is retried once. Greater than "
        "--heartbeat.",
        low=1,
        high=86_400,
    )
    keep_models: int = options.integer(
        10,
        "Logged models kept per study: those of the trials with the best val_acc (and "
        "any registered one); the others' files are deleted as the study goes.",
        low=0,
        high=MAX_TRIALS,
        zero="keep all",
    )
    workers: int = options.integer(
        1,
        "Worker processes of this call, on one study, sharing the threads and n_trials "
        "(python -m bench measured 2 no faster than 1 for the FCN study on 2 cores); with "
        "--ray, Ray tasks sharing the cluster's CPUs.",
        low=1,
        high=MAX_WORKERS,
    )
    ray: str = options.text(
        "",
        "Run the --workers as Ray tasks on a Ray cluster (docs/ray.md): auto (the cluster this "
        "machine belongs to), local (one started here for this call) or the head's HOST:PORT; "
        "empty: processes on this machine. Needs pip install -r requirements-ray.txt.",
    )
    # a `tune --workers` helper (pipeline/tuning/workers/processes.py): the main worker's parent run
    helper_of: str = options.text("", "", hidden=True)
    data_dir: Path = data_dir()

    def __post_init__(self):
        options.check(self)
        if self.n_trials == 0 and self.timeout == 0 and self.total_trials == 0:
            raise ConfigError(
                "n_trials, timeout and total_trials are all 0: the study would "
                "never end; set one of them"
            )
        resolve_pruner(self.pruner, self.objectives)  # a pruner on a frontier: refused
        check_study_name(self.study_name)
        if self.ray and not RAY_ADDRESS.fullmatch(self.ray):
            raise ConfigError(
                f"ray: {self.ray!r} is no Ray cluster; use auto, local or the head's "
                "HOST:PORT (such as 10.0.0.5:6379)"
            )
        if self.heartbeat and self.grace_period <= self.heartbeat:
            raise ConfigError(
                f"grace_period: {self.grace_period} must be greater than "
                f"heartbeat ({self.heartbeat}), or a live trial would look dead; "
                f"such as {3 * self.heartbeat}"
            )

    def resolve(self) -> TuneSettings:
        """The settings: defaults by model (or, for a space of model families, by the space),
        the search space read and checked (one line of error for a bad file, a space searching
        what this model ignores, or families without the frontier's objectives)."""
        frontier = self.objectives == FRONTIER
        space = load_space(
            Path(self.space)
            if self.space
            else SPACES / (FRONTIER_SPACE if frontier else DEFAULT_SPACE[self.model])
        )
        model, name = self.model, self.model + ("-frontier" if frontier else "")
        epochs = self.epochs or DEFAULT_EPOCHS[self.model]
        if space.families:  # each trial's family comes from the space, --model is unused
            if not frontier:
                raise SpaceError(
                    f"{space.path.name}: chooses the model per trial, which is "
                    f"for a frontier study: add --objectives {FRONTIER}, or use "
                    "a space of one model (fcn.yaml, fcn_study.yaml, cnn.yaml, "
                    "study_cnn.yaml)"
                )
            model, name = ",".join(space.families), "frontier"
            epochs = self.epochs or space.max_epochs  # a cap on each family's epochs
        else:
            space.check_model(self.model)
        return TuneSettings(
            model=model,
            space=space,
            study_name=self.study_name or name,
            storage=self.storage,
            n_trials=self.n_trials or None,
            timeout=self.timeout or None,
            epochs=epochs,
            seed=self.seed,
            pruner=resolve_pruner(self.pruner, self.objectives),
            total_trials=self.total_trials or None,
            heartbeat=self.heartbeat or None,
            grace_period=self.grace_period,
            keep_models=self.keep_models or None,
            workers=len(shares(self.n_trials, self.workers)),
            helper_of=self.helper_of or None,
            objectives=self.objectives,
            ray=self.ray or None,
        )


def check_study_name(name: str) -> None:
    """Any name a user can type works end to end (quotes, %, _, backslashes and tabs included:
    tests/test_study_identity.py); refused up front are what cannot: a line break or another
    control character (every line of ours that names the study would break in two) and more
    characters than Optuna's storages keep in a study's name."""
    bad = next((c for c in name if not c.isprintable() and c != "\t"), None)
    if bad is not None:
        raise ConfigError(
            f"study_name: {name[:40]!r} holds the control character {bad!r}; use a name "
            "of printable characters"
        )
    if len(name) > STUDY_NAME_LENGTH:
        raise ConfigError(
            f"study_name: {len(name)} characters, more than the {STUDY_NAME_LENGTH} an "
            "Optuna storage keeps; use a shorter name"
        )


@dataclass(frozen=True)
class TuneSettings:
    """What `tune` runs, as `TuneOptions.resolve()` makes it: no defaults of its own, so each
    default is TuneOptions' (0 or empty there: None here, or the value by model)."""

    model: str
    space: SearchSpace
    study_name: str
    storage: str
    n_trials: int | None
    timeout: float | None  # seconds; checked between trials
    epochs: int
    seed: int
    pruner: str  # resolved: never "auto"
    total_trials: int | None  # study-wide cap, shared by all workers (RDB storages)
    heartbeat: int | None  # seconds between a running trial's heartbeats (RDB storages)
    grace_period: int  # seconds without a heartbeat after which a trial's worker is dead
    keep_models: int | None  # logged models kept per study (tuning/registry/logged_models.py)
    workers: int  # processes of this call, sharing n_trials (tuning/workers/processes.py)
    helper_of: str | None  # a helper's main run: its trials nest there; no summary, no champion
    objectives: str  # "val_acc", or "val_acc,train_time_s" (the frontier)
    ray: str | None  # the Ray cluster whose tasks are the workers (tuning/workers/ray_tasks.py)

    @property
    def metric_names(self) -> list[str]:
        return self.objectives.split(",")

    @property
    def directions(self) -> list[Direction]:
        return directions(self.objectives)

    @property
    def own_trials(self) -> int | None:
        """This process's share of n_trials (a helper is started with its own share)."""
        return None if self.n_trials is None else shares(self.n_trials, self.workers)[0]

    def tags(self) -> dict[str, str]:
        """The tags of this study's runs and logged models: its name and storage (without its
        password: the same tag whether the password came inline or from the environment)."""
        from pipeline.core.credentials import without_password  # SQLAlchemy: not for --help

        return {STUDY_TAG: self.study_name, STORAGE_TAG: without_password(self.storage)}

    def params(self) -> dict[str, object]:
        """The parameters the parent run logs: TuneOptions' (the resolved values; the space as
        its path, the storage without its password)."""
        from pipeline.core.credentials import without_password

        return {
            **options.params(self, TuneOptions),
            "space": str(self.space.path),
            "storage": without_password(self.storage),
        }
