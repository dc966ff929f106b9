"""The grammar every ``deconv`` command shares: how channels, layers, modes, numbers, devices and
outputs are written, and the one-line error for each bad form.

Only argparse and the standard library are imported here, so ``deconv --help`` and a usage
mistake never wait for torch. Each value is parsed once, here, and reaches the API as a
keyword; what needs the model (is channel 99 in range? is conv9 a layer?) the API checks.

Example:
    >>> parser = Parser(prog="deconv demo")
    >>> add_layer_option(parser, many=True)
    >>> add_channel_option(parser)
    >>> args = parser.parse_args(["--layer", "conv4_3,conv5_3", "--channel", "0-2,40"])
    >>> args.layer, args.channel.items
    (['conv4_3', 'conv5_3'], (0, 1, 2, 40))
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..channels import ChannelSelection, ClassChannels, Strongest
from ..errors import EXIT_USAGE, DeconvError

# The API's own defaults (deconvnet.models.DEFAULT_MODEL, the modes of deconvnet.engine.relu.MODES),
# repeated so that parsing imports no torch; tests/test_startup.py checks that they agree.
DEFAULT_MODEL = "vgg16-hed"
MODES = ("deconvnet", "guided", "backprop")

CHANNEL_FORMS = "12, 12,40,7, 0-15,40, all, a class name (tabby) or top8"


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line (no usage dump) with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"deconv: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, rest = super().parse_known_args(args, namespace)
        vars(parsed).pop(_GIVEN, None)  # ListOption's bookkeeping is not a result
        return parsed, rest

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, rest = self.parse_known_args(args, namespace)
        if rest:  # named by the command's parser, so the hint points at that command's --help
            commands = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = commands[0].choices.get(getattr(parsed, commands[0].dest, None)) if commands else None
            (chosen or self).error(f"unrecognized arguments: {' '.join(rest)}")
        return parsed


def add_command(commands, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A command's sub-parser: ``summary`` is its line in ``deconv --help``, ``details`` follow in its own help."""
    return commands.add_parser(name, description=f"{summary[0].upper()}{summary[1:]}. {details}".strip())


def details(docstring: str | None) -> str:
    """A command module's docstring after its first paragraph, as the command's description."""
    _, _, rest = (docstring or "").partition("\n\n")
    return " ".join(rest.split())


# ---------------------------------------------------------------- channels

@dataclass(frozen=True)
class Channels:
    """What ``--channel`` asked for: every channel, the ``top`` strongest, or a list.

    ``items`` holds channel indices (ranges expanded, in the order written) and class names;
    ``text`` is what the user wrote, for the APIs that take a channel spec as text.

    >>> parse_channels("0-2,40")
    Channels(text='0-2,40', items=(0, 1, 2, 40), top=None, all=False)
    >>> parse_channels("top8").top, parse_channels("all").all, parse_channels("tabby").items
    (8, True, ('tabby',))
    """

    text: str
    items: tuple[int | str, ...] = ()
    top: int | None = None
    all: bool = False

    @property
    def single(self) -> int | str:
        """The one channel of a one-item list."""
        (item,) = self.items
        return item


def parse_channels(text: str) -> Channels:
    """``12``, ``12,40,7``, ``0-15,40``, ``all``, a class name or ``top8`` (see :class:`Channels`).

    A negative number is kept (the API names the valid range); a range runs upwards.
    """
    spec = text.strip()
    if spec.lower() == "all":
        return Channels(spec, all=True)
    top = re.fullmatch(r"top(\d+)", spec.lower())
    if top:
        if int(top[1]) < 1:
            raise argparse.ArgumentTypeError(f"{spec!r} ranks no channel: write top1 or more")
        return Channels(spec, top=int(top[1]))
    items: list[int | str] = []
    for part in (part.strip() for part in spec.split(",")):
        if not part or part.lower() == "all" or re.fullmatch(r"top\d+", part.lower()):
            what = "an empty item" if not part else f"{part!r} among other channels"
            raise argparse.ArgumentTypeError(
                f"cannot read channel spec {text!r}: {what}; expected a channel or a list such as "
                f"{CHANNEL_FORMS}")
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if span:
            low, high = int(span[1]), int(span[2])
            if high < low:  # the wording of deconvnet.tasks.top9's own check
                raise argparse.ArgumentTypeError(f"channel range {part!r} runs backwards: write it as '{high}-{low}'")
            items.extend(range(low, high + 1))
        elif re.fullmatch(r"-?\d+", part):
            items.append(int(part))
        elif re.match(r"-?\d", part):  # begun as a number or range, not finished as one: not a name
            raise argparse.ArgumentTypeError(
                f"cannot read channel spec {text!r}: {part!r} is neither a channel nor a range; expected "
                f"a channel or a list such as {CHANNEL_FORMS}")
        else:
            items.append(part)  # a class name, resolved against the model's categories by the API
    return Channels(spec, tuple(dict.fromkeys(items)))


