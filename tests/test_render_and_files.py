"""Pictures and files: signed maps around mid-grey, padded crops, grids, atomic writes."""

import os

import numpy as np
import pytest
import torch

from deconvnet.fileio import atomic_path, check_writable_dir, save_image_atomic, write_json_atomic
from deconvnet.render import channel_sheet, crop_with_padding, grid, to_display


def test_zero_is_mid_grey_and_the_scale_is_symmetric():
    t = torch.tensor([[[-2.0, 0.0, 1.0, 2.0]]]).expand(3, 1, 4)
    shown = to_display(t)[0, :, 0].tolist()
    assert shown == [1, 128, 192, 255]  # -max -> 1, 0 -> 128, max/2 -> 128 + 63.5 rounded to even, max -> 255
    mirrored = to_display(-t)[0, :, 0].astype(int)
    assert (mirrored - 128).tolist() == [-(v - 128) for v in shown]


def test_all_zero_map_is_plain_grey():
    assert (to_display(torch.zeros(3, 5, 5)) == 128).all()


def test_percentile_clipping_saturates_outliers():
    t = torch.ones(1, 10, 10)
    t[0, 0, 0] = 1000.0
    plain = to_display(t)
    clipped = to_display(t, percentile=90)
    assert plain[5, 5, 0] == 128  # 1/1000 of the scale: indistinguishable from grey
    assert clipped[5, 5, 0] == 255 and clipped[0, 0, 0] == 255


def test_crop_past_the_corner_is_padded_to_the_requested_size():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    crop = crop_with_padding(image, (-2, -1, 4, 3), fill=0)
    assert crop.shape == (4, 3, 3)
    assert (crop[:2] == 0).all() and (crop[:, 0] == 0).all()
    np.testing.assert_array_equal(crop[2:, 1:], image[:2, :2])
    tensor = torch.arange(2 * 4 * 4.0).view(2, 4, 4)
    tcrop = crop_with_padding(tensor, (2, 2, 4, 4))  # channels first for tensors
    assert tcrop.shape == (2, 4, 4)
    torch.testing.assert_close(tcrop[:, :2, :2], tensor[:, 2:, 2:])
    assert tcrop[:, 2:].abs().sum() == 0


def test_grid_of_five_is_three_by_two_with_cells_in_place():
    cells = [np.full((4, 4, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    picture = grid(cells, pad=1, pad_value=255)
    assert picture.shape == (4 + 1 + 4, 4 + 1 + 4 + 1 + 4, 3)  # 2 rows, 3 columns, 1 px between cells
    assert picture[0, 0, 0] == 10 and picture[0, 5, 0] == 20 and picture[5, 0, 0] == 40 and picture[5, 5, 0] == 50
    assert (picture[5:, 10:] == 255).all() and (picture[4, :] == 255).all()  # the empty sixth cell, a pad row


def test_channel_sheet_puts_projections_beside_patches():
    projections = [np.zeros((8, 8, 3), np.uint8)] * 9
    patches = [np.full((8, 8, 3), 200, np.uint8)] * 9
    sheet = channel_sheet(projections, patches, pad=0, gap=4, min_cell=8)
    assert sheet.shape == (24, 24 + 4 + 24, 3)
    assert (sheet[:, :24] == 0).all() and (sheet[:, 28:] == 200).all()


def test_atomic_write_leaves_no_temporary_file_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash in the middle")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_image_is_written_whole(tmp_path):
    path = save_image_atomic(tmp_path / "grid.png", np.zeros((4, 4, 3), np.uint8))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["grid.png"]


def test_missing_directory_is_reported_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_writable_dir(tmp_path / "nope")
