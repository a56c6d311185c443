"""``python -m siamese_mrcnn.app --model W.h5|EXPORT_DIR [--images DIR]``: the page.

Checks its arguments, loads the model, then serves on 127.0.0.1:8000 until Ctrl-C
(uvicorn). A bad argument is one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Sequence

# Before TensorFlow is first imported, as the other command lines do: its C++ logs (the
# first detection's eight "PredictCost" lines) are not for the page's user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mrcnn.cli_support import CLIError, add_set_option, run_command  # noqa: E402
from siamese_mrcnn.app.uploads import (DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB,  # noqa: E402
                                       Limits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m siamese_mrcnn.app",
        description="A local web page for one-shot search: draw a box on a reference "
                    "image, upload queries or search a folder, see every match.")
    parser.add_argument("--model", required=True,
                        help="a weights file (.h5, with --config/--set as for detect) or a "
                             "folder written by train_siamese.py export")
    parser.add_argument("--images", default=None,
                        help="a folder of images the page can search (optional)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--config", default="small",
                        help="for a weights file: small | large | tiny | quickstart | "
                             "PATH.py, as for train_siamese.py detect (default small)")
    parser.add_argument("--split", default="1", help="class split of the run (default 1)")
    add_set_option(parser)
    parser.add_argument("--batch", type=int, default=1,
                        help="images per model call for a weights file (default 1)")
    parser.add_argument("--logs", default="logs", help="checkpoint root, for --model last")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest request body (default {DEFAULT_MAX_UPLOAD_MB:g} MB)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest image, in pixels (default {DEFAULT_MAX_PIXELS:,})")
    return parser


def load_engine(args):
    """The Engine of --model (weights or an export) and --images; CLIError for a bad one."""
    from siamese_mrcnn.app.engine import Engine
    from siamese_mrcnn.cli import check_model_spec, inference_config, load_inference_model
    from siamese_mrcnn.search import list_images

    if args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb > 0) \
            or args.max_pixels <= 0:  # nan or inf: a traceback in int() before
        raise CLIError(f"--max-upload-mb and --max-pixels must be finite and > 0, got "
                       f"{args.max_upload_mb:g} and {args.max_pixels}")
    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be in 1..65535, got {args.port}")
    if args.images is not None:
        try:
            list_images(args.images)
        except ValueError as error:
            raise CLIError(str(error)) from error
    config = None
    if not os.path.isdir(args.model):  # an export takes no --config/--set/--batch
        config = inference_config(args, IMAGES_PER_GPU=args.batch, GPU_COUNT=1)
        check_model_spec(args.model, exports=True)
    model, name = load_inference_model(args.model, config, args.logs)
    return Engine(model, name, images=args.images)


def serve(args) -> None:
    import uvicorn

    from siamese_mrcnn.app.server import create_app

    engine = load_engine(args)  # checks the arguments first
    limits = Limits(max_bytes=int(args.max_upload_mb * 1024 * 1024),
                    max_pixels=args.max_pixels)
    try:
        app = create_app(engine, limits, close_engine=True)  # closed at the shutdown
        print(f"serving {engine.model_name} ({engine.shots}-shot) on "
              f"http://{args.host}:{args.port}/" + (f"; folder: {args.images} "
              f"({len(engine.folder_files)} files)" if args.images else ""), flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()  # if the server never started (a port in use); closing twice is fine


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(lambda: serve(args), prefix="error")


if __name__ == "__main__":
    sys.exit(main())
