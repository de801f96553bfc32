"""Tests for helpers.fashion_mnist, using small hand-made IDX files and a local HTTP server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import socket
import struct
import time
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.fashion_mnist import (
    ALL_FILES,
    CLASSES,
    FILES,
    MD5,
    DownloadError,
    download_fashion_mnist,
    load_fashion_mnist,
)
from tests.conftest import start_local_server

SIZES = {"train": 5, "test": 3}


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    """Raw (uncompressed) IDX content: big-endian header, then the uint8 data."""
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, raw: bytes) -> str:
    """Write raw gzip-compressed (deterministically) and return the file's md5."""
    path.write_bytes(gzip.compress(raw, mtime=0))
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in SIZES.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # make sure both extremes appear
        labels = np.arange(n, dtype=np.uint8) % len(CLASSES)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def dataset(tmp_path):
    """A folder with the four files (small), its checksum table and the raw arrays."""
    folder = tmp_path / "source"
    folder.mkdir()
    arrays = make_arrays()
    checksums = {}
    for split, (image_name, label_name) in FILES.items():
        images, labels = arrays[split]
        checksums[image_name] = write_gz(folder / image_name, idx_bytes(2051, images))
        checksums[label_name] = write_gz(folder / label_name, idx_bytes(2049, labels))
    return folder, checksums, arrays


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


@pytest.fixture
def serve(request):
    """Start an HTTP server on 127.0.0.1 (free port) serving a folder; return its URL."""

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        return start_local_server(request, handler)

    return start


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_files_are_checked_against_the_official_table_by_default(dataset):
    """Without a checksum table the loader uses MD5, the official one: our small stand-in
    files are then refused, and the message names the file and the official digest."""
    folder, _, _ = dataset
    with pytest.raises(ValueError) as info:
        load_fashion_mnist("train", root=folder)
    name = ALL_FILES[0]
    assert name in str(info.value) and MD5[name] in str(info.value)


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_parses_shapes_values_and_labels(dataset, split):
    folder, checksums, arrays = dataset
    images, labels = load_fashion_mnist(split, root=folder, checksums=checksums)
    n = SIZES[split]
    assert images.shape == (n, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (n,) and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    expected = torch.from_numpy(arrays[split][0].astype(np.float32) / 255).unsqueeze(1)
    assert torch.allclose(images, expected)
    assert labels.tolist() == arrays[split][1].tolist()


def test_bad_split_lists_valid_splits(dataset):
    folder, checksums, _ = dataset
    with pytest.raises(ValueError, match="'train'.*'test'"):
        load_fashion_mnist("validation", root=folder, checksums=checksums)


def test_wrong_checksum_gives_helpful_error(dataset):
    folder, checksums, _ = dataset
    name = "train-images-idx3-ubyte.gz"
    wrong = dict(checksums, **{name: "0" * 32})
    with pytest.raises(ValueError) as info:
        load_fashion_mnist("train", root=folder, checksums=wrong)
    message = str(info.value)
    assert name in message and "0" * 32 in message and checksums[name] in message
    assert "Delete it and download again" in message


def _truncated_gzip(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_truncated_gzip, id="truncated-gzip"),
        pytest.param(lambda p: p.write_bytes(b"not a gzip file"), id="not-gzip"),
        pytest.param(
            lambda p: write_gz(p, idx_bytes(2051, np.zeros((5, 28, 28)))[:-10]), id="short-data"
        ),
        pytest.param(lambda p: write_gz(p, idx_bytes(2049, np.zeros((5, 28, 28)))), id="bad-magic"),
        pytest.param(lambda p: write_gz(p, b"\x00\x00"), id="short-header"),
        pytest.param(
            lambda p: write_gz(p, idx_bytes(2051, np.zeros((5, 14, 14)))), id="wrong-size"
        ),
    ],
)
def test_corrupt_file_raises_value_error(dataset, damage):
    folder, checksums, _ = dataset
    path = folder / "train-images-idx3-ubyte.gz"
    damage(path)
    # The table matches the damaged file, so the IDX parser itself must catch the problem.
    checksums = dict(checksums, **{path.name: hashlib.md5(path.read_bytes()).hexdigest()})
    with pytest.raises(ValueError, match="download again") as info:
        load_fashion_mnist("train", root=folder, checksums=checksums)
    assert path.name in str(info.value)


def test_missing_files_without_download(tmp_path, dataset):
    _, checksums, _ = dataset
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist("test", root=tmp_path / "empty", checksums=checksums)
    message = str(info.value)
    assert all(name in message for name in FILES["test"])
    assert "download=True" in message and "by hand" in message


def test_download_from_local_server(tmp_path, dataset, serve, closed_port_url):
    folder, checksums, arrays = dataset
    url = serve(folder)
    root = tmp_path / "downloaded"
    assert download_fashion_mnist(root, base_url=url, checksums=checksums, timeout=5) == root
    assert sorted(p.name for p in root.iterdir()) == sorted(ALL_FILES)
    for name in ALL_FILES:
        assert (root / name).read_bytes() == (folder / name).read_bytes()
    # Files already present are not fetched again: an unreachable host does no harm.
    download_fashion_mnist(root, base_url=closed_port_url, checksums=checksums, timeout=1)


def test_load_with_download_true(tmp_path, dataset, serve):
    folder, checksums, arrays = dataset
    url = serve(folder)
    images, labels = load_fashion_mnist(
        "test", root=tmp_path / "dl", download=True, checksums=checksums, base_url=url
    )
    assert images.shape == (SIZES["test"], 1, 28, 28)
    assert labels.tolist() == arrays["test"][1].tolist()


def test_download_404_leaves_nothing(tmp_path, dataset, serve):
    _, checksums, _ = dataset
    empty = tmp_path / "served-empty"
    empty.mkdir()
    root = tmp_path / "dl"
    with pytest.raises(DownloadError) as info:
        download_fashion_mnist(root, base_url=serve(empty), checksums=checksums, timeout=5)
    message = str(info.value)
    assert "404 Not Found" in message and "check base_url" in message  # not "could not reach"
    assert all(name in message for name in ALL_FILES) and str(root.resolve()) in message
    assert list(root.iterdir()) == []


def test_download_wrong_bytes_leaves_nothing(tmp_path, dataset, serve):
    folder, checksums, _ = dataset
    name = ALL_FILES[0]
    (folder / name).write_bytes(b"an html error page, not the dataset")
    root = tmp_path / "dl"
    with pytest.raises(ValueError) as info:
        download_fashion_mnist(root, base_url=serve(folder), checksums=checksums, timeout=5)
    message = str(info.value)
    got = hashlib.md5(b"an html error page, not the dataset").hexdigest()
    assert name in message and checksums[name] in message and got in message
    assert list(root.iterdir()) == []


def test_unreachable_host_fails_fast(tmp_path, dataset, closed_port_url):
    _, checksums, _ = dataset
    root = tmp_path / "dl"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="Could not reach 127.0.0.1") as info:
        download_fashion_mnist(root, base_url=closed_port_url, checksums=checksums, timeout=1)
    assert time.monotonic() - start < 3
    assert "by hand" in str(info.value)
    assert list(root.iterdir()) == []
