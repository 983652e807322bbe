import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.config import INITS, TrainConfig
from pipeline.core.models import FCN, NORMAL_STD, FastCNN, StudyCNN, build_model, init_weights


def expected_std(scheme: str, fan_in: int, fan_out: int) -> float:
    """What each scheme's formula gives (uniform U(-b, b) has std b / sqrt(3))."""
    return {
        "default": 1 / math.sqrt(fan_in) / math.sqrt(3),
        "normal": NORMAL_STD,
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_uniform": math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3),
        "kaiming_uniform": math.sqrt(6 / fan_in) / math.sqrt(3),
        "kaiming_normal": math.sqrt(2 / fan_in),
    }[scheme]


@pytest.mark.parametrize(
    "model",
    [
        FCN(),
        FCN((64,), dropout=0.5, batch_norm=True),
        FCN(()),
        StudyCNN(),
        StudyCNN(0.3, True),
        FastCNN(),
        FastCNN((8, 16), dropout=0.2, batch_norm=False),
    ],
)
@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (5, 784)])
def test_raw_pixels_in_ten_logits_out(model, shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    model.eval()
    assert model(x).shape == (5, 10)
    assert torch.allclose(model(x), model(x.float()))  # uint8 and float pixels agree


def test_study_cnn_is_the_study_architecture():
    convs = [m for m in StudyCNN().modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in StudyCNN().modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (2, 2)),
        (32, 64, (5, 5), (2, 2)),
    ]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (3136, 256),
        (256, 128),
        (128, 10),
    ]


def test_fast_cnn_averages_each_image_and_its_mirror_in_eval_mode():
    torch.manual_seed(0)
    model = FastCNN().eval()
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    mirrored = x.flip(3)
    assert torch.allclose(model(x), model(mirrored), atol=1e-5)
    plain = FastCNN(flip_average=False)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    assert torch.allclose(model(x), (plain(x) + plain(mirrored)) / 2, atol=1e-5)
    assert not torch.allclose(plain(x), plain(mirrored), atol=1e-3)  # the average is not moot
    model.train()
    assert not torch.allclose(model(x), model(mirrored), atol=1e-3)  # training sees one view


def test_fast_cnn_translation_averaging_weighs_three_flip_averaged_views():
    torch.manual_seed(0)
    model = FastCNN().eval()
    shifted = FastCNN(translate=1).eval()
    shifted.load_state_dict(model.state_dict())
    x = torch.zeros(4, 1, 30, 30, dtype=torch.uint8)
    x[:, :, 1:29, 1:29] = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    inner = x[:, :, 1:29, 1:29]  # 0 pixels moved in at the border: what padding brings in
    up_left, down_right = x[:, :, 2:30, 2:30], x[:, :, 0:28, 0:28]
    expected = model(inner) / 2 + (model(up_left) + model(down_right)) / 4
    assert torch.allclose(shifted(inner), expected, atol=1e-5)
    assert not torch.allclose(shifted(inner), model(inner), atol=1e-3)  # the average is not moot


def test_translation_averaging_leaves_a_translation_invariant_model_unchanged():
    # Mean of all pixels, as ten logits: moving a garment on its background changes nothing.
    class MeanPixel(nn.Module):
        def forward(self, x):
            return x.mean((1, 2, 3))[:, None] * torch.arange(1.0, 11.0)

    plain, shifted = FastCNN().eval(), FastCNN(translate=2).eval()
    for model in (plain, shifted):
        model.features, model.head = nn.Identity(), MeanPixel()
    x = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 6:20, 8:22] = torch.randint(0, 256, (3, 1, 14, 14), dtype=torch.uint8)
    assert torch.allclose(shifted(x), plain(x), atol=1e-5)


def test_fast_cnn_pools_to_seven_pixels_and_keeps_them_for_its_linear_layer():
    model = FastCNN()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 24, (3, 3)),
        (24, 48, (3, 3)),
        (48, 96, (3, 3)),
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert model.head[-1].in_features == 96 * 7 * 7
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 96 * 7 * 7)


def test_fast_cnn_head_hidden_adds_one_hidden_layer_before_the_logits():
    from pipeline.core.config import TrainConfig
    from pipeline.core.models import build_model

    model = build_model(TrainConfig(model="fast_cnn", batch_norm=True, head_hidden=128))
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (96 * 7 * 7, 128),
        (128, 10),
    ]
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.head)
    assert model.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("scheme", INITS)
def test_init_schemes_give_their_weight_statistics(scheme):
    torch.manual_seed(0)
    model = FCN((300, 200))
    init_weights(model, scheme)
    first = model.net[2]  # Normalize, Flatten, then the 784 -> 300 Linear
    assert first.weight.shape == (300, 784)
    want = expected_std(scheme, 784, 300)
    assert first.weight.std().item() == pytest.approx(want, rel=0.03)
    assert first.weight.mean().item() == pytest.approx(0, abs=want / 20)
    if scheme != "default":
        assert torch.all(first.bias == 0)


@pytest.mark.parametrize(
    "model_name, batch_norm",
    [("fcn", False), ("fcn", True), ("study_cnn", False), ("study_cnn", True), ("fast_cnn", True)],
)
def test_initial_loss_is_near_ln_10(model_name, batch_norm):
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=model_name, batch_norm=batch_norm)).eval()
    images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
    loss = F.cross_entropy(model(images), torch.randint(0, 10, (256,)))
    assert loss.item() == pytest.approx(math.log(10), abs=0.25)


def test_normalization_travels_with_the_state_dict():
    keys = FCN().state_dict().keys()
    assert {"net.0.scale", "net.0.shift"} <= set(keys)
