"""The accuracy-vs-time frontier: a study over model families that maximizes val_acc and
minimizes train_time_s (`tune --objectives val_acc,train_time_s`, tuning/directions.py).

Its trials run as any study's (tuning/search/objective.py returns both values); when it ends,
`log_front` puts on the parent run what a single best trial would have given: the Pareto front
as a figure (tuning/pareto_figure.py), every completed trial with its family, epochs and both
values (frontier.json, which the replication report reads through `read_latest`), and the
tag `frontier`. No champion is registered: a front has no single best trial, and its trials
are short by design (their epochs capped), so `tune` on one family is how a champion is made.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import mlflow
import optuna

from pipeline.core.metrics import TEST_ACC, TRAIN_TIME, VAL_ACC
from pipeline.core.words import plural
from pipeline.tuning import pareto_figure
from pipeline.tuning.attrs import RUN_ID_ATTR, TRIAL_EPOCHS_ATTR, TRIAL_MODEL_ATTR

FRONT_FILE = "frontier.json"
FIGURE = "optuna/pareto_front.png"
TAG = "frontier"  # on the parent run of a frontier study, "true"


def trials(study: optuna.Study) -> list[dict]:
    """Every completed trial: number, family, epochs, both values, test_acc, its run; and
    whether it is on the Pareto front (Optuna's `best_trials`), fastest first."""
    front = {t.number for t in study.best_trials}
    rows = [
        {
            "number": t.number,
            "model": t.user_attrs.get(TRIAL_MODEL_ATTR, "?"),
            "epochs": t.user_attrs.get(TRIAL_EPOCHS_ATTR),
            VAL_ACC: t.values[0],
            TRAIN_TIME: t.values[1],
            TEST_ACC: t.user_attrs.get(TEST_ACC, math.nan),
            "run_id": t.user_attrs.get(RUN_ID_ATTR, ""),
            "on_front": t.number in front,
        }
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]
    return sorted(rows, key=lambda r: r[TRAIN_TIME])


def log_front(study: optuna.Study) -> None:
    """On the active parent run: the front's figure, frontier.json, the tag, the front's size;
    and one line saying why no champion is registered."""
    rows = trials(study)
    mlflow.set_tag(TAG, "true")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FRONT_FILE
        path.write_text(json.dumps({"study_name": study.study_name, "trials": rows}, indent=1))
        mlflow.log_artifact(str(path))
    if not rows:
        print("no trial completed: no front to draw")
        return
    mlflow.log_metric("front_size", sum(r["on_front"] for r in rows))
    mlflow.log_figure(pareto_figure.figure(rows, study.study_name), FIGURE)
    print(
        "frontier study: no champion registered (a front has no single best trial, and its "
        "trials' epochs are capped); `tune --model MODEL` on one family makes one"
    )


def summary(study: optuna.Study) -> list[str]:
    """The front for the terminal, fastest first."""
    front = [r for r in trials(study) if r["on_front"]]
    lines = [f"Pareto front ({plural(len(front), 'trial')}; val_acc up, train_time_s down):"]
    lines += [
        f"  trial {r['number']}: {r['model']}, {plural(r['epochs'], 'epoch')}, val_acc "
        f"{r[VAL_ACC]:.4f} in {r[TRAIN_TIME]:.1f} s"
        for r in front
    ]
    return lines


def read_latest() -> dict | None:
    """frontier.json of the latest finished frontier study's parent run (any experiment), with
    that run's id; None when there is none."""
    found = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.{TAG} = 'true' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return None
    run_id = found[0].info.run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=FRONT_FILE, dst_path=tmp
        )
        return {**json.loads(Path(path).read_text()), "run_id": run_id}
