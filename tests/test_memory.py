"""A model's memory estimate (core/memory.py) against PyTorch's own tensors, the limits it is
held to, and the commands that refuse a model too big before any run or study exists."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.core import memory
from pipeline.core.config import TrainConfig
from pipeline.core.errors import UserError
from pipeline.core.models import build_model
from pipeline.core.training import make_optimizer
from pipeline.tuning.search.largest import largest_config
from pipeline.tuning.space import load_space

CONFIGS = {
    "base fcn": TrainConfig(),
    "fcn, batch norm, dropout": TrainConfig(hidden=(64, 32, 16), batch_norm=True, dropout=0.2),
    "study cnn": TrainConfig(model="study_cnn", batch_norm=True),
    "fast cnn with a head": TrainConfig(model="fast_cnn", head_hidden=128),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS)
def test_the_weights_are_the_real_model_s(config):
    real = build_model(config)
    assert memory.estimate(config).weights == 4 * sum(p.numel() for p in real.parameters())


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_the_optimizer_state_is_what_pytorch_keeps_after_a_step(optimizer):
    config = TrainConfig(hidden=(32, 16), optimizer=optimizer, lr=1e-3)
    model = build_model(config)
    opt = make_optimizer(config, model.parameters())
    F.cross_entropy(model(torch.zeros(4, 784)), torch.zeros(4, dtype=torch.long)).backward()
    opt.step()
    kept = sum(  # per-parameter buffers; Adam's step counters are scalars
        4 * t.numel() for state in opt.state.values() for t in state.values() if t.dim() > 0
    )
    assert memory.estimate(config).optimizer == kept


def test_activations_grow_with_the_batch_and_the_average_adds_a_copy():
    small, big = TrainConfig(batch_size=100), TrainConfig(batch_size=300)
    assert memory.estimate(big).activations == 3 * memory.estimate(small).activations > 0
    averaged = memory.estimate(TrainConfig(ema=0.99))
    assert averaged.average == averaged.weights


@pytest.mark.parametrize(
    "hidden, shown",
    [
        ((300, 200), "300,200"),
        ((16384,) * 40, "16384x40"),
        ((8,) * 7 + (9,), "8 layers of up to 9"),
    ],
)
def test_layers_are_named_in_a_few_characters(hidden, shown):
    assert memory.layers(hidden) == shown


@pytest.fixture
def ram_8gb(monkeypatch):
    """A machine with 8 GB of RAM free, whatever this one has: the deepest model train allows
    (8 layers of 16384, 1.9 billion weights) fits on some machines and not on others."""
    monkeypatch.setattr(memory, "available", lambda device: (8 * 10**9, "of RAM available"))


def test_a_model_too_big_is_one_line_with_the_estimate_and_the_limit(ram_8gb):
    huge = TrainConfig(hidden=(16384,) * 8, optimizer="adam")  # 1.9 billion weights
    with pytest.raises(UserError) as refused:
        memory.check_fits(huge, torch.device("cpu"), "--hidden 16384x8", "use fewer", share=2)
    line = str(refused.value)
    assert "\n" not in line and line.startswith("--hidden 16384x8 cannot fit in memory: ")
    assert (
        "needs about 30.8 GB (weights 7.57 GB, gradients 7.57 GB, optimizer state 15.1 GB" in line
    )
    assert "of RAM available for each of 2 workers; use fewer" in line
    assert memory.check_fits(TrainConfig(), torch.device("cpu"), "x", "y").total < 20e6


def cgroup(tmp_path, line: str, files: dict[str, str]):
    """A /proc/self/cgroup of one `line` and a cgroup mount holding `files`."""
    (tmp_path / "cgroup").write_text(line + "\n")
    for name, text in files.items():
        path = tmp_path / "mounts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return memory.cgroup_room(tmp_path / "cgroup", tmp_path / "mounts")


GB = 10**9


@pytest.mark.parametrize(
    "line, files, room",
    [
        (  # v2: 8 GB limit, 5 GB used of which 1 GB is reclaimable file cache
            "0::/box",
            {
                "box/memory.max": f"{8 * GB}",
                "box/memory.current": f"{5 * GB}",
                "box/memory.stat": f"anon 4\ninactive_file {GB}\n",
            },
            4 * GB,
        ),
        (
            "0::/box",
            {"box/memory.max": "max", "box/memory.current": "5", "box/memory.stat": ""},
            None,
        ),
        (  # v1, the controller named among others
            "4:cpu,memory:/job",
            {
                "memory/job/memory.limit_in_bytes": f"{2 * GB}",
                "memory/job/memory.usage_in_bytes": f"{GB}",
                "memory/job/memory.stat": "total_inactive_file 0\n",
            },
            GB,
        ),
        (  # v1 without a limit: the largest page-aligned number
            "4:memory:/",
            {
                "memory/memory.limit_in_bytes": "9223372036854771712",
                "memory/memory.usage_in_bytes": "1",
                "memory/memory.stat": "",
            },
            None,
        ),
        (  # inside a container's namespace the mount is the cgroup itself
            "0::/docker/abc",
            {"memory.max": f"{3 * GB}", "memory.current": f"{GB}", "memory.stat": ""},
            2 * GB,
        ),
        ("1:cpu:/x", {}, None),  # no memory controller
    ],
    ids=["v2", "v2 unlimited", "v1", "v1 unlimited", "namespaced", "none"],
)
def test_the_cgroup_limit_is_read_as_the_kernel_writes_it(tmp_path, line, files, room):
    assert cgroup(tmp_path, line, files) == room


DEEP = """
hidden: {type: layers, depth: [1, 8], width: {low: 64, high: 16384, log: true}}
optimizer: {type: categorical, choices: [sgd, adam, momentum]}
batch_size: {type: categorical, choices: [64, 4096, 512]}
batch_norm: {type: categorical, choices: [false, true]}
lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
"""
FAMILIES = """
model:
  fcn:
    epochs: 3
    hidden: {type: layers, depth: [1, 2], width: {low: 8, high: 16}}
  study_cnn:
    epochs: 2
batch_size: {type: int, low: 64, high: 256, step: 64}
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            DEEP,
            {"hidden": (16384,) * 8, "optimizer": "adam", "batch_size": 4096, "batch_norm": True},
        ),
        (FAMILIES, {"model": "study_cnn", "batch_size": 256}),
    ],
    ids=["deep fcn", "families"],
)
def test_the_largest_model_of_a_space_takes_each_parameter_s_largest_choice(
    tmp_path, text, expected
):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    config = largest_config(load_space(path), model="fcn", epochs=5, seed=0)
    assert {key: getattr(config, key) for key in expected} == expected


def test_train_refuses_a_model_too_big_before_any_run(command, tmp_path, data_dir, ram_8gb):
    out = command("train", "--hidden", ",".join(["16384"] * 8), "--data-dir", str(data_dir))
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: --model fcn --hidden 16384x8 cannot fit in memory: "), line
    assert "use fewer or narrower --hidden layers or a smaller --batch-size" in line
    assert not (tmp_path / "mlflow.db").exists()  # no store, so no run


def test_tune_refuses_a_space_whose_largest_model_cannot_fit_before_the_study(
    command, tmp_path, data_dir, ram_8gb
):
    space = tmp_path / "deep.yaml"
    space.write_text(DEEP)
    out = command(
        "tune", "--space", str(space), "--n-trials", "2", "--workers", "2",
        "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(
        "error: deep.yaml: its largest model (fcn, hidden 16384x8, adam, batch 4096) "
        "cannot fit in memory: training it needs about "
    ), line
    assert "for each of 2 workers; narrow the space" in line
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
