"""A faithful copy of the study's training loop, the baseline our core is measured against.

As the study (docs/study.md) and the usual tutorials do it: torchvision's FashionMNIST
dataset with ToTensor + Normalize, a 50k/10k random split, DataLoaders (training batch 512,
shuffled; evaluation batch 256), per batch zero_grad / forward / cross-entropy / backward / step
with `loss.item()` accumulated on the host, and every epoch the loss and accuracy of the
training, validation and test sets.
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from pipeline.core.metrics import TEST_ACC, TEST_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS


def torchvision_root(data_dir: Path, raw_files: dict[str, Path]) -> Path:
    """A torchvision root (FashionMNIST/raw/ with the decompressed IDX files) made from the
    files our `data` module found, so the copy needs no download."""
    raw = data_dir / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in raw_files.items():
        target = raw / name
        if not target.exists():
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return data_dir / "torchvision"


def base_fcn() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 200),
        nn.ReLU(),
        nn.Linear(200, 10),
    )


def evaluate(model: nn.Module, loader, loss_fn) -> tuple[float, float]:
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x)
            total_loss += loss_fn(out, y).item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return total_loss / n, correct / n


def train(
    root: Path, epochs: int, lr: float = 0.02, seed: int = 0, train_subset: int | None = None
) -> dict:
    """The base FCN with SGD, as the study trains it. Returns times and final accuracies."""
    from torch.utils.data import DataLoader, Subset, random_split
    from torchvision import datasets, transforms

    start = time.perf_counter()
    torch.manual_seed(seed)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    full = datasets.FashionMNIST(root, train=True, download=False, transform=transform)
    test_set = datasets.FashionMNIST(root, train=False, download=False, transform=transform)
    train_set, val_set = random_split(full, [50_000, 10_000])
    if train_subset:
        train_set = Subset(train_set, range(train_subset))
    train_loader = DataLoader(train_set, batch_size=512, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=256)
    test_loader = DataLoader(test_set, batch_size=256)
    model = base_fcn()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    epoch_times, history = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        running, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
        val = evaluate(model, val_loader, loss_fn)
        test = evaluate(model, test_loader, loss_fn)
        history.append(
            {
                TRAIN_LOSS: running / n,
                TRAIN_ACC: correct / n,
                VAL_LOSS: val[0],
                VAL_ACC: val[1],
                TEST_LOSS: test[0],
                TEST_ACC: test[1],
            }
        )
        epoch_times.append(time.perf_counter() - t0)
    return {
        "wall_s": time.perf_counter() - start,
        "epoch_times_s": epoch_times,
        "final": history[-1],
    }
