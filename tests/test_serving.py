"""The served model: every bad input is refused with a 4xx and its reason as valid JSON, never
a made-up class; under 16 concurrent clients every answer is right; after bad requests it
serves on.

The input check (`fashion_mnist_pyfunc.checked`) is tested in this process; the rest against a
real `mlflow models serve` on 127.0.0.1 (bench/serve.py starts it on a free port and always
stops its process group), of a small FCN that `train` logged.
"""

from __future__ import annotations

import http.client
import json
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import mlflow
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from bench import serve
from pipeline.core import data
from pipeline.tracking import fashion_mnist_pyfunc as pyfunc
from tests.conftest import cli

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


@pytest.mark.parametrize(
    "make_input, message",
    [
        (zeros(1, 784), "images must have shape (N, 1, 28, 28); got (1, 784)"),
        (zeros(1, 28, 28), "got (1, 28, 28)"),
        (zeros(1, 1, 28, 27), "got (1, 1, 28, 27)"),
        (zeros(1, 3, 28, 28), "got (1, 3, 28, 28)"),
        (zeros(0, 1, 28, 28), "0 images; a request holds 1 to 10000"),
        (
            zeros(pyfunc.MAX_IMAGES + 1, 1, 28, 28),
            "10001 images; a request holds 1 to 10000: split",
        ),
        (lambda: np.full((1, 1, 28, 28), "dark", dtype=object), "pixels must be numbers"),
        (lambda: [[[[0.0] * 28] * 27 + [[0.0] * 27]]], "pixels must be numbers"),  # ragged
    ],
    ids=[
        "flat",
        "no channel",
        "27 columns",
        "3 channels",
        "empty",
        "oversized",
        "strings",
        "ragged",
    ],
)
def test_a_malformed_batch_is_refused_with_400_saying_why(make_input, message):
    with pytest.raises(MlflowException) as e:
        pyfunc.checked(make_input())
    assert e.value.get_http_status_code() == 400
    assert message in e.value.message


@pytest.mark.parametrize(
    "make_input",
    [
        zeros(1, 1, 28, 28),
        lambda: np.full((1, 1, 28, 28), 255, dtype=np.uint8),
        lambda: np.full((3, 1, 28, 28), 127.5),
        zeros(pyfunc.MAX_IMAGES, 1, 28, 28),
    ],
    ids=["zeros", "uint8 255", "halves", "the most images"],
)
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
    serve.strict_json(e.value.serialize_as_json())  # its reason is still valid JSON


# The load driver's judge: the concurrency test below passes only if it catches each of these.
@pytest.mark.parametrize(
    "status, body, classes, verdict",
    [
        (200, b'{"predictions": [{"class_index": 3}, {"class_index": 1}]}', (3, 1), None),
        (
            200,
            b'{"predictions": [{"class_index": 3}, {"class_index": 1}]}',
            (1, 3),
            "wrong classes",
        ),
        (200, b'{"predictions": [{"class_index": 3}]}', (3, 1), "wrong classes"),
        (
            200,
            b'{"predictions": [{"class_index": 0, "probabilities": [NaN]}]}',
            (0,),
            "malformed answer",
        ),
        (
            200,
            b'{"predictions": [{"class_index": 0, "probabilities": [-Infinity]}]}',
            (0,),
            "malformed answer",
        ),
        (200, b"<html>", (0,), "malformed answer"),
        (200, b'{"answers": []}', (0,), "malformed answer"),
        (400, b'{"error_code": "INVALID_PARAMETER_VALUE"}', (0,), "HTTP 400"),
        (504, b"Request processing time exceeded limit", (0,), "HTTP 504"),
    ],
)
def test_the_load_driver_counts_every_wrong_answer(status, body, classes, verdict):
    assert serve.wrong_answer(status, body, classes) == verdict


def test_load_figures_are_strict_json_even_with_no_answer():
    none = serve.Load(
        clients=2, images_per_request=64, wall_s=2.0, errors=Counter({"HTTP 500": 3})
    ).figures()
    assert none["requests"] == 0 and none["p50_ms"] is None and none["errors"] == {"HTTP 500": 3}
    json.dumps(none, allow_nan=False)
    some = serve.Load(
        clients=1, images_per_request=64, wall_s=2.0, latencies_s=[0.001, 0.003, 0.002]
    ).figures()
    assert some["p50_ms"] == pytest.approx(2.0) and some["images_per_s"] == pytest.approx(96)


# --- a real server ---------------------------------------------------------------------------


class Logged(NamedTuple):
    uri: str  # models:/m-...
    env: dict[str, str]  # its private store for `mlflow models serve`
    folder: Path
    module: torch.nn.Module  # the same model, bare


