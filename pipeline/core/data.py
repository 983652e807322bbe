"""FashionMNIST as resident uint8 tensors: find the IDX files, verify them, cache them, split them.

`prepare(data_dir)` finds the four original IDX files (in `data_dir`, then where Debian's
`dataset-fashion-mnist` installs them, then torchvision's download), checks the SHA-256 of their
decompressed bytes, and caches them once as `data_dir/fashion_mnist.pt`. `load(data_dir)` returns
the train / validation / test splits from that cache in a fraction of a second.

The validation split is 10,000 of the 60,000 training images, drawn with a fixed seed that does not
depend on the training seed, so every run selects on the same images. The 10,000 test images are
only ever reported, never used for selection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.core import files
from pipeline.core.errors import UserError

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
VAL_SIZE = 10_000
SPLIT_SEED = 20_240_601  # fixed forever: changing it changes every validation metric
CACHE_NAME = "fashion_mnist.pt"
CACHE_FORMAT = 1
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# SHA-256 of the *decompressed* original IDX files: every source (Zalando's, torchvision's mirror,
# Debian's re-compressed .gz) must give exactly these bytes.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


class DataError(UserError):
    """The data cannot be found, or is not the original FashionMNIST."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) uint8 raw pixels: models normalize inside
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class FashionMNIST:
    train: Split
    val: Split
    test: Split
    digest: str  # SHA-256 over the four verified source files: names this exact dataset version

    def to(self, device: torch.device | str) -> FashionMNIST:
        return FashionMNIST(
            self.train.to(device), self.val.to(device), self.test.to(device), self.digest
        )

    def without_holdout(self) -> FashionMNIST:
        """All 60,000 training images in `train` (the validation images after the others) and
        an empty `val`; the same object when `val` is empty already."""
        if not len(self.val):
            return self
        train = Split(
            torch.cat([self.train.images, self.val.images]),
            torch.cat([self.train.labels, self.val.labels]),
        )
        return FashionMNIST(
            train, Split(self.val.images[:0], self.val.labels[:0]), self.test, self.digest
        )

    def training_splits(self, holdout: bool) -> FashionMNIST:
        """What a run with TrainConfig.holdout trains and reports on."""
        return self if holdout else self.without_holdout()


def find_raw_files(data_dir: Path) -> dict[str, Path]:
    """The four IDX files (plain or .gz): in data_dir, else Debian's package, else downloaded."""
    for folder in (data_dir, data_dir / "FashionMNIST" / "raw", DEBIAN_DIR):
        found = _files_in(folder)
        if found:
            return found
    _download(data_dir)
    found = _files_in(data_dir / "FashionMNIST" / "raw")
    if not found:
        raise DataError(f"torchvision's download did not leave the IDX files in {data_dir}")
    return found


def _files_in(folder: Path) -> dict[str, Path] | None:
    found = {}
    for name in SHA256:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found if len(found) == len(SHA256) else None


def _download(data_dir: Path) -> None:
    import torchvision  # only here: the download is the one thing we need it for

    try:
        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(data_dir), train=train, download=True)
    except Exception as e:  # offline machines raise URLError, socket errors, RuntimeError...
        raise DataError(
            f"FashionMNIST is not in {data_dir} nor in {DEBIAN_DIR}, and the download failed "
            f"({type(e).__name__}); run `apt-get install dataset-fashion-mnist` or put the four "
            f"IDX files into {data_dir}"
        ) from None


def read_idx(name: str, path: Path) -> np.ndarray:
    """Decompress (if needed), verify against the known SHA-256, and parse one IDX file."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path}: cannot be read or decompressed ({e}); the file is truncated "
            "or corrupt: delete it and run prepare again"
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DataError(
            f"{path}: SHA-256 of its decompressed bytes is {digest[:12]}..., not the "
            f"original FashionMNIST's {SHA256[name][:12]}...: replace or delete it"
        )
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def prepare(data_dir: str | os.PathLike) -> dict:
    """Verify the raw files and write the tensor cache once; return the cache's contents."""
    data_dir = Path(data_dir)
    blocked = files.not_a_folder(data_dir)
    if blocked:
        raise DataError(
            f"{data_dir}: {blocked}; give --data-dir a folder (it is created if missing)"
        )
    cache = data_dir / CACHE_NAME
    if cache.is_file():
        return _read_cache(cache)  # a corrupt cache is an error, never silently rebuilt over
    if os.path.lexists(cache):  # a folder, a FIFO, a dangling link: nothing we may replace
        raise DataError(
            f"{cache}: is {files.kind(cache)}, not the data cache; move it away, or give "
            "--data-dir another folder"
        )
    sources = find_raw_files(data_dir)
    arrays = {name: torch.from_numpy(read_idx(name, path).copy()) for name, path in sources.items()}
    payload = {
        "format": CACHE_FORMAT,
        "sources": {name: str(path) for name, path in sources.items()},
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
    }
    payload["checksum"] = _checksum(payload)
    buffer = io.BytesIO()  # serialized in memory: a failing disk then raises a plain OSError
    torch.save(payload, buffer)
    try:
        with files.new_folders(data_dir):
            files.write_atomic(cache, buffer.getbuffer())  # whole or not at all
    except OSError as e:  # a file on the way, no permission, a full disk
        raise DataError(
            f"--data-dir {data_dir}: cannot write the data cache {CACHE_NAME}: {files.advice(e)}"
        ) from None
    return payload


def load(data_dir: str | os.PathLike = "data") -> FashionMNIST:
    """The three splits, preparing the cache first if it does not exist yet."""
    payload = prepare(data_dir)
    train_images = payload["train_images"].unsqueeze(1)
    train_labels = payload["train_labels"].long()
    perm = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = perm[:VAL_SIZE], perm[VAL_SIZE:]
    return FashionMNIST(
        train=Split(train_images[train_idx], train_labels[train_idx]),
        val=Split(train_images[val_idx], train_labels[val_idx]),
        test=Split(payload["test_images"].unsqueeze(1), payload["test_labels"].long()),
        digest=payload["checksum"],
    )


def _checksum(payload: dict) -> str:
    h = hashlib.sha256()
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        h.update(payload[key].numpy().tobytes())
    return h.hexdigest()


def _read_cache(cache: Path) -> dict:
    hint = f"delete {cache} and run `python -m pipeline prepare` again"
    try:
        content = cache.read_bytes()
    except OSError as e:  # no permission to read it: not a damage to delete it for
        raise DataError(f"the data cache {cache} cannot be read ({e.strerror or e})") from None
    try:
        payload = torch.load(io.BytesIO(content), weights_only=True)
        ok = (
            payload["format"] == CACHE_FORMAT
            and payload["train_images"].shape == (60_000, 28, 28)
            and payload["test_images"].shape == (10_000, 28, 28)
            and payload["train_images"].dtype == torch.uint8
            and payload["checksum"] == _checksum(payload)
        )
    except Exception:  # torch.load raises many types on a damaged zip / pickle
        ok = False
    if not ok:
        raise DataError(f"the data cache {cache} is corrupt or from another version; {hint}")
    return payload
