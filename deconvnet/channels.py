"""The one channel type of the Python API: which channels of a layer a task works on.

Every task that takes channels (top9, microscope, evolution, featurevis, the explorer) takes
a :data:`ChannelSelection`:

- a sequence of channel numbers (``[12]``, ``[0, 3, 40]``, ``range(16)``; numpy and torch
  integers too),
- ``"all"``, every channel of the layer,
- :class:`ClassChannels`, class names resolved against the model's labels (a classifier's
  output layer),
- :class:`Strongest`, the k channels that fire most on one image (only where there is one
  image: ``deconv visualize``; a task over an image set refuses it).

Never a channel spec as text (``"0-15,40"``: the CLI parses that once, in
:mod:`deconvnet.cli.grammar`) and never a bare int: ``5`` could mean channel 5 or the first
five, so it is refused with a TypeError that says to pass ``[5]`` or ``range(5)``.
:func:`select_channels` checks a selection against a layer's channel count.

>>> select_channels(range(3), 8, "conv1")
[0, 1, 2]
>>> select_channels([9], 8, "conv1")
Traceback (most recent call last):
...
deconvnet.errors.DeconvError: channel 9 is out of range: layer conv1 has 8 channels: valid 0-7
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from .errors import DeconvError


@dataclass(frozen=True)
class Strongest:
    """The ``k`` channels with the strongest activation on one image, strongest first.

    >>> Strongest(8)
    Strongest(k=8)
    """

    k: int

    def __post_init__(self) -> None:
        if not isinstance(self.k, numbers.Integral) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"Strongest(k) ranks k >= 1 channels, received k={self.k!r}")


@dataclass(frozen=True)
class ClassChannels:
    """Channels named by class ("tabby"), resolved against the model's labels at its output layer.

    An int among the names is a class index, kept as it is (``ClassChannels("tabby", 285)``).

    >>> ClassChannels("tabby", "lynx").names
    ('tabby', 'lynx')
    """

    names: tuple[str | int, ...]

    def __init__(self, *names: str | int) -> None:
        if not names or not all(isinstance(name, str) and name.strip() or _is_integer(name) for name in names):
            raise ValueError(f"ClassChannels takes one or more class names such as 'tabby', received {names!r}")
        object.__setattr__(self, "names", tuple(names))


ChannelSelection = Union[Sequence[int], Literal["all"], Strongest, ClassChannels]


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def channel_numbers(channels: Any) -> list[int] | Literal["all"] | Strongest | ClassChannels:
    """A selection with its type checked, before any layer is known: the numbers as a list of ints.

    A bare int, a channel spec as text and anything else that is not a selection raise a
    TypeError saying what to pass; a negative number a DeconvError.

    >>> channel_numbers(range(2)), channel_numbers("all")
    ([0, 1], 'all')
    """
    if isinstance(channels, (Strongest, ClassChannels)):
        return channels
    if isinstance(channels, str):
        if channels == "all":
            return "all"
        raise TypeError(f"channels={channels!r}: pass a list of channel numbers ([12], range(16)), 'all', "
                        "ClassChannels('tabby') or Strongest(8); a spec such as '0-15,40' is the CLI's text")
    if _is_integer(channels) or getattr(channels, "ndim", None) == 0:
        raise TypeError(f"channels={channels!r}: pass [{int(channels)}] for that channel or range({int(channels)}) "
                        f"for the first {int(channels)}")
    try:
        items = list(channels)
    except TypeError:
        raise TypeError(f"channels={channels!r}: expected a list of channel numbers, 'all', ClassChannels or "
                        "Strongest") from None
    bad = [item for item in items if not _is_integer(item)]
    if bad:
        raise TypeError(f"channel {bad[0]!r} is not a channel number: pass ints ([0, 3]) or ClassChannels('tabby') "
                        "for class names")
    if not items:
        raise DeconvError("expected at least one channel, received an empty list")
    negative = [int(item) for item in items if item < 0]
    if negative:
        raise DeconvError(f"channel {negative[0]} is negative: channels count from 0")
    return [int(item) for item in items]


def describe_count(count: int, layer: str | None) -> str:
    """'layer conv5_3 has 512 channels: valid 0-511', the wording of engine.validate.check_channels."""
    return f"{'layer ' + layer if layer else 'the layer'} has {count} channels: valid 0-{count - 1}"


def select_channels(channels: Any, count: int, layer: str | None = None, *,
                    categories: Sequence[str] | None = None, model: str = "the model",
                    ordered: bool = False) -> list[int]:
    """The channel numbers a selection picks in a layer of ``count`` channels, sorted, each once
    (``ordered=True``: as given, repeats kept, for a task whose output follows the list).

    ``categories`` (the model's labels) resolve :class:`ClassChannels`; :class:`Strongest`
    depends on one image and is refused here (rank with ``deconvnet.visualize``). An
    out-of-range channel raises a DeconvError naming the layer's count and valid range.

    >>> select_channels("all", 3), select_channels([2, 0, 2], 3)
    ([0, 1, 2], [0, 2])
    >>> select_channels(ClassChannels("lynx"), 3, categories=["tiger", "tabby", "lynx"])
    [2]
    """
    chosen = channel_numbers(channels)
    if chosen == "all":
        return list(range(count))
    if isinstance(chosen, Strongest):
        raise DeconvError(f"Strongest({chosen.k}) ranks channels on one image (deconvnet.visualize); over an image "
                          f"set give channel numbers: {describe_count(count, layer)}")
    if isinstance(chosen, ClassChannels):
        from .models import class_index  # the labels' rule (case, ambiguity, close matches)

        chosen = [int(class_index(name, categories, model)) for name in chosen.names]
    from .engine.validate import check_channels  # the one range check; loaded here so the CLI's parsing needs no torch

    checked = check_channels(sorted(set(chosen), reverse=True), count, layer)  # type: ignore[arg-type]
    return list(chosen) if ordered else checked  # type: ignore[arg-type]


__all__ = ["ChannelSelection", "ClassChannels", "Strongest", "channel_numbers", "describe_count", "select_channels"]
