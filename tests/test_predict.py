"""Image preprocessing for `predict`, on synthetic PIL images; its bad inputs as a user meets
them."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.core.data import CLASSES
from pipeline.serving import predict


def garment(height: int = 28, width: int = 28) -> np.ndarray:
    """A light, uneven blob on black, as FashionMNIST draws a garment."""
    y, x = np.mgrid[:height, :width]
    blob = (abs(y - height / 2) < height / 3) & (abs(x - width / 2) < width / 4)
    return np.where(blob, 90 + (x * 5 + y * 3) % 160, 0).astype(np.uint8)


def test_a_28x28_grayscale_image_passes_unchanged():
    pixels = garment()
    tensor = predict.to_tensor(Image.fromarray(pixels))
    assert tensor.shape == (1, 1, 28, 28) and tensor.dtype == torch.float32
    assert torch.equal(tensor[0, 0], torch.from_numpy(pixels).float())


def test_dark_on_light_is_inverted_to_light_on_dark():
    pixels = garment(140, 140)
    light_on_dark = predict.to_tensor(Image.fromarray(pixels))
    dark_on_light = predict.to_tensor(Image.fromarray(255 - pixels))
    assert torch.equal(light_on_dark, dark_on_light)
    assert light_on_dark[0, 0, 0].max() == 0 and light_on_dark.max() > 150  # dark border


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "1", "CMYK"])
@pytest.mark.parametrize("size", [(28, 28), (300, 200), (17, 45)])
def test_any_mode_and_size_becomes_one_28x28_image(mode, size):
    image = Image.fromarray(garment(size[1], size[0])).convert(mode)
    tensor = predict.to_tensor(image)
    assert tensor.shape == (1, 1, 28, 28) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 255 and tensor.max() > 0


def test_a_wide_image_is_padded_not_stretched():
    pixels = np.full((10, 40), 200, dtype=np.uint8)  # a light bar, 4 times wider than high
    pixels[:, :2] = pixels[:, -2:] = 0  # dark border: light-on-dark, not inverted
    pixels[:1] = pixels[-1:] = 0
    tensor = predict.to_tensor(Image.fromarray(pixels))[0, 0]
    rows = (tensor > 50).any(1).nonzero().flatten()
    assert 4 <= len(rows) <= 9  # about a quarter of the height, centred
    assert tensor[:8].max() == 0 and tensor[-8:].max() == 0


def test_transparent_background_counts_as_light():
    rgba = np.zeros((56, 56, 4), dtype=np.uint8)  # transparent everywhere ...
    rgba[14:42, 20:36] = (30, 30, 30, 255)  # ... but a dark opaque shirt
    tensor = predict.to_tensor(Image.fromarray(rgba, "RGBA"))[0, 0]
    assert tensor[0].max() == 0 and tensor[14, 14] > 200  # inverted: light shirt on black


def test_describe_lists_the_most_likely_classes():
    probs = torch.zeros(10)
    probs[7], probs[5], probs[9] = 0.9, 0.06, 0.04
    assert predict.describe(probs, top=2) == f"{CLASSES[7]} 90.0%, {CLASSES[5]} 6.0%"


def test_a_model_that_is_not_there_is_one_line(tmp_path, command):
    import mlflow

    mlflow.MlflowClient().search_experiments()  # an empty store: the model is what is missing
    Image.fromarray(garment()).save(tmp_path / "ok.png")
    out = command("predict", "ok.png", "--model-uri", "models:/no-such-model@champion")
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.startswith("error: ")
        and "model 'models:/no-such-model@champion' not found" in out.stderr
    )
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_predict_without_a_store_says_so_and_creates_none(tmp_path, command, monkeypatch):
    Image.fromarray(garment()).save(tmp_path / "ok.png")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    out = command("predict", "ok.png")
    assert out.returncode == 2
    assert out.stderr.startswith(
        "error: model 'models:/fashion-mnist-fcn@champion' not found: "
        "there is no tracking store at mlflow.db"
    )
    assert not (tmp_path / "mlflow.db").exists()
