"""Write files so that they appear all at once or not at all.

Every writer here puts its data into a hidden temporary file in the
destination directory and then renames it onto the real name with
``os.replace``.  The rename is atomic on POSIX and Windows when both names
are on the same file system, which is why the temporary file lives next to
the destination rather than in ``/tmp``.  A reader therefore sees either the
old file or the complete new one, never a half-written picture, and an
interrupted run (an exception, Ctrl-C) leaves no debris behind.

The files are not ``fsync``-ed: the guarantee covers an interrupted process,
not a power cut, and skipping the sync keeps writing hundreds of patches fast.

The examples write into the current folder (the doctests run in an empty scratch folder).

Example:
    >>> from pathlib import Path
    >>> from deconvnet.fileio import check_writable_dir, write_json_atomic
    >>> Path("results").mkdir()
    >>> out = check_writable_dir("results")      # fail early, before hours of work
    >>> write_json_atomic(out / "summary.json", {"layer": "conv5", "top": 9})
    PosixPath('results/summary.json')
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from .errors import DeconvError, WriteError

if TYPE_CHECKING:  # matplotlib is only needed by callers that pass a figure
    from matplotlib.figure import Figure

__all__ = [
    "atomic_path",
    "check_figure_path",
    "check_writable_dir",
    "save_figure_atomic",
    "save_image_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

PathLike = Union[str, os.PathLike]

# Formats every matplotlib backend saves: checked without importing matplotlib, which would
# cost a start-up that fails on a bad argument most of a second.
_COMMON_FIGURE_FORMATS = frozenset({"png", "pdf", "svg", "jpg", "jpeg"})
# Keeps the temporary name below the usual 255-byte limit even for long names.
_MAX_STEM_IN_TEMP_NAME = 100
_TEMP_NAME_ATTEMPTS = 100


def check_writable_dir(path: PathLike) -> Path:
    """Check that files can be written in the directory ``path``: it exists and is writable, or it
    is missing and can be created (its nearest existing ancestor is a writable directory).

    This is the one output policy of the package: a missing folder is never an error, only
    a path that cannot be created or written is. Nothing is created here: call this at start-up,
    so that a bad path is reported before any expensive computation, and let the writers below
    create the missing folders when the first file is written.

    Raises:
        NotADirectoryError: ``path``, or the ancestor it would be created in, is a file.
        PermissionError: the directory, or the ancestor it would be created in, is not writable.

    Example:
        >>> check_writable_dir(".")
        PosixPath('.')
        >>> check_writable_dir("new/folder")             # created by the first file written there
        PosixPath('new/folder')
    """
    directory = Path(path)
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    created = "" if existing == directory else f" cannot be created: {str(existing)!r}"
    if not existing.is_dir():
        raise NotADirectoryError(
            f"output directory {str(directory)!r}{created} is a file, not a directory; "
            "choose a directory for the output (missing ones are created)"
        )
    # Creating a file needs write permission and search (execute) permission.
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"output directory {str(directory)!r}{created} is not writable; "
            "fix its permissions or choose another directory"
        )
    return directory


def check_figure_path(path: PathLike) -> Path:
    """Check, before any work, that a matplotlib figure can be saved at ``path``.

    Raises what :func:`check_writable_dir` raises for the parent directory (a missing one
    is fine: it is created when the figure is saved), IsADirectoryError when ``path`` is a
    directory, and a DeconvError (a ValueError) when matplotlib cannot write its suffix.

    Example:
        >>> check_figure_path("out.png")
        PosixPath('out.png')
    """
    destination = Path(path)
    check_writable_dir(destination.parent)
    if destination.is_dir():
        raise IsADirectoryError(
            f"{str(destination)!r} is a directory; give a file name such as {str(destination / 'out.png')!r}"
        )
    if destination.suffix.lower().lstrip(".") not in _COMMON_FIGURE_FORMATS:  # ask matplotlib (a slow import)
        from matplotlib.backend_bases import FigureCanvasBase

        _check_figure_format(destination, FigureCanvasBase.get_supported_filetypes())
    return destination


def _check_figure_format(destination: Path, supported: dict) -> str:
    figure_format = destination.suffix.lower().lstrip(".")
    if figure_format not in supported:
        raise DeconvError(
            f"matplotlib cannot save {destination.name!r}; "
            f"end the file name with one of: {', '.join('.' + s for s in sorted(supported))}"
        )
    return figure_format


def _create_temp_file(destination: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``destination``."""
    stem = destination.name[:_MAX_STEM_IN_TEMP_NAME]
    for _ in range(_TEMP_NAME_ATTEMPTS):
        candidate = destination.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")
        try:
            # O_EXCL: never reuse someone else's file.  Mode 0o666 lets the
            # umask decide, so the final file gets the usual permissions
            # (tempfile.mkstemp would force 0o600).
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"could not find a free temporary name next to {str(destination)!r}")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed onto ``path``.

    The temporary file (``.<name>.<random>.tmp`` in the same directory) already
    exists, empty, when the block starts; write it with any library.  If the
    block raises, the temporary file is deleted and an existing ``path`` is
    left untouched.  The directory is checked before the block runs, and created (with its
    missing parents) if it does not exist yet.  An OS error while
    writing (disk full, I/O error) is raised as :class:`deconvnet.errors.WriteError`, which
    names the file.

    Example:
        >>> with atomic_path("log.txt") as tmp:
        ...     _ = tmp.write_text("done\\n")
        >>> open("log.txt").read()
        'done\\n'
    """
    destination = Path(path)
    check_writable_dir(destination.parent)
    if destination.is_dir():
        raise IsADirectoryError(
            f"{str(destination)!r} is a directory; give a file name such as {str(destination / 'out.png')!r}"
        )
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)  # the policy: missing folders are created
        temporary = _create_temp_file(destination)
    except OSError as error:
        raise _write_failure(destination, error) from error
    try:
        yield temporary
        os.replace(temporary, destination)
    except BaseException as error:  # also Ctrl-C: never leave a temporary file behind
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise _write_failure(destination, error) from error
        raise


def _write_failure(destination: Path, error: OSError) -> OSError:
    """An OS-level failure while writing (disk full, I/O error) as a WriteError naming the file.

    OSErrors without an errno (Pillow's "cannot write mode ... as JPEG") are about the request,
    and stay what they are.
    """
    return error if error.errno is None or isinstance(error, WriteError) else WriteError(destination, error)


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a Path.

    Example:
        >>> write_bytes_atomic("blob.bin", b"\\x00\\x01")
        PosixPath('blob.bin')
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"data must be bytes, not {type(data).__name__}; use write_text_atomic for str"
        )
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, newlines kept as given).

    Example:
        >>> write_text_atomic("notes.txt", "conv5 ch 12\\n")
        PosixPath('notes.txt')
    """
    if not isinstance(text, str):
        raise TypeError(
            f"text must be str, not {type(text).__name__}; use write_bytes_atomic for bytes"
        )
    # Encoding ourselves writes the same bytes on every platform (no \r\n on Windows).
    return write_bytes_atomic(path, text.encode(encoding))


def _json_default(value: Any) -> Any:
    """Let numpy/torch numbers and arrays and paths go into JSON."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"object of type {type(value).__name__} cannot be written as JSON; "
        "convert it to numbers, strings, lists or dicts first"
    )


def write_json_atomic(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (indent 2, keys in insertion order, UTF-8, final newline).

    numpy and torch values are converted with ``.tolist()`` and paths with
    ``os.fspath``.  The object is serialised before any file is created, so
    an unserialisable object leaves the disk untouched.

    Example:
        >>> write_json_atomic("run.json", {"layer": "conv1", "channels": [0, 5]})
        PosixPath('run.json')
    """
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default)
    return write_text_atomic(path, text + "\n")


