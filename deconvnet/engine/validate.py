"""The one check of what a user asks the deconvnet for: the input, a unit, a channel, a position."""

from __future__ import annotations

import numbers
import operator
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DeconvError


def check_input(x: Any, model: nn.Module) -> None:
    """A TypeError or DeconvError unless ``x`` is a finite float (N, C, H, W) batch for ``model`` in eval mode."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (N, C, H, W), received {type(x).__name__}")
    if x.dim() != 4:
        raise DeconvError(f"expected an input of shape (N, C, H, W), received shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DeconvError(f"expected a floating-point input, received {x.dtype}")
    if not torch.isfinite(x).all():
        nan, infinite = int(x.isnan().sum()), int(x.isinf().sum())
        raise DeconvError(f"expected finite input values, received {nan} NaN and {infinite} infinite value(s) "
                          f"in an input of shape {tuple(x.shape)}; check the preprocessing that made it")
    training = [name for name, module in model.named_modules() if module.training]
    if training:
        which = "the model" if training[0] == "" else f"submodule {training[0]} of the model"
        raise DeconvError(f"{which} is in training mode (dropout and batch statistics would change the result): "
                          "call model.eval() first")


def is_integer(value: Any) -> bool:
    """True for an int, a numpy or a torch integer; False for a bool (True is not a count) and anything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_channel(layer: str, channel: Any, count: int) -> int:
    """``channel`` as an int in 0..count-1, or a DeconvError giving the valid range.

    >>> check_channel("conv1", 3, 64)
    3
    """
    if not is_integer(channel):
        raise DeconvError(f"expected an integer channel, received {channel!r}")
    channel = int(channel)
    if not 0 <= channel < count:
        raise DeconvError(f"channel {channel} is out of range for layer {layer}: it has {count} channels "
                          f"(0..{count - 1})")
    return channel


def check_image(image: Any, batch: int) -> int:
    """``image`` as an index into a batch of ``batch`` images, or a DeconvError giving the batch size.

    >>> check_image(1, 2)
    1
    """
    try:
        index = operator.index(image)
    except TypeError:
        raise DeconvError(f"expected an integer image index, received {image!r}") from None
    if not 0 <= index < batch:
        raise DeconvError(f"image index {image} is out of range: the batch has {batch} images")
    return index


def check_channels(channels: Iterable[Any], count: int, layer: str | None = None) -> list[int]:
    """``channels`` sorted, each once, all in 0..count-1, or a DeconvError giving the valid range.

    >>> check_channels([5, 1, 5], 8)
    [1, 5]
    """
    where = f"layer {layer}" if layer else "the layer"
    chosen = set()
    for channel in channels:
        if not is_integer(channel) or not 0 <= int(channel) < count:
            raise DeconvError(f"channel {channel!r} is out of range: {where} has {count} channels: "
                              f"valid 0-{count - 1}")
        chosen.add(int(channel))
    if not chosen:
        raise DeconvError("expected at least one channel, received an empty list")
    return sorted(chosen)


def check_position(layer: str, position: Any, height: int, width: int) -> tuple[int, int]:
    """``position`` as (y, x) inside a height x width map, or a DeconvError giving the valid range."""
    try:
        y, x = (int(v) for v in position)
    except (TypeError, ValueError):
        raise DeconvError(f"expected a position (y, x) of two integers, received {position!r}") from None
    if not (0 <= y < height and 0 <= x < width):
        raise DeconvError(f"position ({y}, {x}) is outside layer {layer}'s {height}x{width} map: "
                          f"expected 0 <= y < {height} and 0 <= x < {width}")
    return y, x


def check_unit(layer: str, kind: str, shape: torch.Size | tuple, batch: int, image: Any, channel: Any,
               position: Any) -> None:
    """A DeconvError unless (image, channel, position) names a unit of a (C,) or (C, H, W) output.

    >>> check_unit("fc", "Linear", (10,), 1, 0, 3, None)
    >>> check_unit("conv1", "Conv2d", (64, 8, 8), 1, 0, 3, (9, 0))
    Traceback (most recent call last):
    ...
    deconvnet.errors.DeconvError: position (9, 0) is outside layer conv1's 8x8 map: expected 0 <= y < 8 and 0 <= x < 8
    """
    if not isinstance(channel, int) or isinstance(channel, bool):
        raise DeconvError(f"expected an integer channel, received {channel!r}")
    if len(shape) not in (1, 3):
        raise DeconvError(f"expected layer {layer} to output (N, C) or (N, C, H, W), "
                          f"received shape (N, {', '.join(map(str, shape))})")
    check_channel(layer, channel, shape[0])
    check_image(image, batch)
    if len(shape) == 1:
        if position is not None:
            raise DeconvError(f"layer {layer} is one-dimensional ({kind}): give no position")
        return
    if position is not None:
        check_position(layer, position, shape[1], shape[2])


def _integer_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return "" if maximum is None else f" <= {maximum}"


def check_integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None,
                  meaning: str = "") -> int:
    """``value`` as an int in ``minimum..maximum`` (both included), or a DeconvError naming the valid range.

    The one check of a count, size or index argument (batch size, stride, k, top, ...). numpy and
    torch integers are accepted; ``True`` is not a count, so booleans are refused. ``meaning``
    says in the error what the number is ("the occluder's side").

    >>> check_integer(16, "batch_size", minimum=1)
    16
    >>> check_integer(0, "stride", minimum=1)
    Traceback (most recent call last):
    ...
    deconvnet.errors.DeconvError: stride must be an integer >= 1, received 0
    """
    what = f"{name} ({meaning})" if meaning else name
    expected = f"{what} must be an integer{_integer_range(minimum, maximum)}"
    if not is_integer(value):
        raise DeconvError(f"{expected}, received {value!r}")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise DeconvError(f"{expected}, received {number}")
    return number


def check_percentile(percentile: Any) -> float | None:
    """``percentile`` as a float in (0, 100], None kept (no clipping), or a DeconvError giving the range.

    >>> check_percentile(99.5)
    99.5
    """
    if percentile is None:
        return None
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real):
        raise DeconvError(f"percentile must be a number such as 99.5, received {percentile!r}")
    value = float(percentile)
    if not 0 < value <= 100:  # also refuses NaN
        raise DeconvError(f"percentile must be in (0, 100], e.g. 99.5 (100 or None: no clipping); "
                          f"received {percentile}")
    return value
