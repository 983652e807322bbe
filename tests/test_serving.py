"""The served model's input check (`fashion_mnist_pyfunc.checked`): every bad input is refused
with a 400 and its reason as valid JSON, never answered with a made-up class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from pipeline.core import data
from pipeline.serving import fashion_mnist_pyfunc as pyfunc

ZERO = np.zeros((1, 1, 28, 28), dtype=np.float32)


def with_pixel(value, image: int = 0, row: int = 3, column: int = 5, n: int = 1) -> np.ndarray:
    pixels = np.zeros((n, 1, 28, 28), dtype=np.float64)
    pixels[image, 0, row, column] = value
    return pixels


# Bad pixel values (the class of issue 25: NaN answered as class 0 with bare NaN tokens, far
# out-of-range values as 100%-confident classes) and how the refusal names the first one.
BAD_PIXELS = [
    ("nan", float("nan"), "the first nan (image 0, row 3, column 5)"),
    ("+inf", float("inf"), "the first inf"),
    ("-inf", float("-inf"), "the first -inf"),
    ("-1", -1, "the first -1"),
    ("a hair below 0", -1e-6, "the first -1e-06"),
    ("256", 256, "the first 256"),
    ("255.5", 255.5, "the first 255.5"),
    ("1e30", 1e30, "the first 1e+30"),
    ("-1e30", -1e30, "the first -1e+30"),
    ("1e39, beyond float32", 1e39, "the first inf"),
]


@pytest.mark.parametrize("name, value, where", BAD_PIXELS, ids=[c[0] for c in BAD_PIXELS])
def test_a_bad_pixel_is_refused_with_400_naming_it(name, value, where):
    with pytest.raises(MlflowException) as e:
        pyfunc.checked(with_pixel(value))
    assert e.value.get_http_status_code() == 400
    assert "pixels must be finite numbers in 0..255" in e.value.message
    assert f"1 are not, {where}" in e.value.message


def test_the_refusal_counts_bad_pixels_and_names_the_first_image_holding_one():
    pixels = with_pixel(np.nan, image=2, row=27, column=0, n=4)
    pixels[3, 0, 0, 0] = 300
    with pytest.raises(MlflowException) as e:
        pyfunc.checked(pixels)
    assert "2 are not, the first nan (image 2, row 27, column 0)" in e.value.message


def zeros(*shape: int, dtype=np.float32):
    return lambda: np.zeros(shape, dtype)


@pytest.mark.parametrize("make_input, message", [
    (zeros(1, 784), "images must have shape (N, 1, 28, 28); got (1, 784)"),
    (zeros(1, 28, 28), "got (1, 28, 28)"),
    (zeros(1, 1, 28, 27), "got (1, 1, 28, 27)"),
    (zeros(1, 3, 28, 28), "got (1, 3, 28, 28)"),
    (zeros(0, 1, 28, 28), "0 images; a request holds 1 to 10000"),
    (zeros(pyfunc.MAX_IMAGES + 1, 1, 28, 28), "10001 images; a request holds 1 to 10000: split"),
    (lambda: np.full((1, 1, 28, 28), "dark", dtype=object), "pixels must be numbers"),
    (lambda: [[[[0.0] * 28] * 27 + [[0.0] * 27]]], "pixels must be numbers"),  # ragged
], ids=["flat", "no channel", "27 columns", "3 channels", "empty", "oversized", "strings",
        "ragged"])
def test_a_malformed_batch_is_refused_with_400_saying_why(make_input, message):
    with pytest.raises(MlflowException) as e:
        pyfunc.checked(make_input())
    assert e.value.get_http_status_code() == 400
    assert message in e.value.message


@pytest.mark.parametrize("make_input", [
    zeros(1, 1, 28, 28), lambda: np.full((1, 1, 28, 28), 255, dtype=np.uint8),
    lambda: np.full((3, 1, 28, 28), 127.5), zeros(pyfunc.MAX_IMAGES, 1, 28, 28)],
    ids=["zeros", "uint8 255", "halves", "the most images"])
def test_raw_pixels_in_range_pass_as_float32(make_input):
    model_input = make_input()
    pixels = pyfunc.checked(model_input)
    assert pixels.dtype == np.float32 and pixels.shape == model_input.shape
    np.testing.assert_array_equal(pixels, model_input.astype(np.float32))


def test_a_diverged_network_is_a_server_error_not_a_nan_answer():
    class Diverged(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 10), float("nan"))

    with pytest.raises(MlflowException) as e:
        pyfunc.Classifier(Diverged(), list(data.CLASSES)).predict(ZERO)
    assert e.value.get_http_status_code() == 500
    assert "not finite" in e.value.message
    json.loads(e.value.serialize_as_json(), parse_constant=pytest.fail)  # still strict JSON