DATASET_CHANNELS: dict[str, Any] = {"top": False, "names": False, "hint": (
    "; over an image set give channel numbers such as 0-15,40 or all (topN and class names pick channels "
    "on one image: deconv visualize; deconv layers gives each layer's channel count)")}


def api_channels(channels: Channels) -> ChannelSelection:
    """``--channel`` as the API takes it (:mod:`deconvnet.channels`): "all", ``Strongest(n)``, the
    channel numbers, or ``ClassChannels`` when class names are among them.

    >>> api_channels(parse_channels("0-2")), api_channels(parse_channels("top8"))
    ([0, 1, 2], Strongest(k=8))
    """
    if channels.all:
        return "all"
    if channels.top is not None:
        return Strongest(channels.top)
    if any(isinstance(item, str) for item in channels.items):
        return ClassChannels(*channels.items)
    return [int(item) for item in channels.items]


def channel_type(command: str, *, many: bool = True, names: bool = True, top: bool | int = True,
                 all: bool = True, hint: str = "") -> Callable[[str], Channels]:
    """The ``--channel`` type of one command: the grammar, minus the forms the command cannot do.

    ``many``: a list is allowed; ``names``: class names; ``top``: ``topN`` for any N (True), up to
    this N, or not at all (False); ``all``: every channel. By default every form passes: an API
    that takes the spec as text checks it against the layer. ``hint`` ends a refusal.
    """
    def parse(text: str) -> Channels:
        channels = parse_channels(text)
        refused = None
        if channels.all and not all:
            refused = f"{command} cannot take every channel: give a list (0-15) or the strongest (top8)"
        elif channels.top is not None and (top is False or top is not True and channels.top > top):
            refused = (f"{command} does not rank channels" + ("" if hint else ": give a channel") if top is False
                       else f"{command} ranks at most top{top}, received {text!r}")
        elif len(channels.items) > 1 and not many:
            refused = f"{command} takes one channel, received {len(channels.items)} ({text})"
        elif not names and any(isinstance(item, str) for item in channels.items):
            name = next(item for item in channels.items if isinstance(item, str))
            refused = f"{command} takes channel numbers, not a name such as {name!r}"
        if refused:
            raise argparse.ArgumentTypeError(refused + hint)
        return channels

    parse.__name__ = "channel"  # argparse names the type in some messages
    return parse


def add_channel_option(parser: argparse.ArgumentParser, *, default: str | None = None, required: bool = False,
                       help: str = "", **allowed: Any) -> None:
    """``--channel`` (alias ``--channels``) with the grammar; ``allowed`` as :func:`channel_type`."""
    kind = channel_type(parser.prog.split()[-1], **allowed)
    parser.add_argument("--channel", "--channels", dest="channel", type=kind,
                        default=None if default is None else kind(default), required=required, metavar="CHANNELS",
                        help=help or f"{CHANNEL_FORMS}" + (f" (default {default})" if default else ""))


# ---------------------------------------------------------------- layers and modes

_GIVEN = "_options_given"  # the dests a ListOption has filled in this parse


class ListOption(argparse.Action):
    """A repeatable, comma-separated option (``--layer a,b --layer c``); ``single=True`` allows one item.

    Without ``single`` the value is the list (each item once, in order); with it, the one item.
    """

    def __init__(self, *args: Any, single: bool = False, item: Callable[[str], str] = str.strip,
                 noun: str = "item", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.single, self.item, self.noun = single, item, noun

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            items = split_list(values, self.noun, self.item)
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentError(self, str(error)) from None
        given = vars(namespace).setdefault(_GIVEN, set())
        before = getattr(namespace, self.dest) if self.dest in given else None
        if self.single:
            if before is not None or len(items) > 1:
                everything = [before, *items] if before is not None else items
                raise argparse.ArgumentError(self, f"{parser.prog.split()[-1]} takes one {self.noun}, received "
                                                   f"{len(everything)} ({', '.join(everything)})")
            setattr(namespace, self.dest, items[0])
        else:
            setattr(namespace, self.dest, list(dict.fromkeys([*(before or []), *items])))
        given.add(self.dest)


def split_list(text: str, noun: str, item: Callable[[str], str] = str.strip) -> list[str]:
    """``'a, b'`` -> ``['a', 'b']``; an empty item is refused in one line."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        example = "deconvnet,guided" if noun == "mode" else "conv4_3,conv5_3"
        raise argparse.ArgumentTypeError(f"empty {noun} in {text!r}: write one {noun} or a list such as {example}")
    return [item(part) for part in parts]


def check_mode(text: str) -> str:
    """One mode name; the wording of deconvnet.engine.relu's own check."""
    if text not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}: expected one of {', '.join(MODES)}")
    return text


