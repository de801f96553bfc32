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
import http
import http.client
import os
import struct
import tempfile
import time
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

# Exact sizes in bytes of the four official files (the same sizes the download hosts of
# torchvision and Keras report). A download never reads past its file's size: a host that
# keeps sending (a wrong URL, a broken proxy) cannot fill the disk.
SIZES = {
    "train-images-idx3-ubyte.gz": 26421880,
    "train-labels-idx1-ubyte.gz": 29515,
    "t10k-images-idx3-ubyte.gz": 4422102,
    "t10k-labels-idx1-ubyte.gz": 5148,
}

# Overall time a file may take: a minute, plus its size at a slow 100 kB/s (about 5 minutes
# for the training images). The per-read `timeout` alone lets a host that sends a byte now
# and then hold a download forever.
MIN_DEADLINE_S, SLOWEST_BYTES_PER_S = 60.0, 100_000

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049

# What urlopen and reading its response raise when the host cannot be reached. HTTPError
# (the host answered, e.g. 404) is a URLError too: it is caught first, on its own.
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


def default_deadline(max_bytes: int) -> float:
    """Seconds a file of up to max_bytes may take: MIN_DEADLINE_S plus a slow rate's worth."""
    return MIN_DEADLINE_S + max_bytes / SLOWEST_BYTES_PER_S


def _remove_stale_parts(dest: Path) -> None:
    """Remove temp files of dest left by an earlier run that was killed mid-download."""
    for stale in dest.parent.glob(dest.name + ".*.part"):
        stale.unlink(missing_ok=True)


def _copy_body(response, out, dest: Path, max_bytes: int, deadline: float, start: float) -> None:
    """Copy the response body of dest's file to out: at most max_bytes, by start + deadline."""
    received = 0
    while True:
        if time.monotonic() - start > deadline:
            raise DownloadError(
                f"Downloading {dest.name} took longer than {deadline:g} s ({received} bytes "
                "received so far): the connection is too slow or the host stopped sending. "
                "Try again later, or pass a larger deadline=. " + _by_hand(dest.parent)
            )
        # read1: returns what has arrived (one read), so a trickle cannot block past the deadline
        try:
            chunk = response.read1(min(1 << 16, max_bytes + 1 - received))
        except TimeoutError:
            raise DownloadError(
                f"The host stopped sending {dest.name} ({received} bytes received so far). "
                "Try again later. " + _by_hand(dest.parent)
            ) from None
        if not chunk:
            return
        received += len(chunk)
        if received > max_bytes:
            raise DownloadError(
                f"The host sent more than {max_bytes} bytes for {dest.name}, more than the file "
                "can be: this is not the Fashion-MNIST file (check base_url). Nothing was kept. "
                + _by_hand(dest.parent)
            )
        out.write(chunk)


def _download_one(
    url: str,
    dest: Path,
    expected_md5: str,
    timeout: float,
    max_bytes: int,
    deadline: float,
) -> None:
    """Fetch url into a temp file next to dest, check it, then rename it to dest."""
    _remove_stale_parts(dest)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            start = time.monotonic()
            try:
                # no single read may wait longer than the whole deadline
                with urllib.request.urlopen(url, timeout=min(timeout, deadline)) as response:
                    length = response.headers.get("Content-Length", "")
                    if length.strip().isdigit() and int(length) > max_bytes:
                        raise DownloadError(
                            f"The host announced {int(length)} bytes for {dest.name}, more than "
                            f"the {max_bytes} the file can be: this is not the Fashion-MNIST "
                            "file (check base_url). Nothing was downloaded. "
                            + _by_hand(dest.parent)
                        )
                    _copy_body(response, out, dest, max_bytes, deadline, start)
            except urllib.error.HTTPError as err:
                err.close()
                try:
                    status = f"{err.code} {http.HTTPStatus(err.code).phrase}"
                except ValueError:  # a code outside the standard list
                    status = f"{err.code} {err.reason}"
                raise DownloadError(
                    f"The server answered {status} for {url}: the file is not "
                    "there; check base_url. " + _by_hand(dest.parent)
                ) from None
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
    finally:  # also on Ctrl-C (KeyboardInterrupt): no half-written file stays behind
        tmp.unlink(missing_ok=True)


def download_fashion_mnist(
    root: str | Path = DEFAULT_ROOT,
    base_url: str = DEFAULT_URL,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    max_bytes: Mapping[str, int] | None = None,
    deadline: float | None = None,
) -> Path:
    """Download the Fashion-MNIST files missing from root and return root.

    Each file goes to a temporary file first and only gets its final name once its
    md5 matches checksums (default: the official MD5 table), so nothing half-written
    is ever left behind. A file may be at most max_bytes[name] bytes (default: SIZES,
    the official sizes) and take at most `deadline` seconds (default: default_deadline
    of its size); `timeout` bounds each network read. Raises DownloadError (a
    RuntimeError) if the host cannot be reached, answers an HTTP error, sends too much
    or too slowly, and ValueError on a checksum mismatch.
    """
    root, checksums = Path(root), MD5 if checksums is None else checksums
    max_bytes = SIZES if max_bytes is None else max_bytes
    root.mkdir(parents=True, exist_ok=True)
    for name in ALL_FILES:
        if not (root / name).is_file():
            url = base_url.rstrip("/") + "/" + name
            limit = deadline if deadline is not None else default_deadline(max_bytes[name])
            _download_one(url, root / name, checksums[name], timeout, max_bytes[name], limit)
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
