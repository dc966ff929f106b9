"""The slot through which a Projection draws itself: the engine declares it, the package fills it.

Drawing is not the engine's, and the engine imports nothing above it, not even by name:
``deconvnet/__init__.py`` (which runs before any engine module) registers a loader of
``deconvnet.render`` here, and ``Projection.to_image()``/``.show()`` ask this slot for it.
The loader imports the renderer only when a picture is asked for (no PIL or matplotlib before).

Example:
    >>> from deconvnet.engine import drawing
    >>> hasattr(drawing.renderer(), "projection_image")   # deconvnet registered deconvnet.render
    True
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..errors import DeconvError


class Renderer(Protocol):
    """What the engine needs to draw a Projection (``deconvnet.render`` has both)."""

    def projection_image(self, projection: Any, index: int | None = None, **options: Any) -> Any: ...

    def projection_figure(self, projection: Any, **options: Any) -> Any: ...


_loader: Callable[[], Renderer] | None = None


def register_renderer(loader: Callable[[], Renderer] | None) -> None:
    """Set (or with None, clear) the function that returns the renderer; called by ``deconvnet/__init__.py``.

    >>> from deconvnet.engine import drawing
    >>> import deconvnet.render
    >>> drawing.register_renderer(lambda: deconvnet.render)
    """
    global _loader
    _loader = loader


def renderer() -> Renderer:
    """The registered renderer, loaded now; a DeconvError when none is registered."""
    if _loader is None:
        raise DeconvError("drawing a Projection needs deconvnet.render, and no renderer is registered: "
                          "import deconvnet (which registers it), or call "
                          "deconvnet.engine.drawing.register_renderer(lambda: deconvnet.render)")
    return _loader()
