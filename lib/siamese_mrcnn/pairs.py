"""The protocol's pairs and the runner that detects them.

``evaluation_pairs`` lists, per test image, the active categories present in it;
``PairRunner.run`` draws each pair's references (from a generator seeded by the run's
seed, the image and the category) and yields ``(image id, category, detections)``,
in batches of BATCH_SIZE through the model. The protocol (siamese_mrcnn.protocol)
and the confusion matrix (siamese_mrcnn.analysis) are its consumers.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from siamese_mrcnn.data import ReferenceNotFoundError, get_one_target

logger = logging.getLogger(__name__)

# Keys of the explicit seed derivation (see child_rng).
_KEY_PAIR, _KEY_SHARED, _KEY_RANDOM = 0, 1, 2

SeedLike = Union[None, int, np.random.SeedSequence, np.random.Generator]


############################################################
#  Seeds
############################################################

def seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """A SeedSequence from an int, a SeedSequence, a Generator or None (drawn from
    the numpy global state, so np.random.seed still makes a run reproducible)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2 ** 63)))
    if seed is None:
        return np.random.SeedSequence(int(np.random.randint(0, 2 ** 31 - 1)))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or seed < 0:
        raise ValueError("seed: expected None, an integer >= 0, a SeedSequence or a "
                         "Generator, got {!r}".format(seed))
    return np.random.SeedSequence(int(seed))


def child_rng(root: np.random.SeedSequence, kind: int, *index: int) -> np.random.Generator:
    """A generator that depends only on the run's seed, a kind and an index (never on
    the order of the calls, so threads and batching do not change the draws)."""
    key = tuple(root.spawn_key) + (kind,) + tuple(int(i) for i in index)
    return np.random.default_rng(np.random.SeedSequence(root.entropy, spawn_key=key))


def seed_label(root: np.random.SeedSequence) -> Any:
    """A JSON-ready description of a SeedSequence (entropy and spawn key)."""
    return {"entropy": int(root.entropy), "spawn_key": [int(k) for k in root.spawn_key]}


############################################################
#  Pairs and detection
############################################################

@dataclass
class _Query:
    """A query image and its references, one entry per reference category."""
    image_id: int
    image: np.ndarray          # [H, W, 3] raw
    categories: list           # internal class ids
    references: list           # per category: k references [T, T, 3], or None (failed)


def check_indexed(dataset: Any) -> None:
    if not getattr(dataset, "image_category_index", None):
        if not hasattr(dataset, "build_indices"):
            raise ValueError("dataset: expected an IndexedCocoDataset (with "
                             "image_category_index), got {}".format(type(dataset).__name__))
        dataset.build_indices()


def evaluation_pairs(dataset: Any, image_ids: Sequence[int], categories: Iterable[int]
                     ) -> list:
    """The protocol's (image, categories) list: for each image, the given categories
    that have a non-crowd instance in it (images without one are left out).

    Returns [(internal image id, [internal class ids, sorted])].
    """
    check_indexed(dataset)
    wanted = set(int(c) for c in categories)
    pairs = []
    for image_id in image_ids:
        present = sorted(wanted.intersection(dataset.image_category_index[image_id]))
        if present:
            pairs.append((int(image_id), present))
    return pairs


def _draw_references(dataset: Any, config: Any, category: int, rng: np.random.Generator,
                     exclude_image_id: Optional[int], allow_same_image: bool
                     ) -> Optional[list]:
    """NUM_TARGETS references of a category, or None (logged) when none can be drawn."""
    try:
        return [get_one_target(category, dataset, config, exclude_image_id=exclude_image_id,
                               allow_same_image=allow_same_image, rng=rng)
                for _ in range(config.NUM_TARGETS)]
    except ReferenceNotFoundError as error:
        logger.warning("No reference for category %d (query image %s): %s; pair skipped",
                       category, exclude_image_id, error)
        return None


