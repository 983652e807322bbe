import dataclasses

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from pipeline.core.config import TrainConfig
from pipeline.core.metrics import EPOCH_METRICS
from pipeline.core.optimizers import make_optimizer, make_schedule
from pipeline.core.training import (
    EVAL_BATCH,
    Diverged,
    predict,
    train,
)


def without_times(history):
    return [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in history]


def test_history_has_every_metric_every_epoch(tiny_data, tiny_config):
    result = train(tiny_config, tiny_data)
    assert len(result.history) == tiny_config.epochs
    for h in result.history:
        assert tuple(h) == EPOCH_METRICS
        assert all(0 <= h[k] <= 1 for k in ("train_acc", "val_acc", "test_acc"))
        assert h["epoch_time_s"] > 0
    assert result.train_time_s >= sum(h["epoch_time_s"] for h in result.history)


def test_without_holdout_it_trains_on_every_training_image_and_reports_no_val(
    tiny_data, tiny_config
):
    merged = tiny_data.without_holdout()
    assert len(merged.train) == 96 and len(merged.val) == 0 and merged.test is tiny_data.test
    assert torch.equal(merged.train.images[64:], tiny_data.val.images)
    assert merged.without_holdout() is merged
    # batch 16: 4 steps per epoch on the 64 held-in images, 6 on all 96
    config = dataclasses.replace(tiny_config, holdout=False, epochs=1, schedule="onecycle")
    steps = []
    hook = register_optimizer_step_post_hook(lambda *args: steps.append(1))
    try:
        result = train(config, tiny_data)
    finally:
        hook.remove()
    assert len(steps) == 6
    assert tuple(result.final) == (
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "epoch_time_s",
    )
    held = train(dataclasses.replace(config, holdout=True), tiny_data)
    assert tuple(held.final) == EPOCH_METRICS


@pytest.mark.parametrize("model", ["fcn", "study_cnn", "fast_cnn"])
def test_a_model_overfits_one_batch(tiny_data, model):
    # 64 training images and batch 64: every step sees the same single batch.
    config = TrainConfig(
        model=model, hidden=(128,), optimizer="adam", lr=2e-3, epochs=60, batch_size=64
    )
    result = train(config, tiny_data)
    assert result.final["train_loss"] < 0.05
    assert result.final["train_acc"] == 1.0


def test_same_seed_same_history_other_seed_other_history(tiny_data, tiny_config):
    config = dataclasses.replace(tiny_config, dropout=0.2, batch_norm=True, epochs=3)
    a = train(config, tiny_data).history
    b = train(config, tiny_data).history
    c = train(dataclasses.replace(config, seed=1), tiny_data).history
    assert without_times(a) == without_times(b)
    assert without_times(a) != without_times(c)


def test_callbacks_see_each_epoch_and_can_stop_training(tiny_data, tiny_config):
    seen = []

    class Stop(Exception):
        pass

    def callback(end):
        seen.append((end.epoch, end.metrics["val_acc"], end.model.training))
        if end.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(dataclasses.replace(tiny_config, epochs=5), tiny_data, callbacks=[callback])
    assert [epoch for epoch, *_ in seen] == [1, 2]


def test_a_diverging_run_raises(tiny_data):
    config = TrainConfig(hidden=(32,), optimizer="sgd", lr=1e12, epochs=5, batch_size=16)
    with pytest.raises(Diverged, match="diverged at epoch"):
        train(config, tiny_data)


@pytest.mark.parametrize(
    "name, cls",
    [
        ("sgd", torch.optim.SGD),
        ("momentum", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
    ],
)
def test_optimizers(name, cls):
    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = make_optimizer(TrainConfig(optimizer=name, lr=0.1, weight_decay=1e-4), params)
    assert type(opt) is cls
    assert opt.defaults["lr"] == 0.1 and opt.defaults["weight_decay"] == 1e-4
    assert opt.defaults.get("momentum", 0) == (0.9 if name == "momentum" else 0)


def test_cosine_schedule_warms_up_for_an_epoch_then_decays_to_zero():
    config = TrainConfig(optimizer="adam", lr=0.01, epochs=5, schedule="cosine")
    opt = make_optimizer(config, [torch.nn.Parameter(torch.zeros(2))])
    schedule = make_schedule(config, opt, steps_per_epoch=10)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[9] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # never rises after the warm-up
    assert lrs[-1] < 0.0002 and opt.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)


def test_onecycle_rises_linearly_for_a_fifth_of_the_steps_then_falls_to_zero():
    config = TrainConfig(optimizer="momentum", lr=0.1, epochs=5, schedule="onecycle")
    opt = make_optimizer(config, [torch.nn.Parameter(torch.zeros(2))])
    schedule = make_schedule(config, opt, steps_per_epoch=10)  # 50 steps, peak at step 9
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1) == max(lrs)
    assert lrs[4] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[30] == pytest.approx(0.05)  # linear: halfway down 20 steps after the peak
    assert opt.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)


