"""The networks: the study's FCN and CNN, built from a `TrainConfig`.

Every model takes raw pixels (uint8 or float in 0..255, shape (N, 1, 28, 28) or (N, 784)) and
normalizes inside, so a logged model can be fed real images without knowing our constants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.config import TrainConfig

# Mean and std of the 60k FashionMNIST training pixels on the 0..1 scale.
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530
# "normal" init: N(0, 0.05^2), Keras' RandomNormal default; the study's "random normal" row.
NORMAL_STD = 0.05


class Normalize(nn.Module):
    """Raw 0..255 pixels -> standardized floats, reshaped to (N, 1, 28, 28)."""

    def __init__(self) -> None:
        super().__init__()
        # Buffers, not constants: they travel with the state dict and the logged model.
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * PIXEL_STD)))
        self.register_buffer("shift", torch.tensor(PIXEL_MEAN / PIXEL_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 28, 28)
        if x.dtype == self.scale.dtype:  # the caller's tensor: not to be changed in place
            return (x * self.scale).sub_(self.shift)
        # Raw pixels: the converted copy is ours, so scale and shift it in place (one new
        # tensor per batch instead of two).
        return x.to(self.scale.dtype).mul_(self.scale).sub_(self.shift)


class FCN(nn.Module):
    """784 -> hidden... -> 10, each hidden layer Linear [-> BatchNorm] -> ReLU [-> Dropout]."""

    def __init__(
        self, hidden: tuple[int, ...] = (300, 200), dropout: float = 0.0, batch_norm: bool = False
    ):
        super().__init__()
        layers: list[nn.Module] = [Normalize(), nn.Flatten()]
        width = 28 * 28
        for size in hidden:
            # With batch norm right after, the Linear's bias is redundant (BN re-centers).
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            # In place: neither the Linear nor batch norm before it needs its output for the
            # backward pass, so one tensor per layer and batch is spared.
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StudyCNN(nn.Module):
    """The study's "AlexNet-style" CNN, exactly: two 5x5 conv blocks, then 3136-256-128-10.

    conv 1->32 pad 2, ReLU, maxpool 2 -> conv 32->64 pad 2, ReLU, maxpool 2 -> fc 3136->256, ReLU
    -> fc 256->128, ReLU -> fc 128->10. Optional batch norm after each conv / hidden fc and
    dropout after each hidden fc (where the parameters are; conv dropout rarely helps).
    """

    # Per-epoch evaluation batch (pipeline.core.training.predict): on 2 cores 128 images at a time
    # took 9.4 s per 20k, 1024 took 10.8 s.
    eval_batch = 128

    def __init__(self, dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()

        def conv(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout)] if batch_norm else []
            return [
                nn.Conv2d(cin, cout, 5, padding=2, bias=not batch_norm),
                *norm,
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        def fc(fin: int, fout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(fout)] if batch_norm else []
            drop = [nn.Dropout(dropout)] if dropout > 0 else []
            return [nn.Linear(fin, fout, bias=not batch_norm), *norm, nn.ReLU(), *drop]

        self.net = nn.Sequential(
            Normalize(),
            *conv(1, 32),
            *conv(32, 64),
            nn.Flatten(),
            *fc(64 * 7 * 7, 256),
            *fc(256, 128),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FastCNN(nn.Module):
    """Our fast recipe's network: blocks of 3x3 conv -> 2x2 max pool -> batch norm -> ReLU, the
    last without the pool (28 -> 14 -> 7 -> 7 pixels; widths 24, 48, 96 by default), then one
    linear layer.

    Pooling before batch norm and ReLU (as airbench does) runs those two on a quarter of the
    pixels; max pool and ReLU commute, so only batch norm sees pooled instead of full maps.
    Measured on 2 cores (docs/history.md, "How the fast CNN recipe was chosen": 7 epochs
    at widths 32/64/128): keeping the last block's 7x7 maps (a pool to 3x3 drops a row and a
    column) gave 93.15% test against 92.89%, for the same time; widths 24/48/96 train an epoch
    in 30 s instead of 48 s, and 10 epochs of them beat 7 of the wider net (93.27%).
    In eval mode the network averages the logits of each image and its mirror image (test-time
    flip averaging) in one forward pass of the doubled batch; the logged model does the same.
    With `translate` n > 0 it also averages the flip-averaged logits of the image moved n pixels
    up-left and n pixels down-right (weights 1/2, 1/4, 1/4, as airbench's test-time
    augmentation): three times the evaluation work.
    """

    # Per-epoch evaluation batch (doubled by the flips): on 2 cores 128 images at a time took
    # 9.5 s per 20k, 1024 took 17.5 s (measured at widths 32/64/128).
    eval_batch = 128

    def __init__(
        self,
        widths: tuple[int, ...] = (24, 48, 96),
        dropout: float = 0.0,
        batch_norm: bool = True,
        flip_average: bool = True,
        translate: int = 0,
        head_hidden: int = 0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        cin, size = 1, 28
        for i, width in enumerate(widths):
            norm = [nn.BatchNorm2d(width)] if batch_norm else []
            last = i == len(widths) - 1
            pool = [] if last else [nn.MaxPool2d(2)]
            layers += [
                nn.Conv2d(cin, width, 3, padding=1, bias=not batch_norm),
                *pool,
                *norm,
                nn.ReLU(),
            ]
            cin, size = width, size if last else size // 2
        self.normalize = Normalize()
        self.features = nn.Sequential(*layers, nn.Flatten())
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        features = cin * size * size
        # With batch norm right after, the hidden layer's bias is redundant (as in FCN).
        hidden = (
            [nn.Linear(features, head_hidden, bias=False), nn.BatchNorm1d(head_hidden), nn.ReLU()]
            if head_hidden
            else []
        )
        self.head = nn.Sequential(*hidden, *drop, nn.Linear(head_hidden or features, 10))
        self.flip_average = flip_average
        self.translate = translate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.training or not self.flip_average:
            return self.head(self.features(x))
        if not self.translate:
            return self._flip_averaged(x)
        n = self.translate
        # Pad with the normalized value of a 0 pixel: a moved garment leaves background behind.
        padded = F.pad(x, (n, n, n, n), value=-float(self.normalize.shift))
        h, w = x.shape[-2:]
        up_left, down_right = padded[..., 2 * n :, 2 * n :], padded[..., :h, :w]
        views = self._flip_averaged(torch.cat([x, up_left, down_right])).chunk(3)
        return views[0] / 2 + (views[1] + views[2]) / 4

    def _flip_averaged(self, x: torch.Tensor) -> torch.Tensor:
        plain, mirrored = self.head(self.features(torch.cat([x, x.flip(3)]))).chunk(2)
        return (plain + mirrored) / 2


def init_weights(model: nn.Module, scheme: str) -> None:
    """Re-initialize every Linear / Conv weight with `scheme`; biases start at zero.

    "default" leaves PyTorch's own init (Kaiming-uniform with a=sqrt(5), i.e. U(+-1/sqrt(fan_in)),
    and uniform biases) untouched. The Kaiming schemes use the ReLU gain, as the layers are ReLU.
    """
    if scheme == "default":
        return
    fill = {
        "normal": lambda w: nn.init.normal_(w, 0.0, NORMAL_STD),
        "xavier_normal": nn.init.xavier_normal_,
        "xavier_uniform": nn.init.xavier_uniform_,
        "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    }[scheme]
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fill(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_model(config: TrainConfig) -> nn.Module:
    model: nn.Module
    if config.model == "fcn":
        model = FCN(config.hidden, config.dropout, config.batch_norm)
    else:
        cnn: nn.Module = (
            FastCNN(
                dropout=config.dropout,
                batch_norm=config.batch_norm,
                translate=config.tta_shift,
                head_hidden=config.head_hidden,
            )
            if config.model == "fast_cnn"
            else StudyCNN(dropout=config.dropout, batch_norm=config.batch_norm)
        )
        # channels_last lets oneDNN / cuDNN pick faster conv kernels (measured 1.45x on 2 cores).
        model = cnn.to(memory_format=torch.channels_last)
    init_weights(model, config.init)
    return model
