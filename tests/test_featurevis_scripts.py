"""The feature-visualization benchmark's shared measurement (scripts/featurevis_common.py).

Ours and torch-lucent's images are scored by ``channel_means``: these tests hold it to independent
computations (the model's own transform on a picture; the engine's activation of the optimized image).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deconvnet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import featurevis_common  # noqa: E402


@pytest.fixture(scope="module")
def hed():
    loaded = deconvnet.load("vgg16-hed")
    return loaded, featurevis_common.Normalised(featurevis_common.plain_features(loaded), loaded.transform)


def test_normalise_matches_the_models_transform_of_a_picture(hed):
    loaded, wrapped = hed
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    expected = loaded.transform(Image.fromarray(pixels))  # BGR, 0-255, minus the HED mean
    rgb = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    torch.testing.assert_close(wrapped.normalise(rgb)[0], expected, atol=1e-3, rtol=0)


def test_channel_means_equal_the_engines_objective_on_the_final_image(hed):
    loaded, wrapped = hed
    fv = deconvnet.feature_visualization(loaded, "conv4_3", [3, 7], size=64, steps=1)
    measured = featurevis_common.channel_means(wrapped, fv.rgb, "conv4_3", [3, 7])
    torch.testing.assert_close(measured, fv.activations, atol=1e-3, rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("lucent") is None, reason="torch-lucent is not installed here")
def test_lucent_renders_in_rgb_unit_range(hed):
    loaded, wrapped = hed
    lucent, reason = featurevis_common.import_lucent()
    assert lucent is not None, reason
    image = featurevis_common.lucent_render(lucent, wrapped, "conv4_3", 0, 64, 1, "cpu", None)
    assert image.shape == (1, 3, 64, 64) and 0 <= image.min() and image.max() <= 1
