"""Load the Fashion-MNIST dataset from its original IDX files.

Fashion-MNIST is the optional real dataset of the series: 70,000 grayscale
28x28 pictures of clothes in 10 classes (60,000 for training, 10,000 for test).
It comes as four gzip-compressed files in the IDX format: a big-endian header
(magic number, item count, and for images the rows and columns) followed by
one unsigned byte per pixel or label.

Typical use::

    images, labels = load_fashion_mnist("train", download=True)  # needs network once
    images, labels = load_fashion_mnist("test")  # offline, files already on disk

Every file is checked against its MD5 checksum, so a broken download is caught
before it can produce strange results in a notebook.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

DEFAULT_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEFAULT_ROOT = "data/fashion_mnist"

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

# (images file, labels file) for each split.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ALL_FILES = FILES["train"] + FILES["test"]

# Official checksums, the same ones torchvision uses.
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049

# What urlopen and reading its response raise when the host cannot be reached
# (HTTPError, e.g. a 404, is a URLError too).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class DownloadError(RuntimeError):
    """The files could not be fetched from the download host."""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _by_hand(root: Path) -> str:
    return (
        f"To get the files by hand, put the four files {', '.join(ALL_FILES)} "
        f"in the folder {root.resolve()} (for example downloaded on another computer "
        f"from {DEFAULT_URL}), or run again on a machine with network access."
    )


def _download_one(url: str, dest: Path, expected_md5: str, timeout: float) -> None:
    """Fetch url into a temp file next to dest, check it, then rename it to dest."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
            except _NETWORK_ERRORS as err:
                host = urllib.parse.urlsplit(url).netloc
                raise DownloadError(
                    f"Could not reach {host} to download {dest.name} ({err}). "
                    + _by_hand(dest.parent)
                ) from err
        got = _md5(tmp)
        if got != expected_md5:
            raise ValueError(
                f"Checksum mismatch for downloaded {dest.name}: expected md5 {expected_md5}, "
                f"got {got}. The file was not kept; try the download again."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_fashion_mnist(
    root: str | Path = DEFAULT_ROOT,
    base_url: str = DEFAULT_URL,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Path:
    """Download the Fashion-MNIST files missing from root and return root.

    Each file goes to a temporary file first and only gets its final name once its
    md5 matches checksums (default: the official MD5 table), so nothing half-written
    is ever left behind. Raises DownloadError (a RuntimeError) if the host cannot be
    reached and ValueError on a checksum mismatch.
    """
    root, checksums = Path(root), MD5 if checksums is None else checksums
    root.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        if not (root / name).is_file():
            url = base_url.rstrip("/") + "/" + name
            _download_one(url, root / name, checksums[name], timeout)
    return root


def _corrupt(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path} is corrupt or incomplete ({problem}). Delete it and download again.")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one gzip-compressed IDX file into a uint8 array, validating the header."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, f"not a valid gzip file: {err}") from err
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header_size = 4 * (1 + ndim)
    if len(data) < header_size:
        raise _corrupt(path, "header is truncated")
    got_magic, *shape = struct.unpack(f">{1 + ndim}I", data[:header_size])
    if got_magic != magic:
        raise _corrupt(path, f"magic number {got_magic}, expected {magic}")
    if ndim == 3 and shape[1:] != [28, 28]:
        raise _corrupt(path, f"images are {shape[1]}x{shape[2]}, expected 28x28")
    expected_size = header_size + int(np.prod(shape))
    if len(data) != expected_size:
        raise _corrupt(path, f"expected {expected_size} bytes, found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def load_fashion_mnist(
    split: str = "train",
    root: str | Path = DEFAULT_ROOT,
    download: bool = False,
    checksums: Mapping[str, str] | None = None,
    base_url: str = DEFAULT_URL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images, labels) of a split: float32 (N, 1, 28, 28) in [0, 1] and int64 (N,).

    Uses the network only if download=True (then the missing files are fetched first).
    """
    if split not in FILES:
        raise ValueError(
            f"Unknown split {split!r}; valid splits are: {', '.join(map(repr, FILES))}."
        )
    root, checksums = Path(root), MD5 if checksums is None else checksums
    if download:
        download_fashion_mnist(root, base_url, checksums)
    missing = [name for name in FILES[split] if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Missing Fashion-MNIST file(s) in {root.resolve()}: {', '.join(missing)}. "
            "Call load_fashion_mnist(..., download=True) when online. " + _by_hand(root)
        )
    for name in FILES[split]:
        got = _md5(root / name)
        if got != checksums[name]:
            raise _corrupt(root / name, f"expected md5 {checksums[name]}, got {got}")
    images = _read_idx(root / FILES[split][0], IMAGE_MAGIC)
    labels = _read_idx(root / FILES[split][1], LABEL_MAGIC)
    if len(images) != len(labels) or labels.max(initial=0) >= len(CLASSES):
        raise _corrupt(root / FILES[split][1], "labels do not match the images")
    images_t = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    return images_t, torch.from_numpy(labels.astype(np.int64))
