"""The default dataset, "shapes in clutter": made offline, deterministically, from a seed.

Each 32x32 RGB image holds one object (the class: one of six shapes) at a random position
(on the patch grid), in a random colour, among small distractor blobs of the same colours on a noisy background.
So colour says nothing and position says nothing: a model must find the object and look
at its outline. Every image comes with the object's ground-truth mask, against which later
notebooks score where the CLS token looks.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb
from torch.utils.data import Dataset

CLASSES = ("square", "disk", "triangle", "plus", "ring", "cross")
SPLITS = {"train": (0, 20_000), "val": (1, 2_000), "test": (2, 2_000)}  # split -> (stream, size)
DEFAULT_SEED = 0


COLOUR_NAMES = ("red", "yellow", "green", "cyan", "blue", "magenta")  # hue sixths, red at 0


def _random_colours(rng, n, with_hue=False):
    """n bright, saturated colours as uint8 (n, 3): any hue, for objects and clutter alike.

    with_hue=True also returns the hues in [0, 1) (the draws, and so the images, are the same).
    """
    hsv = np.stack([rng.random(n), rng.uniform(0.55, 1.0, n), rng.uniform(0.7, 1.0, n)], -1)
    rgb = (hsv_to_rgb(hsv) * 255).astype(np.uint8)  # (n, 3)
    return (rgb, hsv[:, 0]) if with_hue else rgb


def colour_index(hue):
    """The index into COLOUR_NAMES of each hue in [0, 1): the nearest of six named hues."""
    return (np.floor(np.asarray(hue) * 6 + 0.5).astype(np.int64)) % 6


def shape_masks(dx, dy, r):
    """Boolean masks of every class for offsets (dx, dy) from the centre and half-size r.

    Returns (classes, *dx.shape). dx, dy, r broadcast together (pixel units).
    """
    adx, ady = np.abs(dx), np.abs(dy)
    arm = np.maximum(r / 3.2, 0.9)  # half-width of the strokes of plus and cross
    d2 = dx**2 + dy**2
    return np.stack(
        [
            np.maximum(adx, ady) <= r * 0.85,  # square (shrunk to match the disk's area)
            d2 <= r**2,  # disk
            (ady <= r) & (adx <= (dy + r) / 2),  # triangle, apex up
            ((adx <= arm) & (ady <= r)) | ((ady <= arm) & (adx <= r)),  # plus
            (d2 <= r**2) & (d2 >= (r * 0.55) ** 2),  # ring
            (np.abs(adx - ady) <= arm * 1.1) & (np.maximum(adx, ady) <= r * 0.85),  # cross (x)
        ]
    )


def generate(
    n: int, seed: int = DEFAULT_SEED, stream: int = 0, size: int = 32, attributes: bool = False
):
    """Make n images; returns (images uint8 (n, 3, size, size), labels (n,), masks (n, size, size)).

    The same (seed, stream, n) gives the same images on every machine (numpy's PCG64).
    Classes are balanced: exactly n // 6 or n // 6 + 1 of each.
    attributes=True appends a dict of what made each image (arrays of length n): the object's
    centre "cx", "cy" (pixels), half-size "radius" (pixels), "area" (mask pixels), "hue" and
    "colour" (index into COLOUR_NAMES), and "num_clutter" (distractor blobs drawn; the object
    may cover some). The images are the same with or without it.
    """
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres, (size, size)
    img = rng.integers(0, 48, size=(n, size, size, 1), dtype=np.uint8)  # dark noisy background
    img = np.repeat(img, 3, axis=3) + rng.integers(0, 16, size=(n, 1, 1, 3), dtype=np.uint8)

    num_clutter = rng.integers(5, 11, n)  # 5 to 10 distractor blobs per image
    blobs = []
    for _ in range(10):
        w, h = rng.integers(1, 4, n), rng.integers(1, 4, n)  # 1-3 px wide and tall
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        blobs.append((x0, x0 + w, y0, y0 + h, _random_colours(rng, n)))

    r = rng.uniform(4.5, 7.0, n)  # object half-size in pixels
    # The centre sits on a corner of the 4-pixel patch grid, anywhere from 8 to size - 8 px:
    # 25 positions on 32x32. A ViT has no built-in invariance to shifts *within* a patch, so
    # snapping keeps the task learnable in a minute on a CPU (notebook 02 tests off-grid shifts).
    cx = rng.integers(2, size // 4 - 1, n) * 4.0
    cy = rng.integers(2, size // 4 - 1, n) * 4.0
    colours, hue = _random_colours(rng, n, with_hue=True)

    # Paint, a slice of images at a time (every random number is drawn above, so the slices
    # change nothing but the memory the per-pixel arrays take).
    masks = np.empty((n, size, size), dtype=bool)
    for a in range(0, n, 500):
        s = slice(a, min(n, a + 500))
        for j, (x0, x1, y0, y1, colour) in enumerate(blobs):
            blob = (
                (xx >= x0[s, None, None])
                & (xx < x1[s, None, None])
                & (yy >= y0[s, None, None])
                & (yy < y1[s, None, None])
                & (j < num_clutter[s])[:, None, None]
            )  # (slice, size, size)
            img[s] = np.where(blob[..., None], colour[s, None, None, :], img[s])
        dx = xx - cx[s, None, None]  # (slice, size, size)
        dy = yy - cy[s, None, None]
        all_masks = shape_masks(dx, dy, r[s, None, None])  # (classes, slice, size, size)
        masks[s] = all_masks[labels[s], np.arange(s.stop - s.start)]
        img[s] = np.where(masks[s, ..., None], colours[s, None, None, :], img[s])
    images = np.ascontiguousarray(img.transpose(0, 3, 1, 2))  # (n, 3, size, size)
    if not attributes:
        return images, labels.astype(np.int64), masks
    attrs = {
        "cx": cx,
        "cy": cy,
        "radius": r,
        "area": masks.reshape(n, -1).sum(1),
        "hue": hue,
        "colour": colour_index(hue),
        "num_clutter": num_clutter,
    }
    return images, labels.astype(np.int64), masks, attrs


BYTES_PER_IMAGE = 3 * 32 * 32 + 32 * 32  # uint8 image and bool mask, as stored
MAX_IMAGES = 200_000  # 10x the train split, about 0.8 GB: a bigger n is refused up front
CHUNK = 5000  # ShapesDataset generates a split this many images at a time, a stream each


class ShapesDataset(Dataset):
    """One split of "shapes in clutter": float images in [0, 1], labels, object masks.

    Images are stored as uint8 (3 KB each) and turned into floats per item or per batch.
    """

    classes = CLASSES

    def __init__(self, split: str = "train", n: int | None = None, seed: int = DEFAULT_SEED):
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {tuple(SPLITS)}.")
        stream, default_n = SPLITS[split]
        n = default_n if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(
                f"n must be a whole number >= 1 (or None: all {default_n}), got {n!r}."
            )
        if n > MAX_IMAGES:
            raise ValueError(
                f"n={n} images would take about {n * BYTES_PER_IMAGE / 1e9:.3g} GB of memory "
                f"and long to generate; the limit is {MAX_IMAGES} ({MAX_IMAGES // default_n}x "
                f"the {split} split's {default_n}). Pass a smaller n, or None for the split."
            )
        n = int(n)
        self.split, self.seed = split, seed
        images, labels, masks, attrs = [], [], [], []
        for start in range(0, n, CHUNK):  # in chunks, to keep peak memory small
            chunk = generate(
                min(CHUNK, n - start), seed, stream * 1000 + start // CHUNK, attributes=True
            )
            for out, x in zip((images, labels, masks, attrs), chunk):
                out.append(x)
        self.images = torch.from_numpy(np.concatenate(images))  # (n, 3, 32, 32) uint8
        self.labels = torch.from_numpy(np.concatenate(labels))  # (n,) int64
        self.masks = torch.from_numpy(np.concatenate(masks))  # (n, 32, 32) bool
        # what made each image (see generate): tensors of length n, e.g. attributes["colour"]
        self.attributes = {
            k: torch.from_numpy(np.concatenate([a[k] for a in attrs])) for k in attrs[0]
        }

    def __len__(self) -> int:
        return len(self.labels)

    def first(self, n: int) -> ShapesDataset:
        """The first n images of this dataset, as a view (no copy). The split is generated in
        chunks of CHUNK images, each from its own stream, so for n a multiple of CHUNK these
        are the images of ShapesDataset(split, n=n), made without generating them again; for
        other n, ShapesDataset(split, n=n) is a different sample."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(self):
            raise ValueError(f"n must be a whole number from 1 to {len(self)}, got {n!r}.")
        part = copy.copy(self)
        part.images, part.labels, part.masks = self.images[:n], self.labels[:n], self.masks[:n]
        part.attributes = {k: v[:n] for k, v in self.attributes.items()}
        return part

    def __getitem__(self, i):
        return self.images[i].float() / 255, self.labels[i]

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, 32, 32) float in [0, 1] and labels (B,) for a tensor of indices."""
        return self.images[idx].float() / 255, self.labels[idx]

    def fingerprints(self) -> set[str]:
        """A hash per image, to check that splits never share an image."""
        return {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in self.images}


def trivial_baselines(train: ShapesDataset, test: ShapesDataset) -> dict[str, float]:
    """Test accuracy of linear classifiers that see only colour or only position.

    Features: the mean colour of the image, the object's own colour, the object's centre.
    Each is fit by least squares on one-hot labels. If the dataset is fair they all score
    near chance (1 / 6): what decides the class is the object's shape.
    """

    def features(ds):
        img = ds.images.float() / 255  # (n, 3, H, W)
        m = ds.masks.float()[:, None]  # (n, 1, H, W)
        area = m.sum((2, 3)).clamp(min=1)  # (n, 1)
        H = ds.masks.shape[-1]
        coords = (torch.arange(H, dtype=torch.float32) + 0.5) / H
        cy = (ds.masks.float().sum(2) * coords).sum(1, keepdim=True) / area
        cx = (ds.masks.float().sum(1) * coords).sum(1, keepdim=True) / area
        return {
            "mean image colour": img.mean((2, 3)),
            "object colour": (img * m).sum((2, 3)) / area,
            "object position": torch.cat([cx, cy, cx * cy, cx**2, cy**2], 1),
        }

    f_train, f_test = features(train), features(test)
    out = {}
    for name in f_train:
        X = torch.cat([f_train[name], torch.ones(len(train), 1)], 1).double()
        Y = torch.nn.functional.one_hot(train.labels, len(CLASSES)).double()
        W = torch.linalg.lstsq(X, Y).solution
        Xt = torch.cat([f_test[name], torch.ones(len(test), 1)], 1).double()
        out[name] = ((Xt @ W).argmax(1) == test.labels).float().mean().item()
    return out
