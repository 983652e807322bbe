"""Whitening init of a CNN's first convolution, as the fastest CIFAR-10 recipes (airbench) do.

The first convolution of a network sees k x k patches of pixels, and neighbouring pixels are
strongly correlated: of the variance of FashionMNIST's 3 x 3 patches, one direction (their mean
brightness) holds 78%, the weakest 0.3%. Initialising the filters as the eigenvectors of the
patches' covariance, each divided by the square root of its eigenvalue (and each also negated,
so that a ReLU further on keeps both signs), makes the layer's outputs decorrelated with equal
variance from the first step: every direction of the patch space starts at the same scale
instead of the few bright ones dominating the gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.models import Normalize

# Of the training images, the first this many give the patch statistics: 7.8 M patches of 3 x 3
# (280 MB while unfolded, once per run).
IMAGES = 10_000
# Added to the eigenvalues: the smallest directions are pixel noise, not worth amplifying.
EPS = 5e-4
# Patches summed in float64 this many at a time (72 MB for 3 x 3 patches): in float32 the sums
# of millions of products carry rounding errors that depend on the CPU's kernels (AVX2 or
# AVX-512 split the sums differently), and the weakest direction, 1/260 of the strongest's
# variance in FashionMNIST's 3 x 3 patches, would inherit them amplified.
CHUNK = 1 << 20


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@torch.no_grad()
def whitening_filters(patches: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(N, d) patches -> (d, d) filters, one a row, strongest direction first: the
    eigenvectors of the patches' covariance over the square roots of their eigenvalues."""
    d = patches.shape[1]
    total = torch.zeros(d, dtype=torch.float64)
    products = torch.zeros(d, d, dtype=torch.float64)
    for chunk in patches.split(CHUNK):
        chunk = chunk.double()
        total += chunk.sum(0)
        products += chunk.T @ chunk
    mean = total / len(patches)
    covariance = products / len(patches) - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]
    return filters.flip(0).float()


@torch.no_grad()
def init_whitening(model: nn.Module, images: torch.Tensor) -> None:
    """Set the first convolution's first filters to the whitening filters of `images`' patches
    and their negatives (2 k^2 filters, the strongest kept where the layer has fewer), scaled to
    the size of the weights they replace so the learning rate keeps its meaning; the other
    filters keep their init. `images` are raw pixels, normalized as the model normalizes them."""
    conv = first_conv(model)
    if conv.in_channels != 1 or conv.groups != 1:
        raise ValueError("whitening init expects a first convolution over one channel")
    if isinstance(conv.padding, str):
        raise ValueError("whitening init expects the first convolution's padding in pixels")
    kh, kw = conv.kernel_size
    normalize = next(m for m in model.modules() if isinstance(m, Normalize))
    x = normalize(images[:IMAGES]).float()
    patches = F.unfold(x, (kh, kw), padding=conv.padding).transpose(1, 2).reshape(-1, kh * kw)
    filters = whitening_filters(patches)
    half = min(len(filters), conv.out_channels // 2)
    both = torch.cat([filters[:half], -filters[:half]]).reshape(2 * half, 1, kh, kw)
    replaced = conv.weight[: 2 * half]
    conv.weight[: 2 * half] = both * (replaced.norm() / both.norm())
