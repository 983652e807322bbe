"""Light augmentation on resident tensors: random left-right flips, small shifts and cutout.

Runs on the device that holds the data, once per epoch over the whole (permuted) training set:
two gathers, no Python loop over images, no DataLoader.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_and_shift(images: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """(N, 1, H, W) -> the same shape: each image flipped left-right with probability 1/2, then
    shifted by a uniform -pad..pad pixels in each direction, filling with 0 (the background);
    `pad` 0: flips only."""
    n, channels, h, w = images.shape
    if channels != 1:
        raise ValueError(f"flip_and_shift expects one channel, got {channels}")
    device = images.device
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    if pad == 0:
        return images
    padded = F.pad(images[:, 0], (pad, pad, pad, pad))  # (N, H + 2 pad, W + 2 pad)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=device)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, :, None]  # (N, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, :]  # (N, 1, W)
    return padded[torch.arange(n, device=device)[:, None, None], rows, cols].unsqueeze(1)


def cutout(images: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """(N, 1, H, W) -> the same shape, each image with a size x size square set to 0 (the
    background), centred on a uniformly random pixel; `size` 0: unchanged."""
    if size == 0:
        return images
    n, _, h, w = images.shape
    device = images.device
    cy = torch.randint(0, h, (n,), generator=generator, device=device)
    cx = torch.randint(0, w, (n,), generator=generator, device=device)
    top, left = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=device)[None, :] - top[:, None]  # (N, H)
    cols = torch.arange(w, device=device)[None, :] - left[:, None]  # (N, W)
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[
        :, None, :
    ]  # (N, H, W)
    return images.masked_fill(inside[:, None], 0)
