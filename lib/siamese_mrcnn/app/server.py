"""The HTTP side: the page, its files and the JSON API (Starlette).

    GET  /                    the page (static/index.html)
    GET  /static/...          its script and style (served from the package, no CDN)
    GET  /api/info            model, shots (k), folder, limits
    POST /api/detect          multipart: reference (1..k files), box (x,y,w,h per
                              reference, optional), query (1+ files), min_score (0)
                              -> {"results": [results.jsonl records], "seconds": ..}
    POST /api/search          multipart: reference, box, min_score -> 202 {"job": id, ..}:
                              searches the --images folder
    GET  /api/jobs/{id}?since=N   progress and the records from index N on
    GET  /api/jobs/{id}/results.jsonl   the job's results file
    GET  /api/folder/{name}   an image of the --images folder (by its listed name only)

Errors are JSON {"error": message} with a 4xx: 400 bad or missing fields, 404 unknown
job or image, 409 no folder, 413 a body or an image above the limits, 415 not
multipart. Model calls run on the engine's thread (``run_in_executor``), so the event
loop stays free.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from siamese_mrcnn.app.engine import Engine
from siamese_mrcnn.app.uploads import Limits, UploadError, crop, decode_image, parse_box

logger = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Files per request, all fields together (python-multipart's limits, so that a request
#: with thousands of parts is refused before it is parsed).
MAX_FILES = 64
MAX_FIELDS = 64


class BodyLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before the endpoint
    reads it (by its Content-Length, or by counting the bytes of a chunked upload)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge as error:
            await self._refuse(send, error.args[0])

    async def _refuse(self, send, size: int) -> None:
        body = json.dumps({"error": f"the upload is {_size(size)} (or more); the limit is "
                                    f"{_size(self.max_bytes)} (--max-upload-mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _size(count: int) -> str:
    return f"{count / 2 ** 20:.1f} MB" if count >= 2 ** 20 else f"{count / 1024:.0f} KB"


def _error(error: UploadError) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status)


async def _read_form(request: Request):
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadError("expected a multipart/form-data body (fields reference, query, "
                          "box, min_score)", status=415)
    try:
        return await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except Exception as error:  # python-multipart's parse errors, too many parts
        raise UploadError(f"cannot read the multipart body: {error}") from error


async def _images(form, field: str, limits: Limits, required: bool) -> list:
    """[(name, pixels)] of the files of ``field``."""
    uploads = [u for u in form.getlist(field) if hasattr(u, "read")]
    if required and not uploads:
        raise UploadError(f"missing field {field!r}: expected one or more image files")
    images = []
    for upload in uploads:
        data = await upload.read()
        images.append((upload.filename or f"{field}_{len(images)}",
                       decode_image(data, field, upload.filename or "", limits)))
    return images


async def _references(form, limits: Limits) -> list:
    """The reference crops: each file cut to its box (``box`` fields in the same order;
    fewer boxes than files leave the rest whole)."""
    from siamese_mrcnn.reference import MIN_REFERENCE_SIDE

    images = await _images(form, "reference", limits, required=True)
    boxes = [b for b in form.getlist("box") if isinstance(b, str)]
    if len(boxes) > len(images):
        raise UploadError(f"box: {len(boxes)} boxes for {len(images)} reference image(s)")
    crops = []
    for i, (name, image) in enumerate(images):
        box = parse_box(boxes[i] if i < len(boxes) else None, field=f"box {i + 1}")
        crops.append(crop(image, box, f"reference {name!r}", MIN_REFERENCE_SIDE))
    return crops


def _min_score(form) -> float:
    text = form.get("min_score")
    if text is None or text == "":
        return 0.0
    try:
        value = float(text)
    except (TypeError, ValueError) as error:
        raise UploadError(f"min_score: expected a number in [0, 1], got {text!r}") from error
    if not 0.0 <= value <= 1.0:
        raise UploadError(f"min_score: expected a number in [0, 1], got {text!r}")
    return value


def create_app(engine: Engine, limits: Optional[Limits] = None,
               close_engine: bool = False) -> Starlette:
    """The Starlette application around ``engine``. close_engine: the server's shutdown
    closes the engine (its thread, its temporary folder). uvicorn ends a Ctrl-C or
    SIGTERM by raising the signal again after the shutdown, so a ``finally`` around
    ``uvicorn.run`` would never run: the lifespan is where the cleanup happens."""
    limits = limits or Limits()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            if close_engine:
                await asyncio.get_running_loop().run_in_executor(None, engine.close)

    async def run_model(function, *args):
        return await asyncio.get_running_loop().run_in_executor(engine.executor, function,
                                                                *args)

    async def page(request: Request):
        return FileResponse(os.path.join(STATIC_DIR, "index.html"))

    async def info(request: Request):
        return JSONResponse(dict(engine.info(), **limits.describe()))

    async def detect(request: Request):
        try:
            form = await _read_form(request)
            try:
                references = await _references(form, limits)
                queries = await _images(form, "query", limits, required=True)
                min_score = _min_score(form)
            finally:
                await form.close()  # the spooled upload files go now, not at GC
            answer = await run_model(engine.detect, references, queries, min_score)
        except UploadError as error:
            return _error(error)
        except ValueError as error:  # what the model refuses (see its message)
            return _error(UploadError(str(error)))
        return JSONResponse(dict(answer, model=engine.model_name, shots=engine.shots))

    async def search(request: Request):
        try:
            form = await _read_form(request)
            try:
                references = await _references(form, limits)
                min_score = _min_score(form)
            finally:
                await form.close()
            job = engine.start_folder_search(references, min_score)
        except UploadError as error:
            return _error(error)
        return JSONResponse(job.status(), status_code=202)

    def _job(request: Request):
        job = engine.jobs.get(request.path_params["job"])
        if job is None:
            raise UploadError(f"no job {request.path_params['job']!r}", status=404)
        return job

    async def job_status(request: Request):
        try:
            job = _job(request)
            text = request.query_params.get("since", "0") or "0"
            if not text.isdigit():
                raise UploadError(f"since: expected a count >= 0, got {text!r}")
        except UploadError as error:
            return _error(error)
        since = int(text)
        return JSONResponse(job.status(since))

    async def job_results(request: Request):
        try:
            job = _job(request)
        except UploadError as error:
            return _error(error)
        path = engine.results_file(job)
        if not os.path.isfile(path):
            return Response("", media_type="application/x-ndjson")
        return FileResponse(path, media_type="application/x-ndjson",
                            filename=f"results_{job.id}.jsonl")

    async def folder_image(request: Request):
        path = engine.folder_names.get(request.path_params["name"])
        if path is None:  # only listed names: no path is built from the request
            return _error(UploadError(f"no image {request.path_params['name']!r} in the "
                                      "folder", status=404))
        return FileResponse(path)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/detect", detect, methods=["POST"]),
        Route("/api/search", search, methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
        Route("/api/jobs/{job}/results.jsonl", job_results),
        Route("/api/folder/{name}", folder_image),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    return app


__all__ = ["create_app", "BodyLimit", "STATIC_DIR", "MAX_FILES", "MAX_FIELDS"]