def _image_format_for(path: Path) -> str:
    """PIL's format name for the suffix of ``path`` ('.png' -> 'PNG')."""
    extensions = Image.registered_extensions()
    image_format = extensions.get(path.suffix.lower())
    if image_format is None or image_format not in Image.SAVE:
        raise DeconvError(
            f"cannot tell the image format from {path.name!r}; "
            "end the file name with a suffix such as .png or .jpg"
        )
    return image_format


def _as_pil_image(image: Image.Image | np.ndarray) -> Image.Image:
    """Accept a PIL image or a uint8 array shaped (H, W), (H, W, 3) or (H, W, 4)."""
    if isinstance(image, Image.Image):
        return image
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a PIL.Image or a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"image array must be uint8, not {image.dtype}; "
            "use deconvnet.render.to_display for projections or np.clip(a, 0, 255).astype(np.uint8)"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(
            f"image array must be shaped (H, W), (H, W, 3) or (H, W, 4), not {image.shape}; "
            "channels go last (use t.permute(1, 2, 0) for a CHW tensor)"
        )
    return Image.fromarray(np.ascontiguousarray(image))


def save_image_atomic(path: PathLike, image: Image.Image | np.ndarray, **options: Any) -> Path:
    """Save an image atomically; the format comes from the suffix of ``path``.

    ``image`` is a PIL image or a uint8 array (H, W, 3) in RGB order (also
    (H, W) grey or (H, W, 4) RGBA).  ``options`` go to ``PIL.Image.save``,
    e.g. ``quality=95`` for JPEG.

    Example:
        >>> save_image_atomic("sheet.png", np.zeros((8, 8, 3), np.uint8))
        PosixPath('sheet.png')
    """
    destination = Path(path)
    image_format = _image_format_for(destination)
    picture = _as_pil_image(image)
    if image_format == "JPEG" and picture.mode not in ("L", "RGB", "CMYK"):
        raise ValueError(
            f"JPEG cannot store mode {picture.mode!r}; save as .png or convert to RGB first"
        )
    with atomic_path(destination) as temporary:
        # The temporary name ends in .tmp, so the format must be given explicitly.
        picture.save(temporary, format=image_format, **options)
    return destination


def _close_if_pyplot_figure(fig: Figure) -> None:
    """Release a figure that pyplot keeps alive; plain Figures need nothing."""
    # If pyplot was never imported no figure can be registered with it, so
    # importing it here (and choosing a backend) would be pointless.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)


def save_figure_atomic(
    path: PathLike, fig: Figure, *, dpi: float = 150, close: bool = True, **savefig_options: Any
) -> Path:
    """Save a matplotlib figure atomically; the format comes from the suffix of ``path``.

    With ``close=True`` a figure created through pyplot is closed afterwards
    so long runs do not accumulate open figures.  ``savefig_options`` go to
    ``Figure.savefig`` (e.g. ``bbox_inches="tight"``).

    Example:
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(figsize=(2, 2))
        >>> _ = fig.subplots().plot([0, 1], [1, 0])
        >>> save_figure_atomic("conv5_12.png", fig)
        PosixPath('conv5_12.png')
    """
    destination = Path(path)
    figure_format = _check_figure_format(destination, fig.canvas.get_supported_filetypes())
    try:
        with atomic_path(destination) as temporary:
            fig.savefig(temporary, format=figure_format, dpi=dpi, **savefig_options)
    finally:
        if close:
            _close_if_pyplot_figure(fig)
    return destination