@pytest.fixture(scope="module")
def logged(tmp_path_factory, data_dir) -> Logged:
    """A small FCN logged by `train` in a private store."""
    folder = tmp_path_factory.mktemp("serving")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}", MLFLOW_EXPERIMENT_NAME="serving"
    )
    out = cli(
        "train",
        "--epochs",
        "1",
        "--hidden",
        "64",
        "--optimizer",
        "adam",
        "--lr",
        "1e-3",
        "--data-dir",
        str(data_dir),
        env=env,
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("serving").experiment_id
    (model,) = client.search_logged_models(experiment_ids=[experiment])
    module = mlflow.pytorch.load_model(model.artifact_location, map_location="cpu")
    return Logged(f"models:/{model.model_id}", env, folder, module)


@pytest.fixture(scope="module")
def port(logged):
    with serve.served(logged.uri, logged.env, logged.folder / "models-serve.log") as port:
        yield port


@pytest.fixture(scope="module")
def requests(logged, data_dir) -> list[serve.Request]:
    """16 one-image and 8 64-image requests of distinct test images, with their classes."""
    images = data.load(data_dir).test.images
    return serve.requests_for(logged.module, images[:1000], 1, 16) + serve.requests_for(
        logged.module, images[1000:], 64, 8
    )


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=serve.REQUEST_TIMEOUT_S)
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_sixteen_concurrent_clients_get_every_answer_right(port, requests):
    """16 threads, each on its own connection, for 3 s: every answer HTTP 200, strict JSON, and
    the bare model's classes for the images it sent (no answer crosses to another request)."""
    load = serve.drive(port, requests, clients=16, seconds=3)
    assert load.errors == {}, load.errors
    assert all(n > 0 for n in load.per_client), load.per_client


def inputs(pixels, **dumps):
    """The request body of `pixels`, made when a test runs (the oversized one is 16 MB)."""
    return lambda: json.dumps(
        {"inputs": pixels.tolist() if hasattr(pixels, "tolist") else pixels}, **dumps
    ).encode()


def first_zero_as_null() -> bytes:
    return inputs(ZERO)().replace(b"0.0", b"null", 1)


BAD_REQUESTS = [
    # Pixel values, sent as Python's json writes them (bare NaN / Infinity tokens) or as numbers
    ("nan", inputs(with_pixel(float("nan"))), "the first nan (image 0, row 3, column 5)"),
    ("+inf", inputs(with_pixel(float("inf"))), "the first inf (image 0"),
    ("-inf", inputs(with_pixel(float("-inf"))), "the first -inf (image 0"),
    ("-1", inputs(with_pixel(-1)), "the first -1 (image 0"),
    ("256", inputs(with_pixel(256)), "the first 256 (image 0"),
    ("1e30", inputs(with_pixel(1e30)), "the first 1e+30 (image 0"),
    ("1e39", inputs(with_pixel(1e39)), "the first inf (image 0"),
    ("null pixel", first_zero_as_null, "the first nan (image 0, row 0, column 0)"),
    (
        "nan in image 2 of 3",
        inputs(with_pixel(float("nan"), image=2, n=3)),
        "(image 2, row 3, column 5)",
    ),
    (
        "nan under instances",
        lambda: json.dumps({"instances": with_pixel(np.nan).tolist()}).encode(),
        "the first nan (image 0, row 3, column 5)",
    ),
    # Shapes and types
    ("flat", inputs([[0] * 784]), "does not match expected shape (-1, 1, 28, 28)"),
    ("27 columns", inputs([[[[0] * 27] * 28]]), "does not match expected shape"),
    ("ragged", inputs([[[[0] * 28] * 27 + [[0] * 27]]]), "inhomogeneous"),
    ("strings", inputs([[[["dark"] * 28] * 28]]), "could not convert string to float"),
    ("empty batch", inputs([]), "Failed to enforce schema of data '[]'"),
    ("one empty image", inputs([[]]), "Shape of input (1, 0) does not match"),
    ("a number", inputs(5), "Shape of input () does not match"),
    ("null", inputs(None), "an input of type <class 'NoneType'> was found"),
    (
        "oversized",
        lambda: inputs(
            zeros(pyfunc.MAX_IMAGES + 1, 1, 28, 28, dtype=np.uint8)(), separators=(",", ":")
        )(),
        "10001 images; a request holds 1 to 10000",
    ),
    # Not the scoring protocol at all
    ("not JSON", lambda: b"pixels please", "valid JSON"),
    ("cut short", lambda: inputs(ZERO)()[:-7], "valid JSON"),
    ("no inputs key", lambda: b'{"pixels": []}', "'inputs'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, body, message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_gets_a_400_with_its_reason_and_the_server_serves_on(
    port, requests, name, body, message
):
    got, answer = post(port, body())
    assert got == 400, answer[:2000]
    reason = serve.strict_json(answer)["message"]  # valid JSON, no bare NaN
    assert message in reason, reason[-2000:]
    good = requests[-1]
    assert serve.wrong_answer(*post(port, good.body), good.classes) is None


CSV_NAN = ",".join(["nan"] + ["0"] * 783).encode()


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, content_type, status, message",
    [
        (b"0,0,0", "text/plain", 415, b"only supports the following content types"),
        (CSV_NAN, "text/csv", 400, b"TensorSpec only supports numpy types"),  # MLflow's limit
    ],
    ids=["text", "CSV with a NaN"],
)
def test_other_content_types_get_a_4xx_and_the_server_serves_on(
    port, requests, body, content_type, status, message
):
    got, answer = post(port, body, content_type)
    assert got == status and message in answer, answer[-2000:]
    good = requests[0]
    assert serve.wrong_answer(*post(port, good.body), good.classes) is None
