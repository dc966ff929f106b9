"""Pictures as numpy/PIL arrays: grey-centred projections, crops, grids, channel sheets, mosaics.

Nothing here imports matplotlib: the functions take tensors or uint8 arrays and return
uint8 arrays of shape (H, W, 3) in RGB order (or a PIL image), ready for
:mod:`deconvnet.fileio`. The matplotlib figures built from them are in
:mod:`deconvnet.render.figures`.

Example:
    >>> import torch
    >>> from deconvnet.render.pictures import to_display, crop_with_padding
    >>> projection = torch.randn(3, 224, 224)           # signed, input space, RGB
    >>> picture = to_display(projection, percentile=99.5)
    >>> picture.shape, picture.dtype
    ((224, 224, 3), dtype('uint8'))
    >>> crop = crop_with_padding(picture, (-10, 200, 67, 67), fill=128)
    >>> crop.shape
    (67, 67, 3)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from ..engine.validate import check_integer, check_percentile

if TYPE_CHECKING:
    from ..engine import Projection

__all__ = [
    "GREY",
    "channel_sheet",
    "clip_box",
    "crop_with_padding",
    "grid",
    "image_to_uint8",
    "mosaic",
    "projection_image",
    "projection_pictures",
    "to_display",
]

#: (top, left, height, width) in pixels; top/left may be negative and the box
#: may run past the bottom/right border.
Box = tuple[int, int, int, int]
UInt8Image = NDArray[np.uint8]
ArrayOrTensor = Union[torch.Tensor, np.ndarray]

#: Grey level that shows a projection value of zero.
GREY = 128
# 128 ± 127 covers 1..255, so a value and its negation land exactly the same
# distance either side of 128 (0 itself is never produced).
_HALF_RANGE = 127


# ---------------------------------------------------------------- validation


def check_box(box: Sequence[int]) -> Box:
    """Return ``box`` as four ints; height and width must be positive."""
    try:
        top, left, height, width = (operator.index(v) for v in box)
    except (TypeError, ValueError):
        raise TypeError(
            f"box must be four integers (top, left, height, width), not {box!r}"
        ) from None
    if height <= 0 or width <= 0:
        raise ValueError(f"box height and width must be positive, got {height}x{width}")
    return top, left, height, width


def check_rgb(image: object, name: str) -> UInt8Image:
    """Require a uint8 numpy array shaped (H, W, 3)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy uint8 array (H, W, 3), not {type(image).__name__}; "
            "use to_display or image_to_uint8 to convert a tensor"
        )
    if image.dtype != np.uint8:
        raise TypeError(
            f"{name} must have dtype uint8, not {image.dtype}; "
            "use to_display or image_to_uint8 to convert it"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{name} must be shaped (H, W, 3) with channels last, not {image.shape}; "
            "for a grey (H, W) array use np.repeat(a[:, :, None], 3, axis=2)"
        )
    return image


def _check_same_size_rgb(images: Sequence[UInt8Image], name: str) -> list[UInt8Image]:
    """Require a non-empty list of (H, W, 3) uint8 arrays that all have one shape."""
    checked = [check_rgb(image, f"{name}[{i}]") for i, image in enumerate(images)]
    if not checked:
        raise ValueError(f"{name} is empty; pass at least one image")
    shapes = {image.shape for image in checked}
    if len(shapes) > 1:
        raise ValueError(
            f"all {name} must have the same shape, got {sorted(shapes)}; "
            "crop them with crop_with_padding so every crop has the same size"
        )
    return checked



def _check_level(value: int, name: str) -> int:
    """Require a grey level 0..255."""
    return check_integer(value, name, minimum=0, maximum=255, meaning="a grey level")


# ------------------------------------------------------ tensors -> uint8 images


def _as_float_array(t: ArrayOrTensor, name: str) -> np.ndarray:
    """float64 numpy copy of a tensor or array (detached, on the CPU)."""
    if isinstance(t, torch.Tensor):
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()
    if isinstance(t, np.ndarray):
        return t.astype(np.float64)
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, not {type(t).__name__}")


