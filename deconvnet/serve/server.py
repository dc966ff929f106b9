"""The HTTP side of ``deconv serve``: a Starlette app over an Explorer, and ``serve()``, which runs it with uvicorn.

Starlette and uvicorn (the extra ``deconvnet[serve]``) are small, typed, stable ASGI
pieces with few dependencies; nothing else is needed. The API answers PNG images and
small JSON; every computation runs on the one model worker (worker.py), so a full queue is
answered 429 at once and the process's memory stays bounded. Files are served only from
the package's static folder, the images folder and the site folder (``_inside``).
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..dataset.images import IMAGE_SUFFIXES
from ..errors import DeconvError
from .explorer import Explorer, as_channel, as_modes, as_position
from .featurevis import FeaturevisJobs
from .worker import Busy, ModelWorker, Superseded

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
WAIT_SECONDS = 20.0  # a request waiting longer for the model is answered 503 (well before a client gives up)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# The page loads nothing from elsewhere; the webcam's frames are blobs of the page itself.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
               "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")
_SITE_UNIT_PAGE = re.compile(r"^([^/]+)/(\d+)\.html$")


class TooLarge(DeconvError):
    pass


def _inside(root: Path | None, relative: str) -> Path | None:
    """The file ``relative`` names under ``root``, or None: no '..', no absolute path, no link out of it."""
    if root is None or not relative or "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    if any(part in ("", ".", "..") for part in relative.split("/")):
        return None
    try:
        resolved = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    return resolved if resolved.is_relative_to(root) and resolved.is_file() else None


def _not_found() -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class App:
    """The routes, bound to one Explorer and its worker."""

    def __init__(self, explorer: Explorer, *, queue_size: int = 8, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 site: Path | None = None, featurevis: FeaturevisJobs | None = None) -> None:
        self.explorer = explorer
        self.featurevis = featurevis
        self.worker = ModelWorker(queue_size)
        self.max_upload_bytes = max_upload_bytes
        self.site_root = None if site is None else Path(site).resolve()
        self.static_root = STATIC
        routes = [
            Route("/", self.page), Route("/static/{path:path}", self.static),
            Route("/photos/{path:path}", self.photo), Route("/site/{path:path}", self.site),
            Route("/api/model", self.model), Route("/api/images", self.upload, methods=["POST"]),
            Route("/api/grid", self.grid), Route("/api/unit", self.unit), Route("/api/figure.png", self.figure),
            Route("/api/result/{token}.png", self.result),
            Route("/api/featurevis", self.featurevis_state), Route("/api/featurevis.png", self.featurevis_image),
        ]
        self.app = Starlette(routes=routes)

    def close(self) -> None:
        self.worker.close()
        if self.featurevis is not None:
            self.featurevis.close()
        self.explorer.close()

    # -- running on the model's thread ----------------------------------------------------
    async def _run(self, job: Callable[[], Any], key: str | None = None) -> Any:
        """The job's result; errors become the HTTP answers the API documents."""
        try:
            future = self.worker.submit(job, key)
        except Busy as error:
            return _error(429, str(error))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), WAIT_SECONDS)
        except Superseded as error:
            return _error(409, str(error))
        except asyncio.TimeoutError:
            return _error(503, f"the model did not get to this request within {WAIT_SECONDS:.0f} s; try again")
        except LookupError as error:
            return _error(404, str(error.args[0]) if error.args else "not found")
        except (DeconvError, ValueError, TypeError) as error:
            return _error(400, str(error))

    @staticmethod
    def _key(request: Request, kind: str) -> str | None:
        client = request.query_params.get("client")
        return None if not client else f"{client[:64]}/{kind}"

    # -- the page and files ---------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        response.headers["Content-Security-Policy"] = PAGE_POLICY
        return response

    def _file(self, root: Path | None, relative: str) -> Response:
        path = _inside(root, relative)
        if path is None:
            return _not_found()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = FileResponse(path, media_type=kind)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def static(self, request: Request) -> Response:
        return self._file(self.static_root, request.path_params["path"])

    async def photo(self, request: Request) -> Response:
        relative = request.path_params["path"]
        if not relative.lower().endswith(IMAGE_SUFFIXES):
            return _not_found()
        return self._file(self.explorer.images_root, relative)

    async def site(self, request: Request) -> Response:
        relative = request.path_params["path"]
        unit_page = _SITE_UNIT_PAGE.match(relative)
        path = _inside(self.site_root, relative)
        if unit_page is None or path is None:
            return self._file(self.site_root, relative)
        # A unit page served by the live explorer links back to the live view of its unit.
        layer = next((name for name, folder in (self.explorer.site.folders.items() if self.explorer.site else ())
                      if folder == unit_page.group(1)), None)
        text = path.read_text(encoding="utf-8")
        if layer is not None:
            link = (f'<p class="live"><a id="live-view" href="/?layer={quote(layer)}&amp;channel='
                    f'{unit_page.group(2)}">open this unit in the live view</a> (your own image or webcam)</p>')
            text = text.replace("</h1>", "</h1>\n" + link, 1)
        return HTMLResponse(text)

    # -- the API --------------------------------------------------------------------------
    async def model(self, request: Request) -> Response:
        return JSONResponse({**self.explorer.describe(), "featurevis": self.featurevis is not None})

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_upload_bytes:
            raise TooLarge(self._too_large(int(declared)))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise TooLarge(self._too_large(size, at_least=True))
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (f"upload of {'more than ' if at_least else ''}{size:,} bytes is over this server's limit of "
                f"{self.max_upload_bytes:,} bytes (--max-upload-mb); shrink the image first")

    async def upload(self, request: Request) -> Response:
        """POST an image (raw body, or multipart field "file"), or ``?photo=NAME`` for one of the folder's."""
        photo = request.query_params.get("photo")
        if photo is not None:
            path = _inside(self.explorer.images_root, photo)
            if path is None or not path.name.lower().endswith(IMAGE_SUFFIXES):
                return _error(404, f"no photo {photo!r} in the images folder")
            picture = await self._run(lambda: self.explorer.add_photo(photo, path))
        else:
            try:
                data = await self._body(request)
            except TooLarge as error:
                return _error(413, str(error))
            name = request.query_params.get("name") or "upload"
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                data, name = await self._multipart(request, data, name)
                if data is None:
                    return _error(400, "expected the image in a multipart field named 'file'")
            if not data:
                return _error(400, f"image file is empty (0 bytes): {name}")
            picture = await self._run(lambda: self.explorer.add_image(data, name))
        if isinstance(picture, Response):
            return picture
        return JSONResponse({"id": picture.id, "name": picture.name, "width": picture.photo.width,
                             "height": picture.photo.height})

    @staticmethod
    async def _multipart(request: Request, body: bytes, name: str) -> tuple[Any, str]:
        """The file field of a multipart body already read (and size-checked) by ``_body``."""
        from starlette.datastructures import UploadFile

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
        field = form.get("file")
        if not isinstance(field, UploadFile):
            return None, name
        return await field.read(), field.filename or name

    async def grid(self, request: Request) -> Response:
        query = request.query_params
        answer = await self._run(lambda: self.explorer.grid(query.get("image", ""), query.get("layer") or
                                                            self.explorer.default_layer), self._key(request, "grid"))
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    def _unit_arguments(self, request: Request) -> dict:
        query = request.query_params
        return {"image_id": query.get("image", ""), "layer": query.get("layer") or self.explorer.default_layer,
                "channel": as_channel(query.get("channel")), "position": as_position(query.get("y"), query.get("x")),
                "modes": as_modes(query.get("modes"))}

    async def unit(self, request: Request) -> Response:
        try:
            arguments = self._unit_arguments(request)
        except DeconvError as error:
            return _error(400, str(error))
        which = request.query_params.get("which", "main")
        answer = await self._run(lambda: self.explorer.unit(**arguments, which=which),
                                 self._key(request, f"unit-{which}"))
        return answer if isinstance(answer, Response) else JSONResponse(answer)

    async def figure(self, request: Request) -> Response:
        try:
            arguments = self._unit_arguments(request)
        except DeconvError as error:
            return _error(400, str(error))
        answer = await self._run(lambda: self.explorer.figure(**arguments))
        if isinstance(answer, Response):
            return answer
        name = f"{arguments['layer']}_c{arguments['channel']}.png".replace("/", "_")
        return Response(answer, media_type="image/png",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _featurevis_unit(self, request: Request) -> tuple[FeaturevisJobs, str, int]:
        if self.featurevis is None:
            raise LookupError("this server makes no feature visualizations (started with --no-featurevis)")
        query = request.query_params
        layer = self.explorer.layer_name(query.get("layer") or self.explorer.default_layer)  # unknown: the valid ones
        return self.featurevis, layer, as_channel(query.get("channel"))

    async def featurevis_state(self, request: Request) -> Response:
        """The unit's feature visualization: {"state": "done", "url"} or {"state": "running", "progress"} (202)."""
        try:
            jobs, layer, channel = self._featurevis_unit(request)
            answer = await asyncio.to_thread(jobs.ask, layer, channel)
        except LookupError as error:
            return _error(404, str(error))
        except Busy as error:
            return _error(429, str(error))
        except (DeconvError, ValueError, TypeError) as error:
            return _error(400, str(error))
        if answer["state"] != "done":
            return JSONResponse(answer, status_code=202)
        return JSONResponse({**answer, "url": f"/api/featurevis.png?layer={quote(layer)}&channel={channel}"})

    async def featurevis_image(self, request: Request) -> Response:
        try:
            jobs, layer, channel = self._featurevis_unit(request)
        except LookupError as error:
            return _error(404, str(error))
        except DeconvError as error:
            return _error(400, str(error))
        path = jobs.path(layer, channel)
        if not path.is_file():
            return _error(404, "this feature visualization is not made yet: ask /api/featurevis first")
        return FileResponse(path, media_type="image/png")

    async def result(self, request: Request) -> Response:
        data = self.explorer.result(request.path_params["token"])
        if data is None:
            return _error(404, "this picture is no longer kept; ask for the grid or the unit again")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def make_server(app: App, *, host: str = "127.0.0.1", port: int = 8000):
    """The uvicorn server for ``app`` (not started); ``limit_concurrency`` answers 503 past 128 open requests."""
    import uvicorn

    config = uvicorn.Config(app.app, host=host, port=port, log_level="warning", access_log=False,
                            limit_concurrency=128, timeout_keep_alive=5, timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def serve(app: App, *, host: str = "127.0.0.1", port: int = 8000, ready: Callable[[str], None] | None = None) -> bool:
    """Serve until interrupted (Ctrl-C); ``ready(url)`` is called once the socket listens.

    Returns whether the server started (False: the address could not be bound, uvicorn said why).
    """
    server = make_server(app, host=host, port=port)
    if ready is not None:
        shown = f"[{host}]" if ":" in host else host
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            if server.started:
                ready(f"http://{shown}:{port}/")

        server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    except SystemExit:  # uvicorn's answer to an address it cannot bind
        if server.started:
            raise
    finally:
        app.close()
    return bool(server.started)
