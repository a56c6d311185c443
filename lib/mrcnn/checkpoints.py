"""Where training runs write their checkpoints, and how a model finds them again.

One small policy object per model class (``MaskRCNN.CHECKPOINTS``) answers the
questions that were regexes in three places (model, subclass, command line):

- ``locate(model_dir, config, model_path)``: the run folder, the checkpoint file
  template (``...{epoch:04d}.h5``, what the Keras checkpoint callback formats) and the
  epoch to resume after; a path to one of this policy's checkpoints resumes its run.
- ``epoch_of(path)``: the epoch of one of this policy's checkpoints, else None.
- ``latest(model_dir, config)``: the newest checkpoint (``find_last``).

Two policies:

- ``TimestampedRuns`` (Matterport): each ``train`` call without a checkpoint starts a new
  folder ``{name}{%Y%m%dT%H%M}`` holding ``{prefix}_{name}_{epoch:04d}.h5``; the latest
  run is the last folder (by name) that holds a checkpoint.
- ``FixedRun`` (the paper's code): one folder per experiment, named by a function of the
  config, holding ``{prefix}_{epoch:04d}.h5``; training resumes in the same folder.

``epoch_in_name(path)`` is the looser rule for released files: any name that ends in
``_####.h5`` (e.g. ``small_siamese_mrcnn_0160.h5``) carries its epoch there.
"""
from __future__ import annotations

import dataclasses
import datetime
import glob
import os
import re
from typing import Callable, Optional

_EPOCH_SUFFIX_RE = re.compile(r"_(\d{4})\.h5$")


def epoch_in_name(path: str) -> Optional[int]:
    """The epoch a file name ends in (``..._0160.h5`` -> 160), else None."""
    m = _EPOCH_SUFFIX_RE.search(os.path.basename(os.fspath(path)))
    return int(m.group(1)) if m else None


@dataclasses.dataclass(frozen=True)
class RunLocation:
    """Where a run writes: ``checkpoint_path`` is formatted with ``epoch=`` (1-based,
    the number of finished epochs); ``epoch`` is where training resumes (0: fresh)."""

    log_dir: str
    checkpoint_path: str
    epoch: int


class CheckpointPolicy:
    """Naming and discovery of one model class's checkpoints (see the module doc)."""

    def locate(self, model_dir: str, config, model_path: Optional[str] = None,
               now: Optional[datetime.datetime] = None) -> RunLocation:
        raise NotImplementedError

    def epoch_of(self, path: str) -> Optional[int]:
        raise NotImplementedError

    def is_checkpoint(self, path: str) -> bool:
        """Whether ``path`` names one of this policy's checkpoints (it resumes a run)."""
        return self.epoch_of(path) is not None

    def latest(self, model_dir: str, config) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TimestampedRuns(CheckpointPolicy):
    """Matterport's runs: ``{model_dir}/{name}{%Y%m%dT%H%M}/{prefix}_{name}_{epoch:04d}.h5``."""

    prefix: str = "mask_rcnn"

    def _path_re(self) -> re.Pattern:
        # .../mask_rcnn_shapes20171029T2315/mask_rcnn_shapes_0001.h5 (also Windows paths)
        return re.compile(r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]"
                          + re.escape(self.prefix) + r"\_[\w-]+(\d{4})\.h5")

    def epoch_of(self, path: str) -> Optional[int]:
        m = self._path_re().match(os.fspath(path))
        return int(m.group(6)) if m else None

    def locate(self, model_dir: str, config, model_path: Optional[str] = None,
               now: Optional[datetime.datetime] = None) -> RunLocation:
        now = now or datetime.datetime.now()
        epoch = 0
        m = self._path_re().match(os.fspath(model_path)) if model_path else None
        if m:
            now = datetime.datetime(*(int(m.group(i)) for i in range(1, 6)))
            # The file name holds the 1-based number of the last finished epoch.
            epoch = int(m.group(6))
        name = config.NAME.lower()
        log_dir = os.path.join(model_dir, "{}{:%Y%m%dT%H%M}".format(name, now))
        template = os.path.join(log_dir, "{}_{}_{{epoch:04d}}.h5".format(self.prefix, name))
        return RunLocation(log_dir, template, epoch)

    def latest(self, model_dir: str, config) -> str:
        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"Model directory {model_dir!r} does not exist")
        key = config.NAME.lower()
        dir_names = sorted(d for d in next(os.walk(model_dir))[1] if d.startswith(key))
        if not dir_names:
            raise FileNotFoundError(
                f"Could not find model directory under {model_dir} (expected a folder "
                f"starting with {key!r})")
        for dir_name in reversed(dir_names):
            run_dir = os.path.join(model_dir, dir_name)
            checkpoints = sorted(f for f in next(os.walk(run_dir))[2]
                                 if f.startswith(self.prefix) and f.endswith(".h5"))
            if checkpoints:
                return os.path.join(run_dir, checkpoints[-1])
        raise FileNotFoundError(f"Could not find weight files in {model_dir}/{key}*")


@dataclasses.dataclass(frozen=True)
class FixedRun(CheckpointPolicy):
    """One folder per experiment: ``{model_dir}/{run_name(config)}/{prefix}_{epoch:04d}.h5``.

    Only files named exactly ``{prefix}_####.h5`` are this policy's checkpoints; any
    other file (released weights, ImageNet backbones) starts a run at epoch 0.
    """

    prefix: str
    run_name: Callable[[object], str]

    def _name_re(self) -> re.Pattern:
        return re.compile("^" + re.escape(self.prefix) + r"_(\d{4})\.h5$")

    def epoch_of(self, path: str) -> Optional[int]:
        m = self._name_re().match(os.path.basename(os.fspath(path)))
        return int(m.group(1)) if m else None

    def locate(self, model_dir: str, config, model_path: Optional[str] = None,
               now: Optional[datetime.datetime] = None) -> RunLocation:
        epoch = (self.epoch_of(model_path) if model_path else None) or 0
        log_dir = os.path.join(model_dir, self.run_name(config))
        return RunLocation(log_dir, os.path.join(log_dir, self.prefix + "_{epoch:04d}.h5"),
                           epoch)

    def latest(self, model_dir: str, config) -> str:
        log_dir = self.locate(model_dir, config).log_dir
        files = [f for f in glob.glob(os.path.join(log_dir, self.prefix + "_*.h5"))
                 if self.is_checkpoint(f)]
        if not files:
            raise FileNotFoundError(f"No checkpoint {self.prefix}_####.h5 in {log_dir}")
        return max(files, key=self.epoch_of)


__all__ = ["CheckpointPolicy", "TimestampedRuns", "FixedRun", "RunLocation", "epoch_in_name"]