def _channels_last(values: np.ndarray, name: str) -> np.ndarray:
    """(3,H,W), (1,H,W), (H,W) or (1,C,H,W) -> (H, W, 3); one channel becomes grey."""
    if values.ndim == 4 and values.shape[0] == 1:  # a batch of one, as the engine may return
        values = values[0]
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3 or values.shape[0] not in (1, 3):
        raise ValueError(
            f"{name} must be shaped (3, H, W), (1, H, W) or (H, W), not {tuple(values.shape)}; "
            "pass one input-space map (not a batch or a feature map)"
        )
    if values.shape[1] == 0 or values.shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(values.shape)})")
    if values.shape[0] == 1:
        values = np.repeat(values, 3, axis=0)
    return np.moveaxis(values, 0, -1)


def _display_scale(magnitude: np.ndarray, percentile: float | None) -> float:
    """The |value| shown at full strength: the maximum, or the given percentile."""
    peak = float(magnitude.max())
    percentile = check_percentile(percentile)
    if percentile is None:
        return peak
    scale = float(np.percentile(magnitude, percentile))
    # Sparse maps (mostly exact zeros) can put the percentile at 0; fall back to
    # the maximum rather than saturating every non-zero pixel.
    return scale if scale > 0 else peak

DISPLAY_PERCENTILE: float | None = 99.5  # a dataset sheet's |value| at full strength: this percentile (None: the max)


def to_display(t: ArrayOrTensor, *, percentile: float | None = None) -> UInt8Image:
    """Show a signed projection as an RGB picture with zero at mid-grey.

    Values are divided by max |t| (or by the ``percentile`` of |t|, clipping
    anything beyond it) so the scale is symmetric, then mapped so that
    -1 -> 1, 0 -> 128, +1 -> 255; ``t`` and ``-t`` mirror exactly around 128.
    All channels share one scale, which keeps the colours.  An all-zero map is
    plain grey.  Shapes: (3, H, W) in RGB order, or (1, H, W) / (H, W) shown
    as grey; a leading batch dimension of 1 is dropped.

    Example:
        >>> to_display(torch.tensor([[-2.0, 0.0, 1.0]]))[0, :, 0]
        array([  1, 128, 192], dtype=uint8)
    """
    values = _channels_last(_as_float_array(t, "t"), "t")
    if not np.isfinite(values).all():
        raise ValueError("t contains NaN or infinite values; check the projection that produced it")
    scale = _display_scale(np.abs(values), percentile)
    if scale == 0:
        return np.full(values.shape, GREY, dtype=np.uint8)
    normalised = np.clip(values / scale, -1.0, 1.0)
    # np.rint rounds halves to even, which is symmetric about zero (rint(-x) ==
    # -rint(x)), so the mirror property holds pixel for pixel.
    return (GREY + np.rint(normalised * _HALF_RANGE)).astype(np.uint8)


def image_to_uint8(t: ArrayOrTensor, *, max_value: float = 1.0) -> UInt8Image:
    """Convert an RGB image tensor (3, H, W) in 0..max_value to a uint8 (H, W, 3) array.

    Use ``max_value=255`` for images already in 0..255.  uint8 input is only
    transposed.  Values beyond the range by more than 1% raise an error
    (a sign the image is still normalised); smaller overshoots are clipped.

    Example:
        >>> image_to_uint8(torch.ones(3, 2, 2))[0, 0]
        array([255, 255, 255], dtype=uint8)
    """
    if isinstance(t, torch.Tensor) and t.dtype == torch.uint8:
        return np.ascontiguousarray(_channels_last(t.detach().cpu().numpy(), "t"))
    if isinstance(t, np.ndarray) and t.dtype == np.uint8:
        return np.ascontiguousarray(_channels_last(t, "t"))
    if not max_value > 0:
        raise ValueError(f"max_value must be positive (1.0 or 255), got {max_value}")
    values = _channels_last(_as_float_array(t, "t"), "t")
    low, high = float(values.min()), float(values.max())
    tolerance = 0.01 * max_value
    if not (low >= -tolerance and high <= max_value + tolerance):  # also rejects NaN
        raise ValueError(
            f"image values span {low:.4g}..{high:.4g}, outside 0..{max_value:g}; "
            "denormalize the image first, or pass max_value=255 for 0..255 images"
        )
    return np.rint(np.clip(values / max_value, 0.0, 1.0) * 255).astype(np.uint8)