def test_augmentation_flips_and_shifts_each_image_reproducibly():
    from pipeline.core.augment import flip_and_shift

    images = torch.arange(6 * 28 * 28).remainder(251).to(torch.uint8).reshape(6, 1, 28, 28)
    images[:, :, :2] = images[:, :, -2:] = images[:, :, :, :2] = images[:, :, :, -2:] = 0
    out = flip_and_shift(images, torch.Generator().manual_seed(0))
    again = flip_and_shift(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype and torch.equal(out, again)
    for original, moved in zip(images, out):
        # A 2-pixel black border: every shift of up to 2 keeps all pixels, just moved.
        views = [original, original.flip(2)]
        matches = [
            (v, dy, dx)
            for v in views
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(torch.roll(v, (dy, dx), (1, 2)), moved)
        ]
        assert len(matches) >= 1
    assert not torch.equal(out, images)


def test_augmentation_without_shifts_only_flips():
    from pipeline.core.augment import flip_and_shift

    images = torch.arange(64 * 28 * 28).remainder(251).to(torch.uint8).reshape(64, 1, 28, 28)
    out = flip_and_shift(images, torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(moved, original.flip(2)) for original, moved in zip(images, out)]
    kept = [torch.equal(moved, original) for original, moved in zip(images, out)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48  # about half, with overwhelming probability


def test_label_smoothing_changes_only_the_training_loss(tiny_data, tiny_config):
    import torch.nn.functional as F

    plain = train(tiny_config, tiny_data).history[0]
    smoothed = train(dataclasses.replace(tiny_config, label_smoothing=0.2), tiny_data)
    assert smoothed.history[0]["train_loss"] != pytest.approx(plain["train_loss"])
    logits, labels = predict(smoothed.model, tiny_data.val.images), tiny_data.val.labels
    val_loss = smoothed.final["val_loss"]
    assert val_loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert val_loss != pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=0.2).item(), rel=1e-3
    )


def test_constant_schedule_keeps_the_learning_rate():
    config = TrainConfig(optimizer="sgd", lr=0.02)
    opt = make_optimizer(config, [torch.nn.Parameter(torch.zeros(2))])
    schedule = make_schedule(config, opt, steps_per_epoch=10)
    for _ in range(30):
        opt.step()
        schedule.step()
    assert opt.param_groups[0]["lr"] == 0.02


def test_evaluation_runs_in_the_models_own_batch_size():
    seen = []

    class Recorder(torch.nn.Module):
        eval_batch = 3

        def forward(self, x):
            seen.append(len(x))
            return torch.zeros(len(x), 10)

    predict(Recorder(), torch.zeros(7, 1, 28, 28))
    assert seen == [3, 3, 1]
    seen.clear()
    predict(Recorder(), torch.zeros(7, 1, 28, 28), batch_size=4)
    assert seen == [4, 3]
    seen.clear()
    model = torch.nn.Sequential(Recorder())  # no eval_batch of its own: EVAL_BATCH
    predict(model, torch.zeros(EVAL_BATCH + 1, 1, 28, 28))
    assert seen == [EVAL_BATCH, 1]


def test_cutout_blanks_one_square_per_image_reproducibly():
    from pipeline.core.augment import cutout

    images = torch.full((200, 1, 28, 28), 7, dtype=torch.uint8)
    out = cutout(images, torch.Generator().manual_seed(0), size=6)
    assert torch.equal(out, cutout(images, torch.Generator().manual_seed(0), size=6))
    blanked = (out == 0).sum((1, 2, 3))
    assert blanked.max() == 36 and blanked.min() >= 9  # whole inside; a corner at the border
    for image in out[:20, 0]:
        rows, cols = (image == 0).nonzero().unbind(1)
        square = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (square == 0).all()  # one solid rectangle, the rest kept
    assert torch.equal(cutout(images, torch.Generator(), size=0), images)


def test_ema_evaluates_the_moving_average_of_the_weights(tiny_data, tiny_config):
    """The average after each step, computed by hand, is what train returns and evaluates."""
    config = dataclasses.replace(tiny_config, optimizer="sgd", lr=0.1, epochs=2, ema=0.9)
    steps = []
    from torch.optim.optimizer import register_optimizer_step_post_hook

    hook = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: steps.append(
            [p.detach().clone() for p in opt.param_groups[0]["params"]]
        )
    )
    try:
        result = train(config, tiny_data)
    finally:
        hook.remove()
    assert len(steps) == 2 * 4  # 64 images, batch 16
    expected = steps[0]  # the average starts as a copy after the first step
    for weights in steps[1:]:
        expected = [0.9 * e + 0.1 * w for e, w in zip(expected, weights)]
    for average, hand in zip(result.model.parameters(), expected):
        assert torch.allclose(average, hand, atol=1e-6)
    assert not torch.allclose(next(result.model.parameters()), steps[-1][0])
    logits = predict(result.model, tiny_data.val.images)
    val_acc = (logits.argmax(1) == tiny_data.val.labels).float().mean().item()
    assert result.final["val_acc"] == pytest.approx(val_acc)


def test_ema_does_not_change_the_training_itself(tiny_data, tiny_config):
    plain = train(tiny_config, tiny_data).history
    averaged = train(dataclasses.replace(tiny_config, ema=0.5), tiny_data).history
    assert [h["train_loss"] for h in plain] == [h["train_loss"] for h in averaged]
    assert [h["val_loss"] for h in plain] != [h["val_loss"] for h in averaged]
