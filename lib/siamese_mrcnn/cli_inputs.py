"""What the Siamese command line's subcommands read, checked before a model is built:
--config (a preset or a PATH.py) with --set, --dataset and --split, --schedule, and
--model (the weights to start from). Each error is a CLIError that names the option.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import os
from typing import Any

import numpy as np

from mrcnn.cli_support import CLIError, weights_error

# The command line's messages come from one logger, whichever module says them.
logger = logging.getLogger("siamese_mrcnn.cli")

MODEL_CHOICES = "imagenet-687|imagenet-771|imagenet-1k|last|none|PATH.h5"


# --------------------------------------------------------------------- config


@functools.lru_cache(maxsize=None)
def _load_config_file(path: str):
    """The configuration of a Python file: its `config` instance, else its one Config
    subclass that no other class of the file derives from. Cached: the file runs once.
    """
    from siamese_mrcnn import config as sconfig

    if not os.path.isfile(path):
        raise CLIError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location("user_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - any failure of the user's file is theirs
        raise CLIError(f"{path}: the config file failed to run: "
                       f"{type(error).__name__}: {error}") from error
    if isinstance(getattr(module, "config", None), sconfig.Config):
        return module.config
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, sconfig.Config) and c.__module__ == module.__name__]
    # A base class defined next to its subclass is not the one meant.
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    if len(leaves) != 1:
        found = ", ".join(c.__name__ for c in leaves) or "none"
        raise CLIError(f"{path}: expected a `config` instance or one "
                       f"siamese_mrcnn.config.Config subclass, found {found}")
    return leaves[0]


def _config_class(spec: str, evaluation: bool):
    from siamese_mrcnn import config as sconfig

    if spec.endswith(".py"):
        return _load_config_file(os.path.abspath(spec))
    key = spec.lower() + ("_eval" if evaluation else "")
    if key not in sconfig.PRESETS:
        names = [k for k in sconfig.PRESETS if not k.endswith("_eval")]
        raise CLIError(f"--config must be {', '.join(names)} or a PATH.py, got {spec!r}")
    return sconfig.PRESETS[key]


def run_names(spec: str, split: str) -> dict:
    """NAME and EXPERIMENT of the training run of a --config and --split.

    They name the log directory (logs/siamese_{MODEL}_{NAME}_{EXPERIMENT}/), so train,
    evaluate and detect agree on where `--model last` is. A preset gives its training
    NAME and EXPERIMENT i{split} (or full), as the paper's notebooks; a config file keeps
    its own. --set overrides both (build_config applies it last).
    """
    base = _config_class(spec, evaluation=False)
    if spec.endswith(".py"):
        return {"NAME": base.NAME, "EXPERIMENT": base.EXPERIMENT}
    key = str(split).lower().lstrip("i")
    return {"NAME": base.NAME, "EXPERIMENT": "full" if key == "full" else f"i{key}"}


def build_config(spec: str = "small", overrides: dict | None = None, evaluation: bool = False,
                 **fields: Any):
    """A validated Siamese config: a preset or file, then `fields`, then --set overrides."""
    from mrcnn.overrides import config_from_overrides
    from siamese_mrcnn.config import check_siamese_classes

    merged = {k: v for k, v in fields.items() if v is not None}
    merged.update(overrides or {})
    try:
        config = config_from_overrides(_config_class(spec, evaluation), merged)
        # Every command builds a SiameseMaskRCNN from it: its own checks (NUM_CLASSES,
        # TARGET_MAX_DIM) in one line here, not as a traceback from the constructor.
        check_siamese_classes(config)
    except ValueError as error:
        raise CLIError(f"configuration: {error}") from error
    return config


# ----------------------------------------------------------------------- data
def check_split(split: str) -> str:
    """The --split value if it names a class split (1..4, i1..i4 or full)."""
    from siamese_mrcnn.coco import get_class_split

    try:
        get_class_split(split, 4)
    except ValueError as error:
        raise CLIError(f"--split: expected 1, 2, 3, 4 or full, got {split!r}") from error
    return str(split)


def annotation_file(dataset_dir: str, subset: str, year: str) -> str:
    """The annotation file of a subset, checked to exist (nothing is parsed)."""
    from siamese_mrcnn.coco import annotation_path

    if not os.path.isdir(dataset_dir):
        raise CLIError(f"data set directory not found: {dataset_dir}")
    path = annotation_path(dataset_dir, subset, year)
    if not os.path.isfile(path):
        raise CLIError(f"COCO annotation file not found: {path} (--dataset must hold "
                       f"annotations/instances_{subset}{year}.json and {subset}{year}/)")
    return path


def _count_annotated_images(coco) -> int:
    """Images with at least one annotation: the ones load_coco adds."""
    return len(set().union(*coco.catToImgs.values())) if coco.catToImgs else 0


def load_split_datasets(dataset_dir: str, year: str, split: str, val_images: int,
                        subset: str | None = None):
    """Training/validation (from train{year}) or test (from `subset`) data sets.

    Returns (datasets, one_shot_ids, background_ids), datasets a list of
    (IndexedCocoDataset, COCO). With subset None: the train ids sorted, the last
    val_images are validation (fewer when the data set is small); both have the
    background classes active. With a subset: one data set of that subset, all classes
    active.
    """
    from siamese_mrcnn.coco import IndexedCocoDataset, get_class_split, load_coco_api

    def load(sub, subsubset=None, val_count=0, annotations=None):
        ds = IndexedCocoDataset()
        coco = ds.load_coco(dataset_dir, sub, year=year, return_coco=True,
                            subsubset=subsubset, val_count=val_count,
                            annotations=annotations)
        ds.prepare()
        return ds, coco

    path = annotation_file(dataset_dir, subset or "train", year)
    try:
        if subset is not None:
            ds, coco = load(subset)
            one_shot, background = get_class_split(split, ds.num_classes - 1)
            return [(ds, coco)], one_shot, background
        # The train file is read once and shared by the training and validation sets.
        annotations = load_coco_api(path)
        n = _count_annotated_images(annotations)
        if n < 2:
            raise CLIError(f"{path}: expected at least 2 annotated images (training and "
                           f"validation), got {n}")
        if val_images >= n:
            fallback = max(1, n // 10)
            logger.warning("--val-images %d >= %d training images: using the last %d",
                           val_images, n, fallback)
            val_images = fallback
        train = load("train", "train", val_images, annotations)
        val = load("train", "val", val_images, annotations)
        one_shot, background = get_class_split(split, train[0].num_classes - 1)
    except (FileNotFoundError, ValueError) as error:
        raise CLIError(str(error)) from error
    for ds, _ in (train, val):
        ds.set_active_classes(background)
    return [train, val], one_shot, background


def resolve_schedule(spec: str, learning_rate: float) -> dict:
    """'paper' | 'full' | PATH.json -> {end_epoch: {"learning_rate", "layers"}}.

    The named schedules (siamese_mrcnn.config.SCHEDULES) are scaled to
    `learning_rate`; a JSON file gives absolute rates:
    {"end_epoch": {"learning_rate": float, "layers": str}, ...}.
    """
    from siamese_mrcnn.config import SCHEDULES, schedule as named_schedule

    if spec in SCHEDULES:
        return named_schedule(spec, learning_rate)
    if not os.path.isfile(spec):
        raise CLIError(f"--schedule must be {', '.join(SCHEDULES)} or a JSON file; "
                       f"not found: {spec}")
    expected = '{"end_epoch": {"learning_rate": float, "layers": str}, ...}'
    try:
        with open(spec, encoding="utf-8") as f:
            raw = json.load(f)
        schedule = {int(end): {"layers": str(stage["layers"]),
                               "learning_rate": float(stage["learning_rate"])}
                    for end, stage in raw.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CLIError(f"{spec}: expected {expected}, got an error: {error}") from error
    bad = [end for end, stage in schedule.items()
           if end < 1 or not 0 < stage["learning_rate"] < float("inf")]  # JSON: Infinity
    if not schedule or bad:
        raise CLIError(f"{spec}: expected {expected} with end epochs >= 1 and finite "
                       f"learning rates > 0, got {raw}")
    return schedule


# ---------------------------------------------------------------------- model
def check_model_spec(spec: str, option: str = "--model", exports: bool = False) -> None:
    """Cheap checks of --model (or the ``option`` that gave ``spec``), before a model is
    built: a path must exist. ``exports``: the command also takes a folder written by
    export (search, the web page), so the message offers it."""
    if spec in ("none", "last") or spec.startswith("imagenet"):
        return
    if not os.path.isfile(spec):
        also = " or a folder written by export" if exports else ""
        raise CLIError(f"{option}: weights file not found: {spec} (expected "
                       f"{MODEL_CHOICES}{also})")


def init_weights(model, spec: str, schedule: dict | None = None,
                 option: str = "--model") -> str:
    """Initialises a model from --model; returns the file loaded (or 'none').

    last / a siamese_mrcnn_####.h5 file: the checkpoint, training resumes at the next
    epoch (with a schedule, that epoch's layers are made trainable); imagenet-*: the
    backbone file in config.CHECKPOINT_DIR; any other file: loaded by layer name.
    """
    spec = spec or "none"
    if getattr(model, "mode", None) == "inference" and (
            spec == "none" or spec.startswith("imagenet")):
        # Allowed (the error tests and smoke runs use it), but a user who meant a trained
        # file would otherwise only see detections that mean nothing.
        logger.warning("%s %s: the heads are untrained (random weights), so detections "
                       "and scores mean nothing; pass trained weights (PATH.h5 or last)",
                       option, spec)
    if spec == "none":
        return "none"
    check_model_spec(spec, option)
    try:
        if spec.startswith("imagenet"):
            path = model.get_imagenet_weights(spec)
            model.load_imagenet_weights(pretraining=spec, weights_path=path)
            return path
        if spec == "last":
            try:
                path = model.get_latest_checkpoint()
            except FileNotFoundError as error:
                raise CLIError(f"--model last: {error} (train first, or check --logs, "
                               "--config, --split and --set NAME/EXPERIMENT)") from error
        else:
            path = spec
        if model.CHECKPOINTS.is_checkpoint(path):
            model.load_checkpoint(path, training_schedule=schedule)
        else:
            model.load_weights(path, by_name=True)
        return path
    except FileNotFoundError as error:
        raise CLIError(str(error)) from error
    except ValueError as error:
        raise CLIError(f"{option} {spec}: {weights_error(error)}") from error
    except OSError as error:  # h5py: not an HDF5 file, truncated, unreadable
        raise CLIError(f"{option} {spec}: cannot read the weights: {error}") from error


def load_inference_model(spec: str, config, logs: str) -> tuple:
    """(model, name) of --model for search and the web page: an ExportedModel for a
    folder written by `export` (config unused), else a SiameseMaskRCNN in inference mode
    built from config with the weights of spec (init_weights). CLIError for a folder
    that is not an export."""
    if os.path.isdir(spec):
        from siamese_mrcnn.search import ExportedModel

        try:
            return ExportedModel(spec), spec
        except ValueError as error:
            raise CLIError(f"--model {error}") from error
    from siamese_mrcnn.model import SiameseMaskRCNN

    model = SiameseMaskRCNN("inference", config, logs)
    return model, init_weights(model, spec)


EVAL_TYPES = ("bbox", "segm")


def parse_eval_types(text: str) -> list:
    """'bbox,segm' -> ['bbox', 'segm'] (each one of EVAL_TYPES, at least one)."""
    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in EVAL_TYPES]
    if not types or bad:
        raise CLIError(f"--eval-type: expected bbox, segm or bbox,segm, got {text!r}")
    return types


def json_default(value):
    """json.dump's default for numpy scalars and arrays (result files)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
