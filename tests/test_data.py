import gzip
import shutil

import pytest
import torch

from pipeline.core import data

LABELS = "t10k-labels-idx1-ubyte"


@pytest.fixture
def labels_file(tmp_path):
    """A verified original file (the small test labels) to tamper with."""
    source = data.find_raw_files(tmp_path / "empty")[LABELS]
    target = tmp_path / f"{LABELS}.gz"
    raw = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    target.write_bytes(gzip.compress(raw))
    return target, raw


def test_an_original_file_parses_whatever_its_compression(labels_file, tmp_path):
    gz, raw = labels_file
    plain = tmp_path / LABELS
    plain.write_bytes(raw)
    a, b = data.read_idx(LABELS, gz), data.read_idx(LABELS, plain)
    assert a.shape == (10_000,) and (a == b).all() and set(a.tolist()) == set(range(10))


def test_a_changed_byte_is_an_error_naming_the_file(labels_file):
    gz, raw = labels_file
    tampered = bytearray(raw)
    tampered[100] = (tampered[100] + 1) % 10
    gz.write_bytes(gzip.compress(bytes(tampered)))
    with pytest.raises(data.DataError, match=f"{gz.name}: SHA-256 .* not the original"):
        data.read_idx(LABELS, gz)


def test_a_truncated_file_is_an_error_naming_the_file(labels_file):
    gz, _ = labels_file
    gz.write_bytes(gz.read_bytes()[:200])
    with pytest.raises(data.DataError, match=f"{gz.name}: cannot be read or decompressed"):
        data.read_idx(LABELS, gz)


def test_files_in_data_dir_come_first(tmp_path):
    for path in data.find_raw_files(tmp_path / "nowhere").values():
        shutil.copy(path, tmp_path / path.name)
    found = data.find_raw_files(tmp_path)
    assert set(found) == set(data.SHA256)
    assert all(p.parent == tmp_path for p in found.values())


def test_wrong_files_in_data_dir_are_an_error(tmp_path):
    for name in data.SHA256:
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 100)
    with pytest.raises(data.DataError, match="SHA-256"):
        data.prepare(tmp_path)
    assert not (tmp_path / data.CACHE_NAME).exists()  # nothing half-written


@pytest.mark.slow
def test_prepare_verifies_caches_and_splits(data_dir):
    cache = data_dir / data.CACHE_NAME
    assert cache.is_file()
    d = data.load(data_dir)
    assert (len(d.train), len(d.val), len(d.test)) == (50_000, data.VAL_SIZE, 10_000)
    assert d.train.images.dtype == torch.uint8 and d.train.images.shape[1:] == (1, 28, 28)
    # Train and val partition the 60k training images: together they hold every label once.
    full = torch.cat([d.train.labels, d.val.labels]).bincount(minlength=10)
    assert full.tolist() == [6000] * 10
    assert d.test.labels.bincount(minlength=10).tolist() == [1000] * 10
    # The split is fixed: a second load gives the same validation images.
    assert torch.equal(data.load(data_dir).val.images, d.val.images)


@pytest.mark.slow
def test_a_corrupt_cache_is_an_error(data_dir, tmp_path):
    shutil.copy(data_dir / data.CACHE_NAME, tmp_path / data.CACHE_NAME)
    blob = bytearray((tmp_path / data.CACHE_NAME).read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # flip one pixel's bits deep inside the images
    (tmp_path / data.CACHE_NAME).write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match="cache .* is corrupt"):
        data.load(tmp_path)
