"""The transform's geometry (resized_size, crop_box) is the one its own output has, and invariance
and correspondence map pictures and boxes through it, for a shorter-side resize and for a
squash to a fixed size (resize_to), on a non-square image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from deconvnet.models.transforms import ImageTransform
from deconvnet.tasks.correspondence.compute import map_box
from deconvnet.tasks.invariance.compute import model_picture, normalize, transformed_inputs

TRANSFORMS = {
    "shorter side and crop": ImageTransform(resize=40, crop=32),
    "shorter side, odd margin, floor": ImageTransform(resize=41, crop=32, crop_rounding="floor"),
    "squash": ImageTransform(resize=None, resize_to=(30, 50), crop=None),
    "squash and crop": ImageTransform(resize=None, resize_to=(36, 48), crop=28, interpolation="bicubic"),
}
BOX = [30, 12, 70, 40]  # x0, y0, x1, y1 in a 96 x 60 image: white on black


def boxed_image() -> Image.Image:
    pixels = np.zeros((60, 96, 3), dtype=np.uint8)
    x0, y0, x1, y1 = BOX
    pixels[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("kind", list(TRANSFORMS))
def test_resized_size_and_crop_box_are_the_transforms_output_shape(kind):
    transform = TRANSFORMS[kind]
    image = boxed_image()
    width, height = transform.resized_size(*image.size)
    plain = ImageTransform(resize=transform.resize, resize_to=transform.resize_to, crop=None,
                           interpolation=transform.interpolation)
    assert tuple(plain(image).shape[1:]) == (height, width)  # the resize step alone
    left, top, crop_w, crop_h = transform.crop_box(width, height)
    output = transform(image)
    assert tuple(output.shape[1:]) == (crop_h, crop_w)
    # the crop is the resized picture's window at (left, top): both computed by the same resampling
    torch.testing.assert_close(output, plain(image)[:, top:top + crop_h, left:left + crop_w], rtol=0, atol=0)


@pytest.mark.parametrize("kind", list(TRANSFORMS))
def test_a_mapped_box_is_where_the_transform_puts_the_white_box(kind):
    transform = TRANSFORMS[kind]
    image = boxed_image()
    box = map_box(BOX, image.size, transform)
    bright = transform.to_uint8(transform(image))[..., 0] > 127  # the box's pixels after resampling
    rows, columns = np.nonzero(bright.any(axis=1))[0], np.nonzero(bright.any(axis=0))[0]
    # map_box widens to whole pixels; resampling puts an edge pixel on either side of 127
    assert abs(box.top - rows[0]) <= 1 and abs(box.top + box.height - 1 - rows[-1]) <= 1
    assert abs(box.left - columns[0]) <= 1 and abs(box.left + box.width - 1 - columns[-1]) <= 1


@pytest.mark.parametrize("kind", [k for k in TRANSFORMS if "floor" not in k])
def test_invariances_untransformed_input_is_the_models_own(kind):
    transform = TRANSFORMS[kind]
    image = boxed_image()
    picture, crop = model_picture(image, transform)
    original = normalize(transformed_inputs(picture, crop, "translation", [0.0]), transform)[0]
    assert original.shape == transform(image).shape
    # both paths resample with PIL at the same size; the identity window samples whole pixels exactly
    torch.testing.assert_close(original, transform(image), rtol=0, atol=1e-6)