class PairRunner:
    """Runs (query, reference) pairs through the model in batches of BATCH_SIZE."""

    def __init__(self, model: Any, dataset: Any, seed: np.random.SeedSequence,
                 random_detections: bool, shared_reference: bool, allow_same_image: bool,
                 workers: int, cache_queries: bool = True):
        self.model, self.dataset, self.config = model, dataset, model.config
        self.seed = seed
        self.random_detections = random_detections
        self.shared_reference = shared_reference
        self.allow_same_image = allow_same_image
        self.workers = int(workers)
        self.batch_size = int(model.config.BATCH_SIZE)
        self.encoded: dict = {}
        self.batches = 0
        self.timing = {"load": 0.0, "references": 0.0, "detect": 0.0}
        self.skipped: list = []
        self._timing_lock = threading.Lock()
        # Pairs come image by image: encode each query image once for all its categories.
        self.cache_queries = bool(cache_queries) and hasattr(model, "encode_queries")
        self._encoded_queries: dict = {}  # image id -> encode_queries() entry

    # ---- preparing queries (possibly in threads) --------------------------
    def _prepare(self, item: tuple) -> _Query:
        image_id, categories = item
        t = time.perf_counter()
        image = self.dataset.load_image(image_id)
        t_load = time.perf_counter() - t
        references = []
        for category in categories:
            if self.shared_reference:
                references.append(None)
                continue
            # One generator per (image, category): the draws depend neither on threads,
            # batching nor on which other images are evaluated.
            rng = child_rng(self.seed, _KEY_PAIR, image_id, category)
            references.append(_draw_references(self.dataset, self.config, category, rng,
                                               image_id, self.allow_same_image))
        with self._timing_lock:
            self.timing["load"] += t_load
            self.timing["references"] += time.perf_counter() - t - t_load
        return _Query(image_id, image, list(categories), references)

    def _queries(self, items: list) -> Iterator[_Query]:
        if self.workers <= 0:
            for item in items:
                yield self._prepare(item)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending: deque = deque()
            remaining = iter(items)
            for item in remaining:
                pending.append(pool.submit(self._prepare, item))
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                query = pending.popleft().result()
                following = next(remaining, None)
                if following is not None:
                    pending.append(pool.submit(self._prepare, following))
                yield query

    # ---- shared references ------------------------------------------------
    def encode_shared(self, categories: Iterable[int]) -> list:
        """Draws and encodes one reference set per category (shared_reference mode).
        Returns the categories that have none."""
        t = time.perf_counter()
        failed = []
        drawn = {}
        for category in sorted(set(int(c) for c in categories)):
            rng = child_rng(self.seed, _KEY_SHARED, category)
            references = _draw_references(self.dataset, self.config, category, rng, None,
                                          True)
            if references is None:
                failed.append(category)
            else:
                drawn[category] = references
        ids = list(drawn)
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            # Padded to BATCH_SIZE: one input shape, so the encoder is traced once.
            padded = chunk + [chunk[-1]] * (self.batch_size - len(chunk))
            vectors = self.model.encode_reference([drawn[c] for c in padded])  # 5 x [B, C]
            for row, category in enumerate(chunk):
                self.encoded[category] = [np.asarray(v)[row:row + 1] for v in vectors]
        self.timing["references"] += time.perf_counter() - t
        return failed

    # ---- detection ----------------------------------------------------------
    def _detect_batch(self, batch: list) -> list:
        """batch: [(query, category, references)] of at most BATCH_SIZE pairs."""
        n = len(batch)
        padded = batch + [batch[-1]] * (self.batch_size - n)
        images = [query.image for query, _, _ in padded]
        kwargs = {}
        if self.random_detections:
            # detect() takes one generator per call, so the random boxes (unlike the
            # references) depend on the batch size.
            kwargs = {"random_detections": True,
                      "rng": child_rng(self.seed, _KEY_RANDOM, self.batches)}
        t = time.perf_counter()
        if self.cache_queries:
            detections = self._detect_encoded(padded, kwargs)
        elif self.shared_reference:
            detections = self.model.detect_with_reference(self._shared_vectors(padded),
                                                          images, **kwargs)
        else:
            targets = [references for _, _, references in padded]
            detections = self.model.detect(targets, images, verbose=0, **kwargs)
        self.timing["detect"] += time.perf_counter() - t
        self.batches += 1
        if len(detections) < n:
            raise ValueError("model.detect returned {} results for a batch of {}".format(
                len(detections), self.batch_size))
        return list(detections[:n])

    def _shared_vectors(self, padded: list) -> list:
        """The shared references' vectors of a batch: 5 x [BATCH_SIZE, C]."""
        return [np.concatenate([self.encoded[c][level] for _, c, _ in padded])
                for level in range(5)]

    def _detect_encoded(self, padded: list, kwargs: dict) -> list:
        """One batch with each query image encoded once (backbone + FPN) and reused for
        every category paired with it; the references are encoded in the batch."""
        missing: dict = {}
        for query, _, _ in padded:
            if query.image_id not in self._encoded_queries:
                missing.setdefault(query.image_id, query.image)
        if missing:
            encoded = self.model.encode_queries(list(missing.values()))
            self._encoded_queries.update(zip(missing, encoded))
        if self.shared_reference:
            vectors = self._shared_vectors(padded)
        else:
            vectors = self.model.encode_reference([refs for _, _, refs in padded])
        queries = [self._encoded_queries[query.image_id] for query, _, _ in padded]
        detections = self.model.detect_with_encoded(queries, vectors, **kwargs)
        # Only the last image can have pairs in the next batch.
        last = padded[-1][0].image_id
        self._encoded_queries = {last: self._encoded_queries[last]}
        return detections

    def run(self, queries: list, progress: Optional[tqdm] = None
            ) -> Iterator[tuple]:
        """Yields (internal image id, reference category, detection dict) per pair;
        pairs without a reference are skipped (their count is in self.skipped)."""
        self.skipped = []
        unavailable: set = set()
        if self.shared_reference:
            needed = set(c for _, categories in queries for c in categories)
            unavailable = set(self.encode_shared(needed))
        batch: list = []
        for query in self._queries(list(queries)):
            for category, references in zip(query.categories, query.references):
                missing = (category in unavailable) if self.shared_reference \
                    else references is None
                if missing:
                    self.skipped.append((query.image_id, category))
                    if progress is not None:
                        progress.update(1)
                    continue
                batch.append((query, category, references))
                if len(batch) == self.batch_size:
                    yield from self._emit(batch, progress)
                    batch = []
        if batch:
            yield from self._emit(batch, progress)

    def _emit(self, batch: list, progress: Optional[tqdm]) -> Iterator[tuple]:
        for (query, category, _), detection in zip(batch, self._detect_batch(batch)):
            yield query.image_id, category, detection
        if progress is not None:
            progress.update(len(batch))


def progress_bar(total: int, verbose: int, description: str) -> tqdm:
    return tqdm(total=total, desc=description, unit="pair", disable=verbose <= 0,
                dynamic_ncols=True)
