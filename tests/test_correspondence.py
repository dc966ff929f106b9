"""Part correspondence (Zeiler & Fergus Table 1): Delta by hand, by construction, and the CLI's bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deconvnet import DeconvError
from deconvnet.cli import main
from deconvnet.engine.receptive import Box
from deconvnet.models.transforms import ImageTransform
from deconvnet.tasks.correspondence.compute import correspondence_deltas, delta, map_box, pairwise_hamming

GREY = 0.5


def test_pairwise_hamming_by_hand():
    signs = torch.tensor([[1, -1, 0, 1], [1, 1, 0, -1], [-1, -1, 0, 1]], dtype=torch.int8)
    # pair (0, 1) differs at 2 of 4 places, (0, 2) at 1, (1, 2) at 3
    assert pairwise_hamming(signs).tolist() == [0.5, 0.25, 0.75]


def test_delta_uses_only_the_signs_and_reports_mean_and_spread_over_pairs():
    magnitudes = torch.tensor([[3.0, 0.2, 1.0, 7.0], [0.1, 5.0, 1.0, 2.0], [9.0, 0.3, 1.0, 0.4]])
    signs = torch.tensor([[1, -1, 0, 1], [1, 1, 0, -1], [-1, -1, 0, 1]])
    result = delta(magnitudes * signs)
    assert result.pairs == 3
    assert result.mean == pytest.approx(0.5)
    assert result.spread == pytest.approx(0.25)  # sample std of 0.5, 0.25, 0.75


def conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU()).eval()


def test_identical_images_give_zero():
    x = torch.rand(1, 3, 24, 24).expand(4, -1, -1, -1).clone()
    boxes = [{"eye": Box(3, 4, 6, 5), "nose": Box(12, 10, 7, 7)}] * 4
    result = correspondence_deltas(conv_model(), x, boxes, fill=GREY, layers=["1", "3"], repeats=2, progress=False)
    for part in ("eye", "nose"):
        for layer in ("1", "3"):
            assert result.table[part][layer].mean == 0.0
            assert result.table[part][layer].pairs == 6
    assert result.random["3"].pairs == 2 * 2 * 6  # repeats x parts x pairs
    assert result.random["3"].mean > 0  # random boxes land in different places in different images


def linear_model(side: int) -> nn.Module:
    torch.manual_seed(1)
    linear = nn.Linear(3 * side * side, 6, bias=True)
    return nn.Sequential(nn.Flatten(), linear).eval()


def test_a_linear_response_to_the_occluded_region_gives_the_expected_delta():
    """phi(x) = W x + b, so eps_i = W (x_i - x_i occluded) = d_i * (sum of W's columns in the box)
    when image i is GREY + d_i inside the box: the signs flip with d_i."""
    side, box = 8, Box(2, 3, 3, 4)
    offsets = [0.3, 0.1, -0.2]  # pairs: (0, 1) agree, (0, 2) and (1, 2) differ everywhere
    x = torch.rand(3, 3, side, side)  # outside the box the images differ
    for i, offset in enumerate(offsets):
        x[i, :, box.top:box.top + box.height, box.left:box.left + box.width] = GREY + offset
    model = linear_model(side)
    result = correspondence_deltas(model, x, [{"part": box}] * 3, fill=GREY, layers=["1"], repeats=0,
                                   progress=False)
    assert result.table["part"]["1"].mean == pytest.approx(2 / 3)
    assert result.table["part"]["1"].spread == pytest.approx(np.sqrt(1 / 3))


def test_a_linear_response_with_boxes_at_different_places_matches_numpy():
    side = 8
    boxes = [Box(0, 0, 3, 3), Box(4, 2, 3, 3), Box(5, 5, 3, 3)]
    x = torch.rand(3, 3, side, side)
    model = linear_model(side)
    weight = model[1].weight.detach().double().numpy().reshape(6, 3, side, side)
    pixels = x.double().numpy()
    signs = []
    for i, (top, left, h, w) in enumerate(boxes):
        change = pixels[i, :, top:top + h, left:left + w] - GREY
        signs.append(np.sign((weight[:, :, top:top + h, left:left + w] * change).sum(axis=(1, 2, 3))))
    expected = np.mean([np.mean(signs[i] != signs[j]) for i in range(3) for j in range(i + 1, 3)])
    result = correspondence_deltas(model, x, [{"part": b} for b in boxes], fill=GREY, layers=["1"], repeats=0,
                                   progress=False)
    assert result.table["part"]["1"].mean == pytest.approx(expected)


def test_random_control_is_seeded():
    x = torch.rand(3, 3, 24, 24)
    boxes = [{"eye": Box(3, 4, 6, 5)}] * 3
    run = lambda seed: correspondence_deltas(conv_model(), x, boxes, fill=GREY, layers=["3"], repeats=3,  # noqa: E731
                                             seed=seed, progress=False).random["3"]
    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (256, 256)])
@pytest.mark.parametrize("transform", [ImageTransform(resize=256, crop=224), ImageTransform(resize=224, crop=224),
                                       ImageTransform(resize=None, crop=None)])
def test_map_box_finds_the_rectangle_where_the_transform_puts_it(size, transform):
    width, height = size
    box = [int(width * 0.3), int(height * 0.35), int(width * 0.6), int(height * 0.7)]
    picture = np.zeros((height, width, 3), np.uint8)
    picture[box[1]:box[3], box[0]:box[2]] = 255
    x = transform(Image.fromarray(picture))[0]  # (H, W) in 0..1
    rows, cols = np.nonzero(x.numpy() > 0.5)
    top, left, h, w = map_box(box, (width, height), transform)
    assert abs(top - rows.min()) <= 1 and abs(left - cols.min()) <= 1
    assert abs(top + h - 1 - rows.max()) <= 1 and abs(left + w - 1 - cols.max()) <= 1


def test_map_box_refuses_a_box_the_crop_cuts_away():
    with pytest.raises(DeconvError, match="outside the centre crop"):
        map_box([0, 0, 20, 100], (400, 300), ImageTransform(resize=256, crop=224))


# ---------------------------------------------------------------- the command


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def write_parts(folder, parts) -> str:
    path = folder / "parts.json"
    path.write_text(json.dumps(parts))
    return str(path)


TINY = ["--model", "tiny-zfnet", "--weights", "random"]


def test_cli_writes_table_figure_and_json(photos, capsys):
    parts = write_parts(photos, {name: {"eye": [30, 20, 50, 40], "ear": [10, 10, 30, 25]}
                                 for name in ("a.png", "b.png", "c.png")})
    out = photos / "out"
    status = main(["correspondence", parts, "--layer", "conv2", "--layer", "fc6", "-o", str(out), *TINY])
    printed = capsys.readouterr().out
    assert status == 0
    results = json.loads((out / "correspondence.json").read_text())
    assert results["images"] == ["a.png", "b.png", "c.png"]
    assert set(results["parts"]) == {"eye", "ear"} and results["parts"]["eye"]["conv2"]["pairs"] == 3
    assert results["random"]["fc6"]["pairs"] == 5 * 2 * 3
    assert (out / "correspondence.png").read_bytes()[:4] == b"\x89PNG"
    assert "random" in printed and "eye" in printed


@pytest.mark.parametrize("parts, extra, message", [
    (None, [], "part file not found"),
    ({"a.png": {"eye": [30, 20, 500, 40]}, "b.png": {"eye": [30, 20, 50, 40]}}, [], "outside the image"),
    ({"a.png": {"eye": [30, 20, 50, 40]}}, [], "at least two"),
    ({"a.png": {"eye": [30, 20, 50, 40]}, "dog.jpg": {"eye": [1, 2, 3, 4]}}, [], "not in"),
    ({"a.png": {"eye": [30, 20, 50]}, "b.png": {"eye": [30, 20, 50, 40]}}, [], "four numbers"),
    ({"a.png": {"eye": [30, 20, 50, 40]}, "b.png": {"eye": [30, 20, 50, 40]}}, ["--layer", "conv9"], "conv9"),
])
def test_cli_bad_inputs_exit_2_in_one_line(photos, capsys, parts, extra, message):
    path = write_parts(photos, parts) if parts is not None else str(photos / "missing.json")
    layers = extra or ["--layer", "conv2"]
    status = main(["correspondence", path, *layers, "-o", str(photos / "out"), *TINY])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("deconv: error:") and message in err and err.count("\n") == 1
    assert not (photos / "out").exists()
