"""``deconv serve``: a live explorer of one model in the browser.

An image (a photo of the folder, an upload or webcam frames) goes in; the page shows every
channel of a layer as a tiled grid, and a clicked unit's receptive field, image patch and
projections, drawn as ``deconv visualize`` draws them, beside its top-9 in a microscope
site when one is given. Modules, bottom-up:

- ``worker``: the one thread that runs the model, with a bounded queue (full: refuse at
  once) and the cancellation of a client's stale requests.
- ``explorer``: the computations (grid, unit, figure) on the engine's API; no web code.
- ``context``: a microscope site's data for a unit (top-k, histogram, where this input falls).
- ``server``: the Starlette app (HTTP API and the static page) and ``serve()``, which runs uvicorn.

The web stack is the optional extra ``deconvnet[serve]``; nothing here is imported by
``import deconvnet`` or ``deconv --help``.
"""
