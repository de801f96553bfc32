"""Images from outside the dataset: the value of an ipywidgets FileUpload, and checked
decoding of an uploaded file into a model input."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
import torch

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB
MAX_UPLOAD_SIDE = 4096  # pixels, either side


class UploadError(ValueError):
    """A file the explorer cannot use; the message is meant for the reader."""


# Modes with more than 8 bits per pixel: greyscale 16-bit (PNG, TIFF), 32-bit integer and
# 32-bit float (TIFF). Pillow's own conversion to 8 bits clips them (a 16-bit gradient turns
# white), so they are scaled to [0, 1] here first.
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _high_bit_to_unit(img) -> np.ndarray:
    """A greyscale image of a HIGH_BIT_MODES mode -> float32 (H, W) in [0, 1].

    16-bit modes: divided by 65535. "I" (32-bit integers): divided by 65535 when the values
    fit 16 bits (how 16-bit files are often read), else stretched from the image's own
    min..max (2**31 - 1 as the top would leave any real picture black). "F" (floats): kept
    when already in [0, 1], else stretched from min..max; NaN or infinity is refused.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        return arr.astype(np.float32) / 65535.0
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise UploadError(
            "The image holds NaN or infinite values, which are no brightness: "
            "save it with finite values (or as an 8-bit PNG) and upload it again."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        return (arr / 65535.0).astype(np.float32)
    if img.mode == "F" and lo >= 0 and hi <= 1:
        return arr.astype(np.float32)
    if hi == lo:  # one value everywhere: no range to stretch
        return np.full(arr.shape, float(np.clip(lo, 0, 1)), dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _bomb_error(err: Exception, image_size: int) -> UploadError:
    """Pillow's decompression-bomb error or warning -> a plain UploadError."""
    numbers = re.findall(r"\((\d+) pixels\)|limit of (\d+) pixels", str(err))
    pixels = next((a for a, _ in numbers if a), None)
    limit = next((b for _, b in numbers if b), None)
    declared = f"declares {int(pixels):,} pixels" if pixels else "declares a huge size"
    bound = f" (the limit is {int(limit):,})" if limit else ""
    return UploadError(
        f"The image {declared}, too many to decode safely{bound}. "
        f"Shrink it first: the model sees {image_size}x{image_size} pixels."
    )


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
    a Lanczos filter. 16-bit, 32-bit and float greyscale images are scaled to [0, 1] (see
    `_high_bit_to_unit`), not clipped. channels: 1 (greyscale) or 3 (RGB). Raises UploadError
    with a readable message for anything unusable.
    """
    from PIL import Image

    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 (greyscale) or 3 (RGB); got {channels!r}. "
            "Pass the model's input channels, e.g. model.cfg.in_chans."
        )
    if len(data) == 0:
        raise UploadError("The file is empty.")
    if len(data) > max_bytes:
        raise UploadError(
            f"The file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            f"A small picture is plenty: the model sees {image_size}x{image_size} pixels."
        )
    with warnings.catch_warnings():
        # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that: both refuse
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, image_size, channels, max_side)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb_error(e, image_size) from None


def _decode(data: bytes, image_size: int, channels: int, max_side: int) -> torch.Tensor:
    """load_image_bytes after its size checks: decode, convert, crop and resize."""
    from PIL import Image, ImageOps, UnidentifiedImageError

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
        if img.mode in HIGH_BIT_MODES:  # scaled, then kept as floats ("F") until the end
            img = Image.fromarray(_high_bit_to_unit(img), mode="F")
        else:
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                img.alpha_composite(rgba)
            img = img.convert("RGB" if channels == 3 else "L")
    except (UploadError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise  # already a message for the reader, or handled by load_image_bytes
    except Exception as e:  # truncated or corrupt data, exotic modes
        raise UploadError(f"The image could not be decoded ({type(e).__name__}: {e}).") from None
    s = min(img.size)  # centre square
    left, top = (img.size[0] - s) // 2, (img.size[1] - s) // 2
    img = img.crop((left, top, left + s, top + s))
    img = img.resize((image_size, image_size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if img.mode == "F":  # already in [0, 1]; Lanczos can overshoot a little
        arr = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        arr = np.repeat(arr[None], channels, axis=0)  # (H, W) -> (C, H, W), grey in each
    else:
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
    return torch.from_numpy(np.ascontiguousarray(arr))
