import numpy as np
import pytest
import torch

from helpers.data import CHUNK, CLASSES, ShapesDataset, generate, shape_masks, trivial_baselines


def test_generation_is_deterministic_and_seeded():
    a, b = generate(50, seed=3), generate(50, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(generate(50, seed=4)[0], a[0])


def test_shapes_dtypes_and_balance():
    images, labels, masks = generate(600, seed=0)
    assert images.shape == (600, 3, 32, 32) and images.dtype == np.uint8
    assert masks.shape == (600, 32, 32) and masks.dtype == bool
    assert np.bincount(labels, minlength=len(CLASSES)).tolist() == [100] * 6


def test_every_image_has_its_object_under_the_mask():
    images, labels, masks = generate(200, seed=1)
    assert masks.reshape(200, -1).sum(1).min() >= 20  # a visible object in every image
    # the object is painted in one colour: all mask pixels share it
    for img, m in zip(images[:20], masks[:20]):
        assert len(np.unique(img[:, m].T, axis=0)) == 1


def test_class_masks_differ():
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    m = shape_masks(xx - 16, yy - 16, 6.0)
    assert m.shape == (6, 32, 32)
    for i in range(6):
        for j in range(i + 1, 6):
            assert (m[i] != m[j]).sum() > 10


def test_splits_are_disjoint_and_sized():
    tr, va, te = ShapesDataset("train", n=3000), ShapesDataset("val"), ShapesDataset("test")
    assert (len(tr), len(va), len(te)) == (3000, 2000, 2000)
    f = [d.fingerprints() for d in (tr, va, te)]
    assert not (f[0] & f[1]) and not (f[0] & f[2]) and not (f[1] & f[2])


def test_dataset_items_and_batches():
    ds = ShapesDataset("test", n=10)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    xb, yb = ds.batch(torch.tensor([0, 3]))
    torch.testing.assert_close(xb[1], x)
    assert yb[1] == y
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("validation")


def test_trivial_baselines_fail():
    """Colour alone and position alone must not solve the task (chance is 1/6)."""
    scores = trivial_baselines(ShapesDataset("train", n=6000), ShapesDataset("test"))
    assert set(scores) == {"mean image colour", "object colour", "object position"}
    assert all(s < 0.3 for s in scores.values()), scores


def test_attributes_describe_the_images_without_changing_them():
    images, labels, masks = generate(120, seed=5)
    images2, labels2, masks2, attrs = generate(120, seed=5, attributes=True)
    assert np.array_equal(images, images2) and np.array_equal(masks, masks2)
    assert set(attrs) == {"cx", "cy", "radius", "area", "hue", "colour", "num_clutter"}
    assert all(len(v) == 120 for v in attrs.values())
    assert np.array_equal(attrs["area"], masks.reshape(120, -1).sum(1))
    # the mask's centroid lies near the recorded centre
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    cx = (masks * xx).sum((1, 2)) / masks.sum((1, 2))
    assert np.abs(cx - attrs["cx"]).max() < 2.5
    assert attrs["num_clutter"].min() >= 5 and attrs["num_clutter"].max() <= 10
    # the object's pixels have the recorded hue's name: a red object has more red than blue
    from helpers.data import COLOUR_NAMES

    red = attrs["colour"] == COLOUR_NAMES.index("red")
    px = images.transpose(0, 2, 3, 1)[masks]  # object pixels of all images
    owner = np.repeat(np.arange(120), masks.reshape(120, -1).sum(1))
    assert (px[red[owner], 0] > px[red[owner], 2]).all()


def test_dataset_carries_attributes():
    ds = ShapesDataset("val", n=30)
    assert set(ds.attributes) >= {"colour", "cx", "num_clutter"}
    assert all(len(v) == 30 for v in ds.attributes.values())


def test_first_images_are_those_of_a_smaller_split():
    full = ShapesDataset("train", n=2 * CHUNK)
    part, small = full.first(CHUNK), ShapesDataset("train", n=CHUNK)
    assert len(part) == CHUNK and part.split == "train"
    assert torch.equal(part.images, small.images) and torch.equal(part.labels, small.labels)
    assert torch.equal(part.masks, small.masks)
    assert all(torch.equal(part.attributes[k], small.attributes[k]) for k in small.attributes)
    assert part.images.data_ptr() == full.images.data_ptr()  # a view: no copy
    for bad in (0, len(full) + 1, 2.5, True):
        with pytest.raises(ValueError, match="whole number from 1"):
            full.first(bad)
