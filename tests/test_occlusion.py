"""Occlusion sensitivity: hand-built models whose answer is known, brute force, and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deconvnet import DeconvError
from deconvnet.cli import main
from deconvnet.models import HED_TRANSFORM, IMAGENET_TRANSFORM, LoadedModel, class_index
from deconvnet.models.transforms import ImageTransform
from deconvnet.tasks.occlusion.compute import OcclusionGrid, mid_grey, occlusion_map
from deconvnet.tasks.occlusion.files import occlusion
from tolerance import assert_same_projection, network_sums

SIDE = 64
SQUARE = (20, 36, 8)  # top, left, side of the bright square
GREY = 0.5


def brightness_model() -> nn.Module:
    """One channel that fires only where the 5x5 mean brightness exceeds 0.6."""
    conv = nn.Conv2d(3, 1, kernel_size=5, padding=2)
    with torch.no_grad():
        conv.weight.fill_(1.0 / 75)
        conv.bias.fill_(-0.6)
    return nn.Sequential(conv, nn.ReLU()).eval()


def bright_square_image() -> torch.Tensor:
    x = torch.full((1, 3, SIDE, SIDE), GREY)
    top, left, side = SQUARE
    x[..., top : top + side, left : left + side] = 1.0
    return x


def overlaps(box, square) -> bool:
    top, left, height, width = box
    s_top, s_left, side = square
    return top < s_top + side and s_top < top + height and left < s_left + side and s_left < left + width


def brute_force(model, x, grid: OcclusionGrid, fill, value) -> torch.Tensor:
    """Occlude each position by plain slicing, run the model on all of them, apply ``value``.

    ``value`` maps the model's output for a batch to one number per image.
    """
    images = []
    for top in grid.tops:
        for left in grid.lefts:
            occluded = x[0].clone()
            occluded[:, top : top + grid.size, left : left + grid.size] = fill
            images.append(occluded)
    with torch.no_grad():
        return value(model(torch.stack(images))).double().view(grid.shape)


@pytest.mark.parametrize("measure", ["unit", "total"])
def test_map_matches_brute_force_and_finds_the_square(measure):
    model, x = brightness_model(), bright_square_image()
    result = occlusion_map(model, x, fill=GREY, layer="1", channel=0, measure=measure,
                           size=12, stride=4, batch_size=7, progress=False)
    assert result.grid.shape == (14, 14)  # (64 - 12) / 4 + 1
    y, x_ = result.unit.position
    if measure == "unit":
        value = lambda out: out[:, 0, y, x_]  # noqa: E731
    else:
        value = lambda out: out[:, 0].flatten(1).sum(1)  # noqa: E731
    expected = brute_force(model, x, result.grid, GREY, value)
    # occluded images batched by 7 against one stacked batch: equal to rounding
    assert_same_projection(result.map, expected, **network_sums(model))
    with torch.no_grad():
        assert result.baseline == pytest.approx(float(value(model(x))), rel=1e-6)
    # The unit sits on the bright square, the square is the only thing that drives it.
    top, left, side = SQUARE
    assert top <= y < top + side and left <= x_ < left + side
    assert overlaps(result.most_affected, SQUARE)
    assert result.most_affected_value == pytest.approx(0.0)  # covering the square silences the channel
    assert result.drop.max() == pytest.approx(result.baseline)
    far = result.grid.box(result.grid.shape[0] - 1, 0)  # bottom-left: nowhere near the square
    assert not overlaps(far, SQUARE)
    assert result.map[-1, 0] == pytest.approx(result.baseline)


def test_fill_per_channel_and_ragged_grid():
    model, x = brightness_model(), bright_square_image()
    fill = torch.tensor([0.1, 0.2, 0.3])
    result = occlusion_map(model, x, fill=fill, layer="0", channel=0, size=10, stride=7, progress=False)
    assert result.grid.tops == (0, 7, 14, 21, 28, 35, 42, 49, 54)  # last one flush with the border
    y, x_ = result.unit.position
    expected = brute_force(model[0], x, result.grid, fill.view(3, 1, 1), lambda out: out[:, 0, y, x_])
    # occluded images batched by 7 against one stacked batch: equal to rounding
    assert_same_projection(result.map, expected, **network_sums(model))
    upsampled = result.grid.upsample(result.map)
    assert upsampled.shape == (SIDE, SIDE)
    assert upsampled[0, 0] == result.map[0, 0] and upsampled[-1, -1] == result.map[-1, -1]


class TinyClassifier(nn.Module):
    """Class 1's score grows with the bright square's brightness; classes 0 and 2 are constant."""

    def __init__(self) -> None:
        super().__init__()
        self.features = brightness_model()
        self.classifier = nn.Sequential(nn.Linear(1, 3))
        with torch.no_grad():
            self.classifier[0].weight.copy_(torch.tensor([[0.0], [40.0], [0.0]]))
            self.classifier[0].bias.zero_()

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x).amax(dim=(2, 3)), 1))


def test_class_probability_matches_brute_force():
    model, x = TinyClassifier().eval(), bright_square_image()
    result = occlusion_map(model, x, fill=GREY, target_class=1, size=12, stride=4, progress=False)
    assert result.measure == "probability" and result.layer == "classifier.0"
    expected = brute_force(model, x, result.grid, GREY, lambda out: out.softmax(1)[:, 1])
    assert_same_projection(result.map, expected, **network_sums(model))  # batched differently: equal to rounding
    with torch.no_grad():
        assert result.baseline == pytest.approx(float(model(x).softmax(1)[0, 1]), rel=1e-6)
    assert overlaps(result.most_affected, SQUARE)
    assert result.most_affected_value == pytest.approx(1 / 3)  # no evidence left: uniform
    named = occlusion_map(model, x, fill=GREY, target_class=1, layer="classifier.0", size=12, stride=4,
                          progress=False)
    torch.testing.assert_close(named.map, result.map)


def test_mid_grey_is_rgb_128_in_input_space():
    torch.testing.assert_close(mid_grey(HED_TRANSFORM), torch.tensor([128 - 103.939, 128 - 116.779, 128 - 123.68]))
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(mid_grey(IMAGENET_TRANSFORM), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(layer="1", channel=0, size=0), "size"),
    (dict(layer="1", channel=0, size=65), "between 1 and 64"),
    (dict(layer="1", channel=0, stride=0), "stride"),
    (dict(layer="1", channel=0, batch_size=0), "batch_size"),
    (dict(layer="1"), "no channel"),
    (dict(), "no layer and channel"),
    (dict(layer="1", channel=3), "out of range"),
    (dict(layer="nope", channel=0), "unknown layer"),
    (dict(layer="1", channel=0, measure="mean"), "unknown measure"),
    (dict(layer="1", channel=0, target_class=1), "not both"),
    (dict(target_class=0), "class scores of shape (N, classes)"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(DeconvError, match=message.replace("(", r"\(").replace(")", r"\)")):
        occlusion_map(brightness_model(), bright_square_image(), fill=GREY, progress=False,
                      **{"size": 12, "stride": 4, **kwargs})


def test_class_out_of_range_and_bad_fill():
    with pytest.raises(DeconvError, match=r"0\.\.2"):
        occlusion_map(TinyClassifier().eval(), bright_square_image(), fill=GREY, target_class=3, progress=False)
    with pytest.raises(DeconvError, match="one per input channel"):
        occlusion_map(brightness_model(), bright_square_image(), fill=torch.zeros(2), layer="1", channel=0)


def test_class_names():
    names = ["tiger", "Tabby", "tiger cat", "crane", "crane"]
    assert class_index("tabby", names) == 1
    assert class_index(" TIGER ", names) == 0
    assert class_index(4, names) == 4
    with pytest.raises(DeconvError, match="close matches: 'Tabby'"):
        class_index("tabbby", names)
    with pytest.raises(DeconvError, match="ambiguous.*3, 4"):
        class_index("crane", names)
    with pytest.raises(DeconvError, match="no close match"):
        class_index("submarine", names)
    with pytest.raises(DeconvError, match="without class names"):
        class_index("tabby", None)


def tiny_loaded() -> LoadedModel:
    transform = ImageTransform(resize=None, crop=None)  # 0..1 RGB, no normalization
    return LoadedModel("tiny", TinyClassifier().eval(), transform, "random", categories=["grey", "bright", "other"])


def test_file_level_with_a_named_class(tmp_path):
    image = np.full((SIDE, SIDE, 3), 128, np.uint8)
    image[20:28, 36:44] = 255
    Image.fromarray(image).save(tmp_path / "square.png")
    done = occlusion(tmp_path / "square.png", tmp_path / "out.png", target_class="BRIGHT", model=tiny_loaded(),
                     size=12, stride=4, progress=False)
    assert done.class_name == "bright" and done.result.target_class == 1
    assert overlaps(done.result.most_affected, SQUARE)
    assert (tmp_path / "out.png").stat().st_size > 0
    with pytest.raises(DeconvError, match="close matches: 'bright'"):
        occlusion(tmp_path / "square.png", tmp_path / "bad.png", target_class="brigt", model=tiny_loaded())
    assert not (tmp_path / "bad.png").exists()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_default_model(photo, tmp_path, capsys):
    out = tmp_path / "occ.png"
    status = main(["occlusion", str(photo), "--layer", "conv3_3", "--channel", "5",
                   "--size", "112", "--stride", "112", "-o", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert out.stat().st_size > 0
    assert "baseline" in printed and "4 positions (2x2)" in printed and f"wrote {out}" in printed


@pytest.mark.parametrize("extra, message", [
    (["--layer", "conv3_3", "--channel", "5", "--size", "0"], "size"),
    (["--class", "tabby"], "without class names"),
    (["--layer", "conv3_3"], "no channel"),
])
def test_cli_errors_exit_2_in_one_line(photo, tmp_path, capsys, extra, message):
    out = tmp_path / "never.png"
    assert main(["occlusion", str(photo), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deconv: error:") and message in err and err.count("\n") == 1
    assert not out.exists()