def add_layer_option(parser: argparse.ArgumentParser, *, many: bool, required: bool = False,
                     default: Any = None, help: str = "") -> None:
    """``--layer`` (alias ``--layers``): one layer, or (``many``) repeatable and comma-separated."""
    parser.add_argument("--layer", "--layers", dest="layer", action=ListOption, single=not many, noun="layer",
                        required=required, default=default, metavar="LAYER" + (",..." if many else ""),
                        help=help or ("layers, comma-separated or repeated: conv4_3,conv5_3 (see deconv layers)"
                                      if many else "layer name or alias (see deconv layers)"))


def add_mode_option(parser: argparse.ArgumentParser, *, many: bool, default: Any, help: str = "") -> None:
    """``--mode`` (alias ``--modes``): one rule, or (``many``) a list such as deconvnet,guided,backprop."""
    parser.add_argument("--mode", "--modes", dest="mode", action=ListOption, single=not many, item=check_mode,
                        noun="mode", default=default, metavar="MODE" + (",..." if many else ""),
                        help=help or (f"one of {', '.join(MODES)}, or a list: deconvnet,guided" if many
                                      else f"one of {', '.join(MODES)} (default {default})"))


# ---------------------------------------------------------------- numbers, devices, models

def whole_number(minimum: int, option: str) -> Callable[[str], int]:
    """An integer >= ``minimum``, refused in one line naming the option."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"{option} must be a whole number of at least {minimum}, "
                                             f"received {text!r}")
        return int(text)

    parse.__name__ = "number"
    return parse


def image_limit(text: str) -> int | None:
    """``--limit``: the first N images (N >= 1), or ``all``."""
    if text.strip().lower() == "all":
        return None
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--limit must be a whole number of at least 1, or all, received {text!r}")
    return int(text)


def percentile(text: str) -> float | None:
    """``--percentile`` in (0, 100]; 100 means no clipping (None). The wording of the API's own check."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 100:  # also NaN
        raise argparse.ArgumentTypeError(f"percentile must be in (0, 100], e.g. 99.5 (100 or None: no clipping); "
                                         f"received {text if value != value else value}")
    return None if value == 100 else value


def device(text: str) -> str:
    """cpu, cuda or cuda:N; the wording of deconvnet.dataset.distributed.pick_device."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: expected 'cpu' or 'cuda' (or 'cuda:N')")
    return text


def position(text: str) -> tuple[int, int]:
    """``Y,X`` in a layer's map."""
    try:
        y, x = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X (two integers), received {text!r}") from None
    return y, x


def class_name_or_index(text: str) -> int | str:
    """An index, or a class name for a classifier's output layer."""
    return int(text) if re.fullmatch(r"\s*-?\d+\s*", text) else text


