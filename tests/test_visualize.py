"""deconv visualize's figures: both rules by default, the ranked channel grid, notebook display.

Expected values come from elsewhere: the ranking from a plain forward through the model's
own layers (nn.Sequential slicing, no deconvnet code), the projections from autograd with
the same ReLU rule (tests/reference.py), and the panels are read back from the rendered
pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deconvnet
from deconvnet.cli import main
from deconvnet.render import crop_with_padding, to_display
from deconvnet.tasks.visualize.compute import strongest_channels
from reference import autograd_projection

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CAT = ASSETS / "cat.jpg"
# vgg16-hed is torchvision's VGG16 layout: conv2_2 is features.7, conv3_3 is features.14
CONV2_2, CONV3_3 = 8, 15  # slice ends: features[:8] ends with conv2_2's output


@pytest.fixture(scope="module")
def vgg():
    loaded = deconvnet.load("vgg16-hed")
    x = loaded.transform(Image.open(CAT))[None]  # (1, 3, 224, 224)
    return loaded, x


def _plain_forward(loaded, x, end: int) -> torch.Tensor:
    """The layer's output from the model's own layers run as a plain Sequential, (C, H, W)."""
    with torch.no_grad():
        return loaded.model.features[:end](x.clone())[0]  # before the in-place ReLU that follows


def _brute_force_ranking(activation: torch.Tensor) -> tuple[list[int], list[float]]:
    """Channels by their largest activation, strongest first."""
    peaks = activation.amax(dim=(1, 2))
    order = sorted(range(len(peaks)), key=lambda c: -float(peaks[c]))
    return order, [float(peaks[c]) for c in order]


def test_ranked_channels_equal_a_brute_force_ranking(vgg):
    loaded, x = vgg
    activation = _plain_forward(loaded, x, CONV3_3)
    channels, values = _brute_force_ranking(activation)
    assert values[0] > values[9] > 0  # a real ranking, not ties at zero
    with deconvnet.Deconvnet(loaded.model) as dn:
        units = strongest_channels(dn, x, "conv3_3", top=10)
    assert [u.channel for u in units] == channels[:10]
    assert [u.value for u in units] == pytest.approx(values[:10], rel=1e-4)
    for unit in units:  # each unit is where its channel peaks
        assert float(activation[(unit.channel, *unit.position)]) == pytest.approx(unit.value, rel=1e-4)


def test_without_channel_the_command_prints_and_draws_the_ranked_top(vgg, tmp_path, capsys):
    loaded, x = vgg
    channels, values = _brute_force_ranking(_plain_forward(loaded, x, CONV2_2))
    output = tmp_path / "top.png"
    assert main(["visualize", "--layer", "conv2_2", "--top", "4", str(CAT), "-o", str(output)]) == 0
    printed = capsys.readouterr().out.splitlines()
    header = printed.index("  rank  channel  activation  at (y, x)")
    rows = [line.split() for line in printed[header + 1:header + 5]]
    assert [int(row[1]) for row in rows] == channels[:4]
    assert [float(row[2]) for row in rows] == pytest.approx(values[:4], rel=1e-3)
    assert printed[-1] == f"wrote {output}"
    shown = Image.open(output)
    assert shown.width > shown.height  # four columns of patch, deconvnet, guided


def test_channel_list_is_projected_in_the_given_order_with_one_figure(vgg, tmp_path):
    loaded, _ = vgg
    done = deconvnet.visualize(CAT, tmp_path / "three.png", layer="conv2_2", channel=[12, 40, 7], model=loaded)
    assert [u.channel for u in done.units] == [12, 40, 7]
    assert list(done.projections) == ["deconvnet", "guided"]
    assert all(maps.shape == (3, 3, 224, 224) for maps in done.projections.values())
    titles = [f"channel {u.channel}\n{u.value:.4g}" for u in done.units]
    assert [ax.get_title() for ax in done.figure.axes[:3]] == titles
    assert (tmp_path / "three.png").is_file()


def _panel_samples(rendered: np.ndarray, axes, figure_height: float, expected_shape) -> np.ndarray:
    """The rendered colour at the centre of each source pixel of the picture shown in ``axes``."""
    box = axes.get_window_extent()  # display pixels, origin at the bottom left
    rows, cols = expected_shape[:2]
    ys = np.floor(figure_height - box.y1 + (np.arange(rows) + 0.5) * box.height / rows).astype(int)
    xs = np.floor(box.x0 + (np.arange(cols) + 0.5) * box.width / cols).astype(int)
    return rendered[np.ix_(ys, xs)].astype(int)


def test_default_figure_shows_the_deconvnet_and_the_guided_projection(vgg, tmp_path):
    loaded, x = vgg
    done = deconvnet.visualize(CAT, None, layer="conv3_3", channel=5, model=loaded)
    assert done.output is None and not list(tmp_path.iterdir())
    assert done.box.height == done.box.width == 40  # conv3_3's receptive field
    figure = done.figure
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["input", "image patch", "deconvnet (Zeiler & Fergus)", "guided backpropagation"]
    note = figure.get_supxlabel()
    assert "ignores the forward ReLU masks" in note and "guided backpropagation applies them" in note

    expected = {}
    for mode in ("deconvnet", "guided"):
        grad, value, position = autograd_projection(loaded.model, x, "features.14", 5, None, mode)
        assert position == done.unit.position and value == pytest.approx(done.unit.value, rel=1e-4)
        rgb = loaded.transform.as_rgb(grad[0])  # (3, H, W), the photo's channel order
        expected[mode] = to_display(crop_with_padding(rgb, tuple(done.box)), percentile=99.5)  # (40, 40, 3)
    assert np.abs(expected["deconvnet"].astype(int) - expected["guided"]).mean() > 5  # the rules do differ here

    figure.canvas.draw()
    rendered = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    for axes, mode, other in ((figure.axes[2], "deconvnet", "guided"), (figure.axes[3], "guided", "deconvnet")):
        samples = _panel_samples(rendered, axes, rendered.shape[0], expected[mode].shape)
        error = np.abs(samples - expected[mode]).max(axis=-1)
        assert (error <= 2).mean() > 0.97, mode  # the panel shows this rule's projection...
        distance = {rule: np.abs(samples - expected[rule]).mean() for rule in expected}
        assert distance[other] > 3 * distance[mode] + 1  # ...and not the other one


def test_a_single_mode_keeps_the_three_panel_figure(vgg):
    loaded, _ = vgg
    done = deconvnet.visualize(CAT, layer="conv2_2", channel=3, mode="guided", model=loaded)
    assert [ax.get_title() for ax in done.figure.axes] == ["input", "image patch", "guided backpropagation"]
    assert list(done.projections) == ["guided"]


def test_results_display_inline_in_jupyter(vgg):
    loaded, x = vgg
    done = deconvnet.visualize(CAT, layer="conv2_2", channel=3, mode="deconvnet", model=loaded)
    png = done._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).width > 300
    with deconvnet.Deconvnet(loaded.model) as dn:
        projection = dn.project_units(x, "conv2_2", [(0, 3, None), (0, 9, None)])
    picture = projection.to_image(transform=loaded.transform, percentile=None)
    assert picture.size == (2 * 224 + 2, 224)  # two maps side by side, 2 pixels apart
    first = np.asarray(picture)[:, :224]
    assert np.array_equal(first, to_display(loaded.transform.as_rgb(projection.maps[0])))
    assert projection.to_image(1).size == (224, 224)
    figure = projection.show()
    assert [ax.get_title().split("\n")[0] for ax in figure.axes] == [
        f"conv2_2 channel {u.channel} at {u.position}" for u in projection.units]
    assert projection._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--channel", "12,40", "--position", "1,1"], "a position picks one unit"),
    (["--channel", "12,"], "expected a channel or a list"),
    (["--mode", "guided,bogus"], "unknown mode 'bogus'"),
    (["--top", "0"], "at least 1"),
])
def test_bad_visualize_options_get_one_line(argv, message, tmp_path, capsys):
    try:
        status = main(["visualize", "--layer", "conv1_1", *argv, str(CAT), "-o", str(tmp_path / "x.png")])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_the_readme_shows_the_picture_of_its_main_command():
    import importlib.util
    import re

    readme = (ASSETS.parent / "README.md").read_text()
    main_command = re.search(r"pip install \. && deconv (visualize [^\n]*) -o out\.png", readme).group(1)
    first_picture = re.search(r"!\[[^\]]*\]\((assets/[^)]+)\)", readme).group(1)
    spec = importlib.util.spec_from_file_location("figures", ASSETS.parent / "scripts" / "make_visualize_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    made_by = {f"assets/{name}": " ".join(command) for name, command in figures.COMMANDS}
    assert made_by[first_picture] == main_command