# ------------------------------------------------------------------- cropping


def _overlap(start: int, length: int, size: int) -> tuple[slice, slice]:
    """Source and destination slices of the part of [start, start+length) inside [0, size)."""
    low, high = max(start, 0), min(start + length, size)
    if high <= low:  # the crop misses the array entirely along this axis
        return slice(0, 0), slice(0, 0)
    return slice(low, high), slice(low - start, high - start)


def _check_fill(fill: float, is_integer_dtype: bool, low: float, high: float) -> None:
    """An integer array can only be padded with an integer that fits its dtype."""
    if is_integer_dtype and not (float(fill).is_integer() and low <= fill <= high):
        raise ValueError(f"fill={fill!r} does not fit the array's integer dtype (range {low}..{high})")


def _crop_numpy(x: np.ndarray, box: Box, fill: float) -> np.ndarray:
    top, left, height, width = box
    if x.ndim not in (2, 3):
        raise ValueError(f"numpy arrays must be (H, W) or (H, W, C), not {x.shape}")
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"array shaped {x.shape} looks channels-first; numpy arrays must be (H, W, C) "
            "(use np.moveaxis(x, 0, -1)), or pass a torch tensor for (C, H, W)"
        )
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        _check_fill(fill, True, info.min, info.max)
    out = np.full((height, width, *x.shape[2:]), fill, dtype=x.dtype)
    src_rows, dst_rows = _overlap(top, height, x.shape[0])
    src_cols, dst_cols = _overlap(left, width, x.shape[1])
    out[dst_rows, dst_cols] = x[src_rows, src_cols]
    return out


def _crop_torch(x: torch.Tensor, box: Box, fill: float) -> torch.Tensor:
    top, left, height, width = box
    if x.ndim < 2:
        raise ValueError(f"tensors must be (..., H, W), e.g. (C, H, W), not {tuple(x.shape)}")
    if not (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool):
        info = torch.iinfo(x.dtype)
        _check_fill(fill, True, info.min, info.max)
    out = torch.full((*x.shape[:-2], height, width), fill, dtype=x.dtype, device=x.device)
    src_rows, dst_rows = _overlap(top, height, x.shape[-2])
    src_cols, dst_cols = _overlap(left, width, x.shape[-1])
    out[..., dst_rows, dst_cols] = x[..., src_rows, src_cols]
    return out


def crop_with_padding(x: ArrayOrTensor, box: Sequence[int], fill: float = 0) -> ArrayOrTensor:
    """Crop ``box`` = (top, left, height, width), padding with ``fill`` where it leaves ``x``.

    The result is always ``height x width``, so the crops of one layer's
    receptive fields stack even at the image border.  Layouts:

    * numpy arrays are channels-last: (H, W) or (H, W, C) -> (height, width[, C]);
    * torch tensors are channels-first: (..., H, W), e.g. (C, H, W) -> (C, height, width).

    The result has the type, dtype (and device) of ``x`` and is a copy.

    Example:
        >>> crop_with_padding(np.ones((4, 4), np.uint8), (-1, -1, 2, 2))
        array([[0, 0],
               [0, 1]], dtype=uint8)
    """
    checked = check_box(box)
    if isinstance(x, torch.Tensor):
        return _crop_torch(x, checked, fill)
    if isinstance(x, np.ndarray):
        return _crop_numpy(x, checked, fill)
    raise TypeError(f"x must be a numpy array (H, W, C) or a torch tensor (C, H, W), not {type(x).__name__}")


# -------------------------------------------------------------------- layouts


def grid(
    images: Sequence[UInt8Image],
    *,
    ncols: int | None = None,
    pad: int = 2,
    pad_value: int = 255,
) -> UInt8Image:
    """Tile same-sized (H, W, 3) uint8 images row by row into one picture.

    ``ncols`` defaults to ceil(sqrt(n)), the nearest square-ish layout (5 images
    -> 3 columns x 2 rows).  ``pad`` pixels of ``pad_value`` separate the cells
    (there is no outer border); empty cells are filled with ``pad_value``.

    Example:
        >>> grid([np.zeros((2, 2, 3), np.uint8)] * 5, pad=1).shape
        (5, 8, 3)
    """
    cells = _check_same_size_rgb(images, "images")
    pad = check_integer(pad, "pad", minimum=0)
    pad_value = _check_level(pad_value, "pad_value")
    ncols = math.ceil(math.sqrt(len(cells))) if ncols is None else check_integer(ncols, "ncols", minimum=1)
    nrows = math.ceil(len(cells) / ncols)
    height, width, channels = cells[0].shape
    out = np.full(
        (nrows * height + (nrows - 1) * pad, ncols * width + (ncols - 1) * pad, channels),
        pad_value,
        dtype=np.uint8,
    )
    for index, cell in enumerate(cells):
        row, col = divmod(index, ncols)
        top, left = row * (height + pad), col * (width + pad)
        out[top : top + height, left : left + width] = cell
    return out


