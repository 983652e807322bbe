"""Classify image files with a logged model: `python -m pipeline predict IMAGE... [--model-uri]`.

Any PNG/JPEG of any size or colour mode becomes what the models were trained on: one 28x28
grayscale image of a light garment on a dark background, raw pixels 0..255. Photos and drawings
are usually dark-on-light, so an image whose border is bright is inverted first; a non-square image
is padded to a square (keeping its aspect) before it is resized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.core import files as fs
from pipeline.core.data import CLASSES
from pipeline.core.errors import UserError
from pipeline.serving import evaluate
from pipeline.tracking import store
from pipeline.tracking.fashion_mnist_pyfunc import INPUT_SHAPE

SUFFIXES = (".png", ".jpg", ".jpeg")
SIZE = INPUT_SHAPE[-1]  # the side of the square images the models take
# FashionMNIST backgrounds are black (0): a border brighter than mid-grey means dark-on-light.
BRIGHT_BORDER = 128


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image of any size and mode -> float32 (1, 1, 28, 28), light object on dark, 0..255."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        # Transparent areas are background: lay the image on white, which the border test
        # below then reads as dark-on-light.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() >= BRIGHT_BORDER:
        gray = 255.0 - gray
    height, width = gray.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.float32)  # pad with background, keep the aspect
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = gray
    if side != SIZE:
        small = Image.fromarray(square.round().astype(np.uint8)).resize(
            (SIZE, SIZE), Image.Resampling.LANCZOS
        )
        square = np.asarray(small, dtype=np.float32)
    return torch.from_numpy(square.copy()).reshape(1, 1, SIZE, SIZE)


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, and the PNG/JPEG files inside any folder named, in order. Only regular
    files (symbolic links to them too) are read: opening a FIFO would wait for a writer for good,
    and a device may never end."""
    files = []
    for path in paths:
        if path.is_dir():
            try:
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
            except OSError as e:
                raise UserError(f"{path}: cannot list the folder ({e.strerror or e})") from None
            if not found:
                raise UserError(f"{path}: a folder without PNG or JPEG files")
        else:
            found = [path]
        for file in found:
            if not file.is_file():
                what = fs.kind(file)
                raise UserError(
                    f"{file}: no such file"
                    if what == "missing"
                    else f"{file}: is {what}; predict reads only regular files (PNG, JPEG) "
                    "and folders of them"
                )
        files += found
    return files


def load_images(paths: list[Path]) -> tuple[list[Path], torch.Tensor]:
    """The files and their (N, 1, 28, 28) tensor; read before any model is loaded, so a bad
    file fails at once."""
    files, tensors = image_files(paths), []
    for path in files:
        try:
            with Image.open(path) as image:
                tensors.append(to_tensor(image))
        except Image.DecompressionBombError:
            assert Image.MAX_IMAGE_PIXELS  # Pillow raises it only when a limit is set
            raise UserError(
                f"{path}: too many pixels (Pillow refuses more than "
                f"{2 * Image.MAX_IMAGE_PIXELS:,} as a possible decompression "
                "bomb); scale the image down first"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            reason = (
                "not an image file Pillow can read (PNG, JPEG, ...)"
                if isinstance(e, UnidentifiedImageError)
                else f"cannot be read ({e})"
            )
            raise UserError(f"{path}: {reason}") from None
    return files, torch.cat(tensors)


def load_model(uri: str) -> torch.nn.Module:
    """The model at `uri`, checked and loaded as `evaluate` does (default store ./mlflow.db)."""
    store.configure(experiment=False)
    evaluate.resolve(uri)  # names nothing / not ours / no store: one line, nothing created
    return evaluate.load(uri)


@torch.inference_mode()
def probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, 10) class probabilities; the models return logits."""
    return model(images.float()).softmax(1)


def describe(probs: torch.Tensor, top: int = 3) -> str:
    """'Sneaker 97.1%, Sandal 2.4%, Ankle boot 0.4%' for one image's probabilities."""
    values, indices = probs.topk(min(top, len(CLASSES)))
    return ", ".join(
        f"{CLASSES[i]} {100 * v:.1f}%" for v, i in zip(values.tolist(), indices.tolist())
    )
