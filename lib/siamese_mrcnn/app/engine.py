"""The model behind the page: one thread runs it, requests wait on that thread.

``Engine`` wraps a SiameseMaskRCNN in inference mode (weights loaded) or an
ExportedModel (a SavedModel from ``export``). Every call that touches the model runs in
one worker thread (``executor``), so the server's event loop never waits on it: the
page, its static files and job polling answer while a search runs, and requests that
need the model queue in the order they came.

Uploaded queries are detected with the same encode-once path as ``search``
(``encode_reference`` once, then ``detect_with_reference`` per batch) and answered as
``search``'s results.jsonl records. A folder search is a ``FolderJob``: it runs
``search_collection`` into a folder of the engine's temporary directory, which is removed
by ``close()``; the page polls its progress and the records found so far.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from typing import Optional, Sequence

import numpy as np

from siamese_mrcnn.app.uploads import UploadError
from siamese_mrcnn.search import (RESULTS_NAME, detections_record, list_images,
                                  search_collection, shots)

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a folder search that a newer one replaced."""


class FolderJob:
    """One search of the --images folder: its progress and the records so far."""

    def __init__(self, files: Sequence[str], jobs_dir: str):
        self.id = uuid.uuid4().hex[:12]
        self.files = list(files)
        self.output = os.path.join(jobs_dir, self.id)  # results.jsonl goes here
        self.records: list[dict] = []
        self.done = 0
        self.state = "queued"  # queued | running | done | failed | cancelled
        self.error: Optional[str] = None
        self.seconds = 0.0
        self.cancelled = threading.Event()
        self._lock = threading.Lock()

    def on_batch(self, records: list[dict], done: int) -> None:
        with self._lock:
            self.records.extend(records)
            self.done = done
        if self.cancelled.is_set():
            raise Cancelled()

    def status(self, since: int = 0) -> dict:
        """Progress and the records from index ``since`` on (the page asks for new ones)."""
        with self._lock:
            since = min(max(since, 0), len(self.records))
            return {"job": self.id, "state": self.state, "done": self.done,
                    "total": len(self.files), "seconds": round(self.seconds, 3),
                    "error": self.error, "since": since,
                    "records": list(self.records[since:]),
                    "count": len(self.records)}


class Engine:
    """The model, its thread, the --images folder and the temporary folder of jobs."""

    def __init__(self, model, model_name: str, images: Optional[str] = None):
        self.model = model
        self.model_name = model_name
        self.shots = int(model.config.NUM_TARGETS)
        self.images_dir = images
        self.folder_files = list_images(images) if images else []
        self.folder_names = {os.path.basename(f): f for f in self.folder_files}
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="model")
        self.workdir = tempfile.mkdtemp(prefix="siamese_mrcnn_app_")
        self.jobs: dict[str, FolderJob] = {}
        self._current: Optional[FolderJob] = None

    # ------------------------------------------------------------------ uploads
    def detect(self, references: Sequence[np.ndarray],
               queries: Sequence[tuple[str, np.ndarray]], min_score: float = 0.0) -> dict:
        """The records (search format, ``file`` = the upload's name) of each query, in
        the order given. Runs on the caller's thread: call it through ``executor``."""
        try:
            refs = shots(list(references), self.shots)
        except ValueError as error:
            raise UploadError(f"reference: {error}") from error
        started = time.perf_counter()
        vectors = self.model.encode_reference([refs])
        size = self.model.config.BATCH_SIZE
        records = []
        for start in range(0, len(queries), size):
            batch = list(queries[start:start + size])
            images = [image for _, image in batch]
            padded = images + [images[-1]] * (size - len(images))
            results = self.model.detect_with_reference(
                vectors, padded, molded=self.model.mold_inputs(padded))
            records += [detections_record(name, image.shape, result, min_score)
                        for (name, image), result in zip(batch, results)]
        return {"results": records, "seconds": round(time.perf_counter() - started, 3)}

    # ------------------------------------------------------------------ folder
    def start_folder_search(self, references: Sequence[np.ndarray],
                            min_score: float = 0.0) -> FolderJob:
        """Queues a search of the --images folder (a newer one cancels the one before)."""
        if not self.folder_files:
            raise UploadError("this server has no image folder: start it with --images DIR",
                              status=409)
        try:
            refs = shots(list(references), self.shots)
        except ValueError as error:
            raise UploadError(f"reference: {error}") from error
        if self._current is not None:
            self._current.cancelled.set()
        job = FolderJob(self.folder_files, os.path.join(self.workdir, "jobs"))
        self.jobs[job.id] = job
        self._current = job
        self.executor.submit(self._run_job, job, refs, min_score)
        return job

    def _run_job(self, job: FolderJob, references: list, min_score: float) -> None:
        if job.cancelled.is_set():
            job.state = "cancelled"
            return
        job.state = "running"
        started = time.perf_counter()
        try:
            search_collection(self.model, references, job.files, job.output,
                              min_score=min_score, top=0, progress=False,
                              on_batch=job.on_batch)
            job.state = "done"
        except Cancelled:
            job.state = "cancelled"
        except Exception as error:  # reported to the page; the server keeps serving
            logger.exception("folder search %s failed", job.id)
            job.error, job.state = f"{type(error).__name__}: {error}", "failed"
        finally:
            job.seconds = time.perf_counter() - started

    def results_file(self, job: FolderJob) -> str:
        return os.path.join(job.output, RESULTS_NAME)

    # ------------------------------------------------------------------ info
    def info(self) -> dict:
        return {"model": self.model_name, "shots": self.shots,
                "folder": self.images_dir, "folder_images": len(self.folder_files)}

    def close(self) -> None:
        """Stops the model thread (after what is running) and removes the temporary
        folder with every job's results."""
        if self._current is not None:
            self._current.cancelled.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        for job in self.jobs.values():
            if job.state == "queued":  # its future was cancelled before it started
                job.state = "cancelled"
        shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["Engine", "FolderJob", "Cancelled"]
