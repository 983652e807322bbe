import dataclasses
import math

import torch
import torch.nn.functional as F

from pipeline.core.config import TrainConfig
from pipeline.core.models import build_model
from pipeline.core.training import train
from pipeline.core.whitening import first_conv, init_whitening, whitening_filters


def test_the_filters_whiten_the_patches_they_come_from():
    """Applied to correlated patches, the filters give outputs of covariance ~ identity.

    The patches' covariance has a condition number of 260, as FashionMNIST's 3 x 3 patches do
    (their strongest direction holds 78% of the variance, the weakest 0.3%). The filters come
    back in float32: rounding them (relative error 6e-8) moves the whitened covariance by about
    2 x 6e-8 x 260 = 3e-5, so atol 1e-4 holds on any CPU's kernels. (A random 9 x 9 mixing can
    have a condition number of 1e4 or more; there float32 rounding alone moves it by 1e-3, and
    the test depended on the CPU.) The check itself is computed in float64."""
    torch.manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(9, 9, dtype=torch.float64))
    scales = torch.logspace(0, 0.5 * math.log10(260), 9, dtype=torch.float64)
    patches = (torch.randn(50_000, 9, dtype=torch.float64) * scales @ rotation.T * 3 + 1).float()
    filters = whitening_filters(patches, eps=1e-9)
    x = patches.double()
    out = (x - x.mean(0)) @ filters.double().T
    covariance = out.T @ out / len(out)
    assert torch.allclose(covariance, torch.eye(9, dtype=torch.float64), atol=1e-4)
    # strongest direction first: it is the one of largest variance before scaling
    variances = ((patches - patches.mean(0)) @ F.normalize(filters, dim=1).T).var(0)
    assert torch.all(variances[:-1] >= variances[1:])


def image_like(n: int) -> torch.Tensor:
    """Smooth random images of 0..255 pixels: neighbouring pixels correlated, as in real ones."""
    torch.manual_seed(1)
    noise = torch.rand(n, 1, 14, 14) * 255
    return F.interpolate(noise, size=28, mode="bilinear").round().to(torch.uint8)


def test_the_fast_cnn_s_first_conv_starts_decorrelated_in_signed_pairs():
    config = TrainConfig(model="fast_cnn", head_hidden=128)
    torch.manual_seed(0)
    model = build_model(config)
    before = first_conv(model).weight.detach().clone()
    images = image_like(500)
    init_whitening(model, images)
    weight = first_conv(model).weight.detach()
    assert torch.equal(weight[:9], -weight[9:18])  # each filter and its negative
    assert torch.equal(weight[18:], before[18:])  # the other 6 keep their init
    assert torch.allclose(weight[:18].norm(), before[:18].norm())  # the same scale
    x = model.normalize(images).float()
    responses = F.conv2d(x, weight[:9], padding=1).transpose(0, 1).reshape(9, -1)
    correlation = torch.corrcoef(responses)
    assert (correlation - torch.eye(9)).abs().max() < 0.02
    # before, the same layer's responses were strongly correlated
    raw = F.conv2d(x, before[:9], padding=1).transpose(0, 1).reshape(9, -1)
    assert (torch.corrcoef(raw) - torch.eye(9)).abs().max() > 0.5


def test_the_study_cnn_keeps_the_strongest_of_its_25_directions():
    model = build_model(TrainConfig(model="study_cnn"))
    images = image_like(200)
    init_whitening(model, images)
    weight = first_conv(model).weight.detach()  # 32 filters of 5 x 5: 16 directions, signed
    assert torch.equal(weight[:16], -weight[16:])
    x = model.net[0](images).float()  # its Normalize
    patches = F.unfold(x, 5, padding=2).transpose(1, 2).reshape(-1, 25)
    strongest = whitening_filters(patches)[:16]
    kept = weight[:16].reshape(16, 25)
    assert torch.allclose(kept / kept.norm(), strongest / strongest.norm(), atol=1e-5)


def test_whiten_changes_cnn_training_and_is_ignored_by_the_fcn(tiny_data, tiny_config):
    cnn = TrainConfig(model="fast_cnn", epochs=1, batch_size=16)
    plain = train(cnn, tiny_data).history
    whitened = train(dataclasses.replace(cnn, whiten=True), tiny_data).history
    assert plain[0]["train_loss"] != whitened[0]["train_loss"]
    fcn = [train(dataclasses.replace(tiny_config, whiten=w), tiny_data).history for w in (0, 1)]
    assert [h["train_loss"] for h in fcn[0]] == [h["train_loss"] for h in fcn[1]]
