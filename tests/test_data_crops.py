"""Held-out texture crops share no pixel with the training crops (``texture_crops(exclude=...)``),
and the training crops made again from a model's configuration are those it was learned from
(notebooks 08 and 10 rely on it)."""

import numpy as np
import pytest

from gcn_numpy import data, load_model


def covered(boxes):
    """Per texture, the pixels of the half-scale texture that the boxes cover."""
    masks = {name: np.zeros((256, 256), dtype=bool) for name in data.TEXTURES}
    for box in boxes:
        masks[box.texture][box.top : box.top + box.size, box.left : box.left + box.size] = True
    return masks


@pytest.mark.parametrize(("n", "size", "seed"), [(10, 32, 1), (30, 48, 5), (12, 64, 2)])
def test_held_out_crops_share_no_pixel_with_the_training_crops(n, size, seed):
    train = data.texture_crop_boxes(n, size, seed=0)
    held_out = data.texture_crop_boxes(n, size, seed=seed, exclude=train)
    training_pixels = covered(train)
    shared = [
        int(training_pixels[b.texture][b.top : b.top + b.size, b.left : b.left + b.size].sum())
        for b in held_out
    ]
    assert shared == [0] * n, f"held-out crops share {shared} pixels with training crops"
    drawn_freely = data.texture_crop_boxes(n, size, seed=seed)
    assert any(a.overlaps(b) for a in drawn_freely for b in train), (
        "these settings overlap without exclude, so the check above is not vacuous"
    )


def test_crops_are_cut_where_their_boxes_say():
    train = data.texture_crop_boxes(6, 40, seed=0)
    images = data.texture_crops(6, 40, seed=3, exclude=train)
    boxes = data.texture_crop_boxes(6, 40, seed=3, exclude=train)
    for image, b in zip(images, boxes, strict=True):
        full = data.load_images([data.texture_path(b.texture)], 256)[0]
        np.testing.assert_array_equal(image, full[:, b.top : b.top + 40, b.left : b.left + 40])


def test_training_crops_are_those_of_the_shipped_cd_model():
    model = load_model("cd-textures", backend="numpy")
    crops = data.load_training_images(model.config)
    assert len(crops) == model.config.n_images
    np.testing.assert_allclose(crops.mean(axis=(0, 2, 3)), model.mean, rtol=1e-12)
    shown = len(model.thumbnail)  # the file keeps the first crops, in uint8
    np.testing.assert_array_equal(
        model.to_pixels(model.from_pixels(crops[:shown])), model.thumbnail
    )


def test_no_room_left_is_an_error():
    everything = [data.CropBox(name, 0, 0, 256) for name in data.TEXTURES]
    with pytest.raises(data.DataError, match="avoids the excluded crops"):
        data.texture_crop_boxes(1, 8, exclude=everything)
    with pytest.raises(data.DataError, match="exceed"):
        data.texture_crop_boxes(1, 257)
