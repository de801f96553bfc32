"""Uploaded images: the FileUpload value of ipywidgets 7 and 8, and checked decoding."""

import io

import pytest
import torch
from PIL import Image

from helpers.images import MAX_UPLOAD_BYTES, UploadError, load_image_bytes


def png_bytes(mode="RGB", size=(40, 30), fmt="PNG", color=(200, 30, 30)):
    img = Image.new(mode, size, color if mode != "L" else 128)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode,color", [("RGB", (200, 30, 30)), ("RGBA", (200, 30, 30, 255)), ("L", None),
                   ("P", None), ("I;16", None), ("CMYK", (0, 200, 200, 0))],
)  # fmt: skip
def test_upload_modes_are_converted(mode, color):
    img = Image.new(mode, (50, 70), color) if color else Image.new(mode, (50, 70))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    x = load_image_bytes(buf.getvalue(), 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert load_image_bytes(buf.getvalue(), 32, channels=1).shape == (1, 32, 32)


def test_upload_transparency_goes_on_black_and_colour_survives():
    x = load_image_bytes(png_bytes("RGBA", color=(255, 0, 0, 0)), 32)  # fully transparent
    assert float(x.max()) == 0.0
    y = load_image_bytes(png_bytes("RGB", color=(255, 0, 0)), 32)
    torch.testing.assert_close(y[:, 5, 5], torch.tensor([1.0, 0.0, 0.0]))


def test_bad_uploads_give_messages():
    with pytest.raises(UploadError, match="not an image"):
        load_image_bytes(b"%PDF-1.4 definitely not a picture", 32)
    with pytest.raises(UploadError, match="empty"):
        load_image_bytes(b"", 32)
    with pytest.raises(UploadError, match="MB"):
        load_image_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1), 32)
    big = png_bytes("L", size=(5000, 10))  # small file, huge side: refused before decoding
    with pytest.raises(UploadError, match="5000x10"):
        load_image_bytes(big, 32)
    truncated = png_bytes(size=(300, 300), fmt="JPEG")[:400]
    with pytest.raises(UploadError):
        load_image_bytes(truncated, 32)