def _upscale_nearest(image: UInt8Image, factor: int) -> UInt8Image:
    """Blow each pixel up to a factor x factor block (nearest neighbour)."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _upscale_factor(shape: tuple[int, ...], min_cell: int) -> int:
    """Smallest integer factor that makes the longer side at least ``min_cell``."""
    # An integer factor keeps every source pixel a crisp square.
    return max(1, math.ceil(min_cell / max(shape[0], shape[1])))


def _upscaled_grid(
    images: Sequence[UInt8Image], name: str, ncols: int | None, pad: int, min_cell: int, pad_value: int
) -> UInt8Image:
    cells = _check_same_size_rgb(images, name)
    factor = _upscale_factor(cells[0].shape, min_cell)
    return grid([_upscale_nearest(c, factor) for c in cells], ncols=ncols, pad=pad, pad_value=pad_value)


def _pad_to(image: UInt8Image, height: int, width: int, value: int) -> UInt8Image:
    """Extend ``image`` at the bottom and right to height x width."""
    out = np.full((height, width, image.shape[2]), value, dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def _side_by_side(left: UInt8Image, right: UInt8Image, gap: int, value: int) -> UInt8Image:
    """Join two pictures horizontally, top-aligned, with a ``gap``-pixel column between."""
    height = max(left.shape[0], right.shape[0])
    spacer = np.full((height, gap, 3), value, dtype=np.uint8)
    return np.concatenate(
        [_pad_to(left, height, left.shape[1], value), spacer, _pad_to(right, height, right.shape[1], value)],
        axis=1,
    )


def channel_sheet(
    projections: Sequence[UInt8Image],
    patches: Sequence[UInt8Image],
    *,
    pad: int = 2,
    min_cell: int = 64,
    gap: int = 8,
    ncols: int | None = None,
    pad_value: int = 255,
) -> UInt8Image:
    """One channel's top activations: a grid of projections beside a grid of image patches.

    This is the layout of Zeiler & Fergus Fig. 2 (k=9 gives 3x3 beside 3x3).
    ``projections[i]`` belongs to ``patches[i]``.  Crops whose longer side is
    below ``min_cell`` pixels (e.g. 7x7 at conv1) are enlarged by an integer
    nearest-neighbour factor so they stay visible; ``gap`` pixels separate
    the two grids.

    Example:
        >>> crops = [np.zeros((7, 7, 3), np.uint8)] * 9
        >>> channel_sheet(crops, crops).shape      # 7 px -> 70 px cells
        (214, 436, 3)
    """
    if len(projections) != len(patches):
        raise ValueError(
            f"got {len(projections)} projections but {len(patches)} patches; "
            "pass one projection per patch, in the same order"
        )
    pad = check_integer(pad, "pad", minimum=0)
    gap = check_integer(gap, "gap", minimum=0)
    min_cell = check_integer(min_cell, "min_cell", minimum=0)
    pad_value = _check_level(pad_value, "pad_value")
    left = _upscaled_grid(projections, "projections", ncols, pad, min_cell, pad_value)
    right = _upscaled_grid(patches, "patches", ncols, pad, min_cell, pad_value)
    return _side_by_side(left, right, gap, pad_value)


def _label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _label_strip(
    text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, background: int
) -> UInt8Image:
    """A band ``width`` pixels wide holding ``text``, to sit above a sheet."""
    # Measuring a tall and a descending letter gives every strip the same height.
    height = int(font.getbbox("Ag")[3]) + 4
    strip = Image.new("RGB", (width, height), (background,) * 3)
    ink = 0 if background >= 128 else 255  # dark text on light padding and vice versa
    ImageDraw.Draw(strip).text((2, 2), text, fill=(ink,) * 3, font=font)
    return np.asarray(strip, dtype=np.uint8)


def mosaic(
    sheets: Sequence[UInt8Image],
    labels: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    pad: int = 8,
    pad_value: int = 255,
) -> UInt8Image:
    """Many channel sheets on one picture, each with its label (e.g. "ch 12") above it.

    Sheets of different sizes are padded (bottom/right) to the largest one.
    Labels use PIL's default font and are cut off at the sheet's width.
    ``ncols`` defaults to ceil(sqrt(len(sheets))).

    Example:
        >>> sheets = [np.zeros((50, 100, 3), np.uint8)] * 4
        >>> mosaic(sheets, ["ch 0", "ch 1", "ch 2", "ch 3"]).shape[1]
        208
    """
    checked = [check_rgb(sheet, f"sheets[{i}]") for i, sheet in enumerate(sheets)]
    if not checked:
        raise ValueError("sheets is empty; pass at least one channel sheet")
    if labels is not None and len(labels) != len(checked):
        raise ValueError(f"got {len(checked)} sheets but {len(labels)} labels; pass one label per sheet or None")
    pad_value = _check_level(pad_value, "pad_value")
    height = max(sheet.shape[0] for sheet in checked)
    width = max(sheet.shape[1] for sheet in checked)
    cells = [_pad_to(sheet, height, width, pad_value) for sheet in checked]
    if labels is not None:
        font = _label_font()
        cells = [
            np.concatenate([_label_strip(str(label), width, font, pad_value), cell], axis=0)
            for label, cell in zip(labels, cells)
        ]
    return grid(cells, ncols=ncols, pad=pad, pad_value=pad_value)


# ---------------------------------------------------------------- boxes


def clip_box(box: Box, height: int, width: int) -> Box | None:
    """The part of ``box`` inside a height x width image, or None if there is none."""
    top, left, box_height, box_width = box
    low_row, high_row = max(top, 0), min(top + box_height, height)
    low_col, high_col = max(left, 0), min(left + box_width, width)
    if high_row <= low_row or high_col <= low_col:
        return None
    return low_row, low_col, high_row - low_row, high_col - low_col


def projection_for_box(projection: UInt8Image, image: UInt8Image, patch: UInt8Image, box: Box) -> UInt8Image:
    """Accept a projection already cropped like ``patch``, or a full one to crop here."""
    if projection.shape == patch.shape:
        return projection
    if projection.shape == image.shape:
        # Pad with grey: outside the image the projection is zero.
        return np.asarray(crop_with_padding(projection, box, fill=GREY), dtype=np.uint8)
    raise ValueError(
        f"projection is {projection.shape[:2]} but the patch is {patch.shape[:2]} and the image "
        f"{image.shape[:2]}; pass the projection cropped like the patch or at full image size"
    )



# ------------------------------------------------------ projections in notebooks


def projection_pictures(projection: Projection, transform: Any, percentile: float | None,
                         index: int | None) -> list[UInt8Image]:
    maps = projection.maps if index is None else projection.maps[index:index + 1]  # (B, C, H, W)
    if transform is not None:
        maps = transform.as_rgb(maps)
    return [to_display(one, percentile=percentile) for one in maps]


def projection_image(
    projection: Projection,
    index: int | None = None,
    *,
    transform: Any = None,
    percentile: float | None = 99.5,
) -> Image.Image:
    """A projection's maps as a PIL image (zero at mid-grey): ``maps[index]``, or all side by side.

    ``transform`` is the model's (from ``load_model``): with it a BGR model's maps show
    in the photo's colours. ``Projection.to_image`` calls this.

    Example:
        >>> from deconvnet.engine import Projection, Unit
        >>> p = Projection(torch.randn(2, 3, 8, 8), [Unit(0, 1, (0, 0), 1.0), Unit(0, 2, (0, 0), 1.0)], None)
        >>> projection_image(p).size, projection_image(p, 1).size
        ((18, 8), (8, 8))
    """
    pictures = projection_pictures(projection, transform, percentile, index)
    return Image.fromarray(grid(pictures, ncols=len(pictures)))

