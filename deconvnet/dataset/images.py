"""Reading photos the way a user's disk holds them, into plain upright RGB.

Any mode Pillow decodes is accepted (grayscale, RGBA, palette, CMYK, 16-bit), EXIF
orientation is applied, and every failure becomes one clear UnreadableImage.
Pillow's decompression-bomb guard stays on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DeconvError
from ..models.transforms import to_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class UnreadableImage(DeconvError):
    """An image file that is missing, empty, corrupt, too large or not an image."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as an upright 8-bit RGB PIL image.

    >>> open_image("assets/cat.jpg").mode                               # doctest: +SKIP
    'RGB'
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableImage(f"image not found: {path}")
    if path.is_dir():
        raise UnreadableImage(f"expected an image file, received a directory: {path}")
    if path.stat().st_size == 0:
        raise UnreadableImage(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # Past Pillow's pixel limit a warning comes first: treat it as the error it warns of.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        declared = _declared_pixels(path)
        size = f"{declared:,} pixels" if declared is not None else "more pixels than that"
        raise UnreadableImage(
            f"refusing to decode {path}: its header declares {size}, over the decompression-bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); raise that limit only for files "
            f"you trust, or shrink the image first"
        ) from error
    except UnidentifiedImageError as error:
        with open(path, "rb") as handle:
            head = handle.read(8)
        raise UnreadableImage(f"cannot read image {path}: expected an image file (JPEG, PNG, BMP, GIF, TIFF, WebP...), "
                              f"received a file Pillow cannot identify (it starts with {head!r})") from error
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for bad files
        raise UnreadableImage(f"cannot read image {path}: {error}; the file is damaged or incomplete") from error


def _declared_pixels(path: Path) -> int | None:
    """Width x height as the file's header declares them (read with Pillow's limit lifted; nothing is decoded)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width * image.height
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