def add_model_options(parser: argparse.ArgumentParser, *, weights: str = "") -> None:
    """``--model`` and ``--weights``, the same in every command (the API checks the name and the file)."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name (default {DEFAULT_MODEL}; see deconv models)")
    parser.add_argument("--weights", help=weights or "a local state dict (.safetensors or .pt), or 'random'")


def add_dataset_options(parser: argparse.ArgumentParser, *, batch_size: int, workers: int | None = 2,
                        limit: int | None = None, takes_device: bool = True) -> None:
    """``--batch-size``, ``--workers``, ``--limit`` and ``--device`` of a command that runs over images.

    ``workers=None`` or ``takes_device=False`` leaves that option out, for a command that does not take it.
    """
    add_batch_size_option(parser, default=batch_size)
    defaults: dict[str, Any] = {"batch_size": batch_size, "limit": limit}
    if workers is not None:
        parser.add_argument("--workers", type=whole_number(0, "--workers"), default=workers,
                            help=f"image-decoding processes (default {workers}; 0: in this process)")
        defaults["workers"] = workers
    parser.add_argument("--limit", type=image_limit, default=limit, metavar="N",
                        help=f"use only the first N images, or all (default {limit or 'all'})")
    if takes_device:
        parser.add_argument("--device", type=device, default="cpu", help="cpu (default), cuda or cuda:N")
        defaults["device"] = "cpu"
    parser.set_defaults(**{_DATASET_DEFAULTS: defaults})


def add_batch_size_option(parser: argparse.ArgumentParser, *, default: int,
                          help: str = "images per forward pass") -> None:
    """``--batch-size``: a whole number from 1, the same option in every command that batches."""
    parser.add_argument("--batch-size", type=whole_number(1, "--batch-size"), default=default,
                        help=f"{help} (default {default})")


def add_k_option(parser: argparse.ArgumentParser, *, per: str, default: int = 9) -> None:
    """``--k``: how many images to keep per channel or unit (a whole number from 1)."""
    parser.add_argument("--k", type=whole_number(1, "--k"), default=default,
                        help=f"images per {per} (default {default})")


_DATASET_DEFAULTS = "_dataset_defaults"
DATASET_OPTIONS = {"device": "--device", "batch_size": "--batch-size", "workers": "--workers", "limit": "--limit"}


def dataset_keywords(api: Callable, args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The dataset options the command declares (``--device``, ``--batch-size``, ...) as ``api``'s keywords.

    An option the API does not take (yet) is left out at its default and refused in one line
    when given, rather than failing with a TypeError.
    """
    taken = inspect.signature(api).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken.values())
    defaults = getattr(args, _DATASET_DEFAULTS)
    keywords = {}
    for keyword, default in defaults.items():
        if keyword in taken or takes_any:
            keywords[keyword] = getattr(args, keyword)
        elif getattr(args, keyword) != default:
            raise DeconvError(f"{command} does not take {DATASET_OPTIONS[keyword]} yet; leave it out")
    return keywords


# ---------------------------------------------------------------- images

IMAGES_HELP = ("image files, folders (searched recursively) or list files (.txt/.tsv: one path per line, "
               "relative to the list's folder)")


def add_images_argument(parser: argparse.ArgumentParser, *, optional: bool = False, help: str = "") -> None:
    """The positional IMAGES of every image-taking command: one or more files, folders or list files.

    The API reads them with ``deconvnet.dataset.imageset.expand`` (one rule for list files).
    """
    parser.add_argument("images", nargs="*" if optional else "+", metavar="IMAGES",
                        help=f"{help}{': ' if help else ''}{IMAGES_HELP}")


# ---------------------------------------------------------------- output

def add_output_option(parser: argparse.ArgumentParser, *, folder: bool, required: bool = False,
                      default: str | None = None, help: str = "") -> None:
    """``-o``: a folder (created with its parents if missing) or a figure file (its folder likewise)."""
    kind = ("output folder (created with missing parents)" if folder
            else "figure file, or a folder for the default name (missing folders are created)")
    parser.add_argument("-o", "--output", required=required, default=default, metavar="FOLDER" if folder else "FILE",
                        help=f"{kind}{'; ' + help if help else ''}")


def figure_output(output: str | None, default_name: str) -> Path:
    """Where a figure goes: ``-o``, or ``default_name`` in the folder ``-o`` names (or here).

    A folder is an existing directory or a path ending in a separator (``-o figures/``).

    >>> figure_output("figures/", "cat_conv5_3_c12.png").as_posix(), figure_output("a.png", "b.png").name
    ('figures/cat_conv5_3_c12.png', 'a.png')
    """
    if output is None:
        return Path(default_name)
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / default_name
    return Path(output)


def safe_name(name: object) -> str:
    """A layer or class name as part of a default file name ('layer1.0.relu:2' -> 'layer1.0.relu_2')."""
    return re.sub(r"[^\w.-]+", "_", str(name))


# ---------------------------------------------------------------- reporting

def report_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """List the files a run skipped (the first 20), each with its reason."""
    if skipped:
        print(f"skipped {len(skipped)} files (unreadable or not images):")
        for path, reason in skipped[:20]:
            print(f"  {reason}" if path in reason else f"  {path}: {reason}")


def count(number: int, noun: str) -> str:
    """'1 image', '3 images'."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
