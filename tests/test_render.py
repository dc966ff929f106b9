"""Checks of deconvnet.render (pictures and figures) against values worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from deconvnet.errors import DeconvError
from deconvnet.render import (
    channel_sheet,
    channels_figure,
    crop_with_padding,
    grid,
    image_to_uint8,
    mosaic,
    to_display,
    visualize_figure,
)
from deconvnet.render.figures import new_figure, outline_box

# ------------------------------------------------------------------ to_display


def test_known_values_give_known_grey_levels():
    # max |t| = 4, so t/4 = -1, -0.25, 0, 0.25, 1 -> 128 + 127 * that, rounded.
    t = torch.tensor([[-4.0, -1.0, 0.0, 1.0, 4.0]])
    out = to_display(t)
    assert out.shape == (1, 5, 3) and out.dtype == np.uint8
    for channel in range(3):
        assert out[0, :, channel].tolist() == [1, 96, 128, 160, 255]


def test_zero_is_mid_grey_and_all_zero_map_is_plain_grey_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        out = to_display(torch.zeros(3, 4, 5))
    assert out.shape == (4, 5, 3)
    assert (out == 128).all()


def test_t_and_minus_t_mirror_around_128():
    t = torch.randn(3, 9, 11, generator=torch.Generator().manual_seed(0))
    plus, minus = to_display(t).astype(int), to_display(-t).astype(int)
    assert ((plus - 128) == -(minus - 128)).all()


def test_channel_order_is_kept_and_channels_share_one_scale():
    t = torch.zeros(3, 1, 2)
    t[0, 0, 0] = 2.0  # red, the peak
    t[2, 0, 1] = -1.0  # blue, half the peak, negative
    out = to_display(t)
    assert out[0, 0].tolist() == [255, 128, 128]
    assert out[0, 1].tolist() == [128, 128, 128 - 64]  # rint(-63.5) = -64 (half to even)


def test_percentile_clipping_saturates_outliers():
    values = torch.ones(100)
    values[-1] = 100.0  # one outlier
    values[0] = -50.0  # and a negative one
    t = values.reshape(10, 10)
    # Without clipping the outlier sets the scale: 1/100 -> 128 + 1.27 -> 129.
    assert to_display(t)[0, 1, 0] == 129
    # The median of |t| is 1: ordinary values reach full white, outliers clip.
    clipped = to_display(t, percentile=50)
    assert clipped[0, 1, 0] == 255
    assert clipped[9, 9, 0] == 255
    assert clipped[0, 0, 0] == 1


def test_percentile_that_lands_on_zero_falls_back_to_maximum():
    t = torch.zeros(10, 10)
    t[3, 4] = 2.0
    t[5, 5] = 1.0
    out = to_display(t, percentile=50)  # the median |t| is 0
    assert out[3, 4, 0] == 255
    assert out[5, 5, 0] == 128 + 64  # 127 * 0.5 = 63.5 -> 64
    assert out[0, 0, 0] == 128


def test_single_channel_and_two_dimensional_maps_become_the_same_grey_rgb():
    t = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    flat = to_display(t)
    assert np.array_equal(flat, to_display(t[None]))
    assert np.array_equal(flat[..., 0], flat[..., 1]) and np.array_equal(flat[..., 0], flat[..., 2])
    assert flat[..., 0].tolist() == [[192, 1], [128, 160]]


def test_numpy_input_and_batch_of_one_are_accepted():
    t = torch.tensor([[[[-1.0, 1.0]]] * 3])  # (1, 3, 1, 2)
    assert to_display(t)[0, :, 0].tolist() == [1, 255]
    assert to_display(t[0].numpy())[0, :, 0].tolist() == [1, 255]


@pytest.mark.parametrize("percentile", [0, -1, 100.5])
def test_bad_percentile_is_rejected(percentile):
    with pytest.raises(ValueError, match="percentile"):
        to_display(torch.ones(2, 2), percentile=percentile)


def test_feature_map_shapes_and_nan_are_rejected():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_display(torch.ones(64, 5, 5))
    with pytest.raises(ValueError, match="NaN"):
        to_display(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError):
        to_display([[1.0, 2.0]])


# --------------------------------------------------------------- image_to_uint8


def test_image_to_uint8_scales_unit_range_and_respects_max_value():
    t = torch.tensor([[[0.0, 0.5, 1.0]]]).repeat(3, 1, 1)
    assert image_to_uint8(t)[0, :, 0].tolist() == [0, 128, 255]  # 127.5 -> 128
    assert image_to_uint8(t * 255, max_value=255)[0, :, 0].tolist() == [0, 128, 255]
    u8 = torch.arange(6, dtype=torch.uint8).reshape(3, 1, 2)
    assert image_to_uint8(u8)[0, 1].tolist() == [1, 3, 5]


def test_image_to_uint8_rejects_a_still_normalised_image():
    with pytest.raises(ValueError, match="max_value=255"):
        image_to_uint8(torch.full((3, 2, 2), 200.0))
    with pytest.raises(ValueError, match="denormalize"):
        image_to_uint8(torch.full((3, 2, 2), -1.5))


# ------------------------------------------------------------ crop_with_padding


def _hwc() -> np.ndarray:
    return np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


def test_numpy_crop_at_top_left_corner_pads_with_fill():
    a = _hwc()
    out = crop_with_padding(a, (-1, -2, 3, 3), fill=7)
    assert out.shape == (3, 3, 3) and out.dtype == np.uint8
    # Rows -1..1 and columns -2..0: only rows 0..1 of column 0 are inside.
    expected = np.full((3, 3, 3), 7, np.uint8)
    expected[1, 2] = a[0, 0]
    expected[2, 2] = a[1, 0]
    assert np.array_equal(out, expected)


def test_numpy_crop_past_bottom_right_corner():
    a = _hwc()
    out = crop_with_padding(a, (3, 4, 2, 2), fill=0)
    expected = np.zeros((2, 2, 3), np.uint8)
    expected[0, 0] = a[3, 4]
    assert np.array_equal(out, expected)


def test_crop_inside_equals_slicing_and_is_a_copy():
    a = _hwc()
    out = crop_with_padding(a, (1, 1, 2, 3))
    assert np.array_equal(out, a[1:3, 1:4])
    out[0, 0, 0] = 99
    assert a[1, 1, 0] != 99


def test_crop_completely_outside_is_all_fill():
    out = crop_with_padding(_hwc(), (10, 10, 2, 2), fill=5)
    assert (out == 5).all() and out.shape == (2, 2, 3)


def test_torch_crop_is_channels_first_and_matches_numpy():
    a = _hwc()
    t = torch.from_numpy(a).permute(2, 0, 1).float()  # (3, 4, 5)
    out = crop_with_padding(t, (-1, -2, 3, 3), fill=-1.5)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 3, 3) and out.dtype == torch.float32
    assert out[:, 1, 2].tolist() == a[0, 0].tolist()
    assert out[:, 2, 2].tolist() == a[1, 0].tolist()
    assert out[:, 0, 0].tolist() == [-1.5, -1.5, -1.5]
    assert (out[:, :, :2] == -1.5).all()


def test_every_crop_of_a_layer_has_the_same_size():
    a = _hwc()
    shapes = {crop_with_padding(a, (top, left, 3, 3)).shape for top in range(-2, 5) for left in range(-2, 6)}
    assert shapes == {(3, 3, 3)}


def test_crop_errors_are_clear():
    with pytest.raises(ValueError, match="positive"):
        crop_with_padding(_hwc(), (0, 0, 0, 2))
    with pytest.raises(TypeError, match="four integers"):
        crop_with_padding(_hwc(), (0, 0, 2.5, 2))
    with pytest.raises(ValueError, match="fill"):
        crop_with_padding(_hwc(), (0, 0, 2, 2), fill=300)
    with pytest.raises(ValueError, match="channels-first"):
        crop_with_padding(np.zeros((3, 32, 32), np.uint8), (0, 0, 2, 2))


# ------------------------------------------------------------------------ grid


def _solid(value: int, shape=(2, 3)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def test_grid_of_five_is_three_by_two_with_cells_in_reading_order():
    images = [_solid(10 * (k + 1)) for k in range(5)]
    out = grid(images, pad=1, pad_value=255)
    # 3 columns x 2 rows of 2x3 cells with 1-pixel gaps.
    assert out.shape == (2 * 2 + 1, 3 * 3 + 2, 3)
    for k in range(5):
        row, col = divmod(k, 3)
        top, left = row * 3, col * 4
        assert (out[top : top + 2, left : left + 3] == 10 * (k + 1)).all()
    assert (out[2, :] == 255).all()  # the gap between the rows
    assert (out[:, 3] == 255).all() and (out[:, 7] == 255).all()  # gaps between columns
    assert (out[3:5, 8:11] == 255).all()  # the sixth, empty cell


def test_grid_with_explicit_columns_and_no_padding():
    out = grid([_solid(1), _solid(2), _solid(3)], ncols=1, pad=0)
    assert out.shape == (6, 3, 3)
    assert out[:, 0, 0].tolist() == [1, 1, 2, 2, 3, 3]


def test_grid_rejects_mixed_sizes_empty_lists_and_floats():
    with pytest.raises(ValueError, match="same shape"):
        grid([_solid(0), _solid(0, (3, 3))])
    with pytest.raises(ValueError, match="empty"):
        grid([])
    with pytest.raises(TypeError, match="uint8"):
        grid([np.zeros((2, 2, 3))])


# --------------------------------------------------------- channel_sheet/mosaic


def test_channel_sheet_puts_upscaled_projections_left_of_patches():
    projections = [_solid(10, (7, 7)) for _ in range(9)]
    projections[0][0, 0] = 99  # one marked pixel
    patches = [_solid(200, (7, 7)) for _ in range(9)]
    out = channel_sheet(projections, patches, pad=2, min_cell=64, gap=8)
    # 7 px crops are enlarged x10 (the smallest integer reaching 64) to 70 px.
    side = 3 * 70 + 2 * 2
    assert out.shape == (side, side + 8 + side, 3)
    assert (out[:10, :10] == 99).all()  # the marked pixel is a 10x10 block
    assert out[10, 10, 0] == 10 and out[0, 10, 0] == 10
    assert (out[:, side : side + 8] == 255).all()  # the gap
    assert (out[:70, side + 8 : side + 8 + 70] == 200).all()  # first patch


def test_channel_sheet_keeps_large_crops_and_checks_counts():
    crops = [_solid(5, (80, 80))] * 4
    assert channel_sheet(crops, crops, pad=0, gap=0).shape == (160, 320, 3)
    with pytest.raises(ValueError, match="one projection per patch"):
        channel_sheet(crops, crops[:3])


def test_mosaic_without_labels_is_a_grid_of_sheets():
    sheets = [_solid(k, (4, 6)) for k in (1, 2, 3)]
    out = mosaic(sheets, None, pad=8)
    assert out.shape == (2 * 4 + 8, 2 * 6 + 8, 3)
    assert (out[12:16, 0:6] == 3).all()


def test_mosaic_draws_each_label_above_its_sheet():
    sheets = [_solid(100, (20, 60)) for _ in range(2)]
    out = mosaic(sheets, ["ch 1", "ch 12"], ncols=2, pad=4)
    strip = out.shape[0] - 20  # label band height
    assert strip > 4
    assert (out[strip:, :60] == 100).all()
    assert (out[strip:, 64:] == 100).all()
    assert out[:strip, :60].min() < 128  # dark text on the white band
    assert out[:strip, 64:].min() < 128
    with pytest.raises(ValueError, match="one label per sheet"):
        mosaic(sheets, ["only one"])


# ------------------------------------------------------------ visualize_figure


def test_visualize_figure_panels_titles_and_clipped_box():
    image = np.zeros((10, 12, 3), np.uint8)
    patch = np.full((20, 20, 3), 50, np.uint8)
    projection = np.full((20, 20, 3), 128, np.uint8)
    fig = visualize_figure(image, (-5, 4, 20, 20), patch, projection, title="conv3 ch 7", subtitle="act 3.2")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["input", "image patch", "projection"]
    assert "conv3 ch 7" in fig._suptitle.get_text() and "act 3.2" in fig._suptitle.get_text()
    (rect,) = fig.axes[0].patches
    # Rows -5..14 and columns 4..23 clipped to the 10x12 image: rows 0..9, columns 4..11.
    assert rect.get_xy() == (3.5, -0.5)
    assert (rect.get_width(), rect.get_height()) == (8, 10)
    fig.canvas.draw()  # renders on Agg without a display


def test_visualize_figure_crops_a_full_size_projection():
    image = np.zeros((10, 10, 3), np.uint8)
    projection = np.arange(300, dtype=np.uint8).reshape(10, 10, 3)
    patch = np.zeros((4, 4, 3), np.uint8)
    fig = visualize_figure(image, (-2, 8, 4, 4), patch, projection, title="t")
    shown = np.asarray(fig.axes[2].images[0].get_array())
    expected = np.full((4, 4, 3), 128, np.uint8)
    expected[2:4, 0:2] = projection[0:2, 8:10]
    assert np.array_equal(shown, expected)


def test_visualize_figure_rejects_mismatched_projection():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="cropped like the patch"):
        visualize_figure(image, (0, 0, 4, 4), np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8), title="t")


def test_visualize_figure_draws_one_titled_panel_per_rule_and_the_note():
    image = np.zeros((10, 10, 3), np.uint8)
    patch = np.zeros((4, 4, 3), np.uint8)
    first, second = np.full((4, 4, 3), 10, np.uint8), np.full((4, 4, 3), 200, np.uint8)
    fig = visualize_figure(image, (0, 0, 4, 4), patch, {"rule a": first, "rule b": second}, title="t", note="why")
    assert [ax.get_title() for ax in fig.axes] == ["input", "image patch", "rule a", "rule b"]
    assert np.array_equal(fig.axes[2].images[0].get_array(), first)
    assert np.array_equal(fig.axes[3].images[0].get_array(), second)
    assert fig.get_supxlabel() == "why"
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # Jupyter displays it without pyplot


def test_channels_figure_has_a_column_per_unit_and_wraps_after_eight():
    crops = [np.full((5, 5, 3), level, np.uint8) for level in range(10)]
    labels = [f"ch {i}" for i in range(10)]
    fig = channels_figure(labels, crops, {"guided": crops[::-1]}, title="t")
    axes = np.array(fig.axes).reshape(4, 8)  # 2 blocks of (patch row, guided row), 8 columns
    assert [ax.get_title() for ax in axes[0]] == labels[:8]
    assert [ax.get_title() for ax in axes[2, :2]] == labels[8:]
    assert [axes[row, 0].get_ylabel() for row in range(4)] == ["image patch", "guided"] * 2
    assert np.array_equal(axes[3, 1].images[0].get_array(), crops[0])  # unit 9's projection: crops[::-1][9]
    assert not any(ax.axison for ax in axes[2:, 2:].ravel())  # the empty cells are blank
    with pytest.raises(ValueError, match="one projection per rule"):
        channels_figure(labels, crops, {"guided": crops[:3]}, title="t")


# ------------------------------------------------ pictures without matplotlib


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_drawing_crops_grids_and_sheets_loads_no_matplotlib():
    loaded = _modules_after(
        "import numpy as np, torch\n"
        "from deconvnet.render import channel_sheet, crop_with_padding, grid, mosaic, to_display\n"
        "crop = crop_with_padding(to_display(torch.randn(3, 16, 16)), (-2, 3, 7, 7), fill=128)\n"
        "sheet = channel_sheet([crop] * 9, [crop] * 9)\n"
        "mosaic([sheet, sheet], ['ch 0', 'ch 1']); grid([crop] * 4)\n"
        "from deconvnet.render.pictures import image_to_uint8\n"
        "image_to_uint8(torch.rand(3, 4, 4))")
    assert "deconvnet.render.pictures" in loaded
    assert not {"matplotlib", "deconvnet.render.figures"} & loaded


def test_the_tasks_compute_and_write_modules_load_no_matplotlib():
    loaded = _modules_after("import deconvnet.tasks.correspondence, deconvnet.tasks.filters, "
                            "deconvnet.tasks.invariance, deconvnet.tasks.occlusion, deconvnet.tasks.visualize, "
                            "deconvnet.tasks.sanity.files")
    assert {"deconvnet.tasks.occlusion.files", "deconvnet.tasks.visualize.compute"} <= loaded
    assert "matplotlib" not in loaded


def test_projection_image_and_figure_are_where_the_engine_looks_for_them():
    from deconvnet.engine import drawing
    from deconvnet.render import figures, pictures

    renderer = drawing.renderer()  # registered by deconvnet/__init__.py
    assert renderer.projection_image is pictures.projection_image
    assert renderer.projection_figure is figures.projection_figure


def test_a_projection_with_no_renderer_registered_says_how_to_get_one(monkeypatch):
    from deconvnet.engine import drawing
    from deconvnet.engine.deconvnet import Projection

    monkeypatch.setattr(drawing, "_loader", None)
    projection = Projection(torch.zeros(1, 3, 4, 4), [], None)  # type: ignore[arg-type]
    with pytest.raises(DeconvError, match="needs deconvnet.render.*import deconvnet"):
        projection.to_image()


# ------------------------------------------------ the figure and outline helpers


def test_new_figure_has_the_size_an_agg_canvas_and_constrained_layout():
    fig = new_figure(4.5, 2.0, h_pad=0.3)
    assert fig.get_size_inches().tolist() == [4.5, 2.0]
    assert isinstance(fig.canvas, FigureCanvasAgg)
    engine = fig.get_layout_engine()
    assert isinstance(engine, ConstrainedLayoutEngine) and engine.get()["h_pad"] == 0.3
    assert isinstance(fig, Figure) and fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outline_box_frames_the_pixel_edges_widened_by_the_margin():
    ax = new_figure(2.0, 2.0).subplots()
    outline_box(ax, (2, 3, 4, 5))
    outline_box(ax, (2, 3, 4, 5), margin=1, colour="blue", linewidth=3.0)
    plain, framed = ax.patches
    # pixel (r, c) is centred at (c, r), so the box's first column starts at x = 3 - 0.5
    assert (plain.get_xy(), plain.get_width(), plain.get_height()) == ((2.5, 1.5), 5, 4)
    assert (framed.get_xy(), framed.get_width(), framed.get_height()) == ((1.5, 0.5), 7, 6)
    assert framed.get_linewidth() == 3.0 and framed.get_edgecolor()[:3] == (0.0, 0.0, 1.0)
    assert not plain.get_fill()


def test_outline_box_clipped_to_the_image_draws_only_the_visible_part():
    ax = new_figure(2.0, 2.0).subplots()
    outline_box(ax, (-2, 8, 4, 4), clip_to=(10, 10))  # rows -2..1, columns 8..11 of a 10x10 image
    outline_box(ax, (20, 20, 3, 3), clip_to=(10, 10))  # entirely outside: nothing drawn
    (rect,) = ax.patches
    assert (rect.get_xy(), rect.get_width(), rect.get_height()) == ((7.5, -0.5), 2, 2)
