"""The image set of a dataset command: folders, list files or images, named relative to a root.

One expander turns "files, folders or list files" into image paths for the whole package:
a folder gives the image files below it (recursively, sorted), a text file gives the paths
on its lines (relative to its folder; blank lines and '#' comments skipped; what follows a TAB
on a line is the image's label, which ``deconv invariance`` reads as its class), and any other
file is an image of its own. A file is read as a list only when it is text: a JPEG passed
where a folder was expected is one image, never a list of garbled lines.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DeconvError
from ..models.transforms import ImageTransform
from .images import IMAGE_SUFFIXES, UnreadableImage, open_image

LIST_SUFFIXES = (".txt", ".tsv", ".lst", ".list", ".csv")
_SNIFF_BYTES = 8192


def is_list_file(path: Path) -> bool:
    """Whether ``path`` is a text file of paths: never an image suffix, never a file with binary bytes.

    >>> is_list_file(Path("photo.jpg"))
    False
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the sniffed length is still text.
        return error.start >= len(head) - 3 and len(head) == _SNIFF_BYTES
    return True


def read_entries(path: Path) -> list[tuple[Path, str | None]]:
    """The (path, label) lines of a list file: ``path`` or ``path<TAB>label``; relative paths from its folder.

    Blank lines and lines starting with '#' are skipped; the label (a class name or index for
    ``deconv invariance``) is None when the line has none.

    >>> read_entries(Path("images.tsv"))                                   # doctest: +SKIP
    [(PosixPath('cats/a.jpg'), 'tabby'), (PosixPath('/data/b.jpg'), None)]
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeconvError(f"{path} is neither an image nor a list file: expected a folder of images, an image, "
                          "or a UTF-8 text file with one path per line") from None
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, label = line.partition("\t")
        listed = Path(name.strip())
        entries.append((listed if listed.is_absolute() else path.parent / listed, label.strip() or None))
    return entries


def read_list(path: Path) -> list[Path]:
    """The paths a list file names (:func:`read_entries` without the labels).

    >>> read_list(Path("images.txt"))                                      # doctest: +SKIP
    [PosixPath('cats/a.jpg'), PosixPath('/data/b.jpg')]
    """
    return [listed for listed, _ in read_entries(path)]


def expand_labelled(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[tuple[Path, str | None]]:
    """:func:`expand` with each image's label from its list file's line (None for the others).

    >>> expand_labelled(["labelled.tsv", "cat.jpg"])                       # doctest: +SKIP
    [(PosixPath('a.jpg'), 'tabby'), (PosixPath('cat.jpg'), None)]
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    found: dict[Path, str | None] = {}
    entries: list[tuple[Path, str | None]]
    for item in map(Path, items):
        if item.is_dir():
            entries = [(p, None) for p in sorted(item.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        elif item.is_file() and is_list_file(item):
            entries = [(p, label) for listed, label in read_entries(item)
                       for p in (expand(listed) if listed.is_dir() else [listed])]
        elif item.exists():
            entries = [(item, None)]
        else:
            raise FileNotFoundError(f"no image folder or list file at {item} (nor an image file)")
        for path, label in entries:
            found.setdefault(path, label)
    return list(found.items())


def expand(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image paths from files, folders or list files (each path once, in the order given).

    The package's one rule for "images": every command that takes images reads them here.

    >>> expand(["photos/", "more.txt", "cat.jpg"])                         # doctest: +SKIP
    """
    return [path for path, _ in expand_labelled(sources)]


@dataclass
class ImageSet:
    """The images of one run: ``paths``, their ``names`` relative to ``root`` (posix), what was left out.

    ``others`` holds (path, reason) for the files of a folder that are not images: skipped
    before the scan, reported with the unreadable images.
    """

    root: Path
    paths: list[Path]
    names: list[str]
    from_folder: bool
    others: list[tuple[str, str]] = field(default_factory=list)

    def source(self, name: str) -> Path:
        """The file of an image ``name`` as written in the results."""
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()

    def check_readable(self) -> None:
        """A DeconvError now, before any work or output, unless some image of the set can be read.

        The images are tried in order until one opens, so a usable set costs one extra decode.
        """
        failed = []
        for index, path in enumerate(self.paths):
            try:
                open_image(path)
                return
            except UnreadableImage as error:
                failed.append((index, str(error)))
        self.refuse_if_unreadable(failed)

    def refuse_if_unreadable(self, skipped: Sequence[tuple[int, str]]) -> None:
        """A DeconvError naming what was skipped when not one image could be read."""
        if len(skipped) < len(self.paths):
            return
        shown = "; ".join(reason if str(self.paths[index]) in reason else f"{self.paths[index]}: {reason}"
                          for index, reason in list(skipped)[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        raise DeconvError(f"none of the {len(self.paths)} files of the image set could be read as an image: "
                          f"{shown}{more}")


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (posix), or its absolute path when it lies outside."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.absolute().as_posix()


ImageSources = str | os.PathLike | Sequence[str | os.PathLike]


def image_set(images: ImageSources, *, exclude: Path | None = None, limit: int | None = None) -> ImageSet:
    """The image set named by ``images`` (folders, list files or images), never below ``exclude``.

    One source is the run's root (its folder, for a file); several are named relative to the
    folder they share, so a run over one folder names its images the same either way.

    >>> image_set("photos/", limit=100).names[:2]                          # doctest: +SKIP
    ['cats/a.jpg', 'cats/b.jpg']
    >>> image_set(["photos/cats", "dogs.txt"]).root                        # doctest: +SKIP
    PosixPath('photos')
    """
    sources = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(item) for item in images]
    if not sources:
        raise DeconvError("expected at least one image folder, list file or image, received none")
    for source in sources:
        if not source.exists():
            raise DeconvError(f"no image folder or list file at {source} (nor an image file)")
    outside = exclude.resolve() if exclude is not None else None

    def kept(path: Path) -> bool:
        return outside is None or outside not in path.resolve().parents

    paths = [p for p in expand(sources) if kept(p)]
    others = []
    for source in (s for s in sources if s.is_dir()):
        for path in sorted(source.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(source).parts)
            if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES and not hidden and kept(path):
                others.append((str(path), f"not an image file (suffix {path.suffix or 'none'!r})"))
    paths = paths[:limit] if limit is not None else paths
    if not paths:
        what = "none of them names" if len(sources) > 1 else (
            "the list file names" if sources[0].is_file() else "the folder holds")
        raise DeconvError(f"no images found in {', '.join(map(str, sources))}: {what} no image file "
                          f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    folders = [source if source.is_dir() else source.parent for source in sources]
    root = folders[0] if len(folders) == 1 else _shared_folder(folders)
    from_folder = all(source.is_dir() for source in sources)
    return ImageSet(root, paths, [relative_name(p, root) for p in paths], from_folder, others)


def _shared_folder(folders: Sequence[Path]) -> Path:
    try:
        return Path(os.path.commonpath(folders))
    except ValueError:  # relative and absolute paths mixed
        return Path(os.path.commonpath([folder.absolute() for folder in folders]))


class ImageFiles(Dataset):
    """(index, tensor or None, reason) for each (index, path); unreadable files give None."""

    def __init__(self, items: Sequence[tuple[int, Path]], transform: ImageTransform) -> None:
        self.items, self.transform = list(items), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, str | None]:
        index, path = self.items[i]
        try:
            return index, self.transform(open_image(path)), None
        except UnreadableImage as error:
            return index, None, str(error)


def collate(items: list[tuple[int, Tensor | None, str | None]]) -> tuple[Tensor, Tensor | None, list[tuple[int, str]]]:
    """A batch of the readable images: (their indices, stacked tensors or None, [(index, reason)])."""
    good = [(index, x) for index, x, _ in items if x is not None]
    failed = [(index, reason or "unreadable") for index, x, reason in items if x is None]
    if not good:
        return torch.empty(0, dtype=torch.int64), None, failed
    shapes = {tuple(x.shape) for _, x in good}
    if len(shapes) > 1:
        raise DeconvError(f"the transform gave images of different sizes {sorted(shapes)}: "
                          "it must crop every image to one size to batch them")
    return torch.tensor([index for index, _ in good]), torch.stack([x for _, x in good]), failed
