"""Images from outside the dataset: the value of an ipywidgets FileUpload, and checked
decoding of an uploaded file into a model input."""

from __future__ import annotations

import io

import numpy as np
import torch

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB
MAX_UPLOAD_SIDE = 4096  # pixels, either side


class UploadError(ValueError):
    """A file the explorer cannot use; the message is meant for the reader."""


def parse_upload(value) -> list[tuple[str, bytes]]:
    """FileUpload.value -> [(file name, content bytes)], for ipywidgets 7 and 8 alike.

    ipywidgets 7.x: {name: {"content": bytes, "metadata": {"name": ..., ...}}}
    ipywidgets 8.x: ({"name": ..., "content": memoryview, "size": ..., ...}, ...)
    """
    if not value:
        return []
    if isinstance(value, dict):  # 7.x
        items = [
            (v.get("metadata", {}).get("name", k), v.get("content", b"")) for k, v in value.items()
        ]
    else:  # 8.x: tuple (or list) of dicts
        items = [(v.get("name", "upload"), v.get("content", b"")) for v in value]
    return [(str(name), bytes(content)) for name, content in items]


def load_image_bytes(
    data: bytes,
    image_size: int,
    channels: int = 3,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_side: int = MAX_UPLOAD_SIDE,
) -> torch.Tensor:
    """Decode an uploaded file into a model input (channels, image_size, image_size) in [0, 1].

    Checks size before decoding; any mode (RGBA, palette, greyscale, 16-bit, CMYK) is
    converted (transparency composited on black, like the dataset's dark background); the
    image is rotated by its EXIF orientation, centre-cropped to a square and resized with
    a Lanczos filter. Raises UploadError with a readable message for anything unusable.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) == 0:
        raise UploadError("The file is empty.")
    if len(data) > max_bytes:
        raise UploadError(
            f"The file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            f"A small picture is plenty: the model sees {image_size}x{image_size} pixels."
        )
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError, ValueError):
        raise UploadError(
            "This file is not an image Pillow can read (try a PNG or JPEG)."
        ) from None
    w, h = img.size
    if max(w, h) > max_side:
        raise UploadError(
            f"The image is {w}x{h} pixels; the limit is {max_side} pixels a side. "
            f"Shrink it first: the model sees {image_size}x{image_size} pixels."
        )
    if w < 1 or h < 1:
        raise UploadError("The image has no pixels.")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img.alpha_composite(rgba)
        img = img.convert("RGB" if channels == 3 else "L")
    except Exception as e:  # truncated or corrupt data, exotic modes
        raise UploadError(f"The image could not be decoded ({type(e).__name__}: {e}).") from None
    s = min(img.size)  # centre square
    left, top = (img.size[0] - s) // 2, (img.size[1] - s) // 2
    img = img.crop((left, top, left + s, top + s))
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(arr))
