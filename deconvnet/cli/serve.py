"""``deconv serve``: the live explorer in the browser (deconvnet.serve); needs the extra ``deconvnet[serve]``."""

from __future__ import annotations

import argparse
import sys
from importlib.util import find_spec
from pathlib import Path

from ..errors import EXIT_USAGE
from . import grammar

EXIT_INTERRUPTED = 130  # Ctrl-C, as deconvnet.cli says
HELP = "a live explorer in the browser: every channel of a layer, click a unit (needs deconvnet[serve])"
WEB_MODULES = ("starlette", "uvicorn", "multipart")
INSTALL_HINT = 'deconv serve needs the web extra: pip install "deconvnet[serve]"'


def default_images() -> Path:
    """The shipped free photos: assets/ beside the package (a checkout), or deconvnet/photos (an install)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "photos", package.parent / "assets"):
        if candidate.is_dir():
            return candidate
    return package / "photos"


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound (in use, not an address of this machine), or None."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as error:
        return error.strerror or str(error)
    return None


def add_parser(commands) -> None:
    parser = grammar.add_command(commands, "serve", HELP, grammar.details(__doc__))
    parser.add_argument("--images", help="a folder of photos to pick from (default: the shipped photos)")
    parser.add_argument("--site", help="a microscope site built for the same model and weights (deconv microscope): "
                                       "each unit's top-9 and histogram beside the live view")
    parser.add_argument("--compare", metavar="WEIGHTS2",
                        help="a second checkpoint of the same model: each unit side by side for both")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=grammar.whole_number(1, "--port"), default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=20, help="largest upload in MB (default 20)")
    parser.add_argument("--max-pixels", type=grammar.whole_number(1, "--max-pixels"), default=40_000_000,
                        help="largest decoded upload in pixels (default 40,000,000; Pillow's bomb guard stays on)")
    parser.add_argument("--queue", type=grammar.whole_number(1, "--queue"), default=8,
                        help="requests waiting for the model at most; more are refused with 429 (default 8)")
    parser.add_argument("--featurevis-cache", metavar="DIR",
                        help="where a clicked unit's feature visualization is kept (default: SITE/featurevis-cache "
                             "with --site, else ~/.cache/deconvnet/featurevis)")
    parser.add_argument("--featurevis-steps", type=grammar.whole_number(1, "--featurevis-steps"), default=256,
                        help="its optimization steps (default 256)")
    parser.add_argument("--featurevis-size", type=grammar.whole_number(1, "--featurevis-size"), default=128,
                        help="its side in pixels (default 128)")
    parser.add_argument("--no-featurevis", action="store_true", help="make no feature visualizations")
    grammar.add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    missing = [name for name in WEB_MODULES if find_spec(name) is None]
    if missing:
        print(f"deconv: error: {INSTALL_HINT} (missing: {', '.join(missing)})", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.port <= 65535:
        print(f"deconv: error: --port must be 1-65535, received {args.port}", file=sys.stderr)
        return EXIT_USAGE
    images = Path(args.images) if args.images else default_images()
    if not images.is_dir():
        print(f"deconv: error: --images must be a folder of photos; {images} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    problem = _cannot_listen(args.host, args.port)  # found before the model loads, not after
    if problem:
        print(f"deconv: error: cannot listen on {args.host}:{args.port} ({problem}); choose another --port or --host",
              file=sys.stderr)
        return EXIT_USAGE
    # The checks above are instant; torch and the web stack load only now.
    from ..dataset.runner import model_identity
    from ..models import load
    from ..serve.context import SiteContext
    from ..serve.explorer import Explorer
    from ..serve.featurevis import FeaturevisJobs, default_cache
    from ..serve.server import LOCAL_HOSTS, App, serve
    from ..tasks.microscope.featurevis import FeaturevisSettings

    loaded = load(args.model, weights=args.weights)
    compare = None if args.compare is None else load(args.model, weights=args.compare)
    site = None if args.site is None else SiteContext(args.site, model=loaded.name, identity=model_identity(loaded))
    explorer = Explorer(loaded, compare=compare, site=site, images=images, max_pixels=args.max_pixels,
                        photo_pattern="*" if args.images else "*.jpg")  # assets/: the photos, not the figures
    featurevis = None if args.no_featurevis else FeaturevisJobs(
        loaded, args.featurevis_cache or default_cache(args.site),
        FeaturevisSettings(steps=args.featurevis_steps, size=args.featurevis_size))
    app = App(explorer, queue_size=max(1, args.queue), max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
              site=None if args.site is None else Path(args.site), featurevis=featurevis)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: listening on {args.host}: anyone who can reach this port can run the model on this machine",
              file=sys.stderr)
    try:
        started = serve(app, host=args.host, port=args.port,
                        ready=lambda url: print(f"{loaded.name} ({len(explorer.layers)} layers) at {url}  "
                                                "(Ctrl-C to stop)", flush=True))
    except KeyboardInterrupt:  # uvicorn stops cleanly on Ctrl-C, then passes it on
        started = True
    if not started:
        print(f"deconv: error: cannot listen on {args.host}:{args.port} (in use, or not this machine's address); "
              "choose another --port or --host", file=sys.stderr)
        return EXIT_USAGE
    print("deconv serve: stopped", file=sys.stderr)
    return EXIT_INTERRUPTED
