"""What the command lines share: the user-error class, --set and integer options, exit codes.

``samples/coco/coco.py`` (Mask R-CNN) and ``train_siamese.py`` (``siamese_mrcnn.cli``)
report a bad input as one line on stderr and exit 2; an I/O error (disk full,
permissions) exits 1; Ctrl-C exits 130. Nothing here prints a traceback. The shapes
scripts and ``pretrain.py`` use the same pieces; an ``int_option`` flag with a bad value
is argparse's usage error (exit 2, naming the flag).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Callable, Iterator, Sequence

from mrcnn.files import file_above


class CliError(Exception):
    """A problem with the command line's inputs: reported in one line, exit code 2."""


#: The name siamese_mrcnn.cli has used (both spell the same class).
CLIError = CliError


@contextlib.contextmanager
def user_input(what: str) -> Iterator[None]:
    """Reports missing or invalid inputs (data, config values) as CliError."""
    try:
        yield
    except (FileNotFoundError, ValueError) as error:
        raise CliError(f"{what}: {error}") from error


def parse_set(items: Sequence[str] | None) -> dict:
    """["KEY=VALUE", ...] -> {"KEY": "VALUE"}: --set options, typed later like the field's
    default (mrcnn.overrides.config_from_overrides)."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    return overrides


def add_set_option(parser) -> None:
    """Adds ``--set KEY=VALUE`` (repeatable) to an argparse parser."""
    parser.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE", default=[],
                        help="override config fields, typed like their default, lists and "
                             "tuples as Python literals (e.g. IMAGES_PER_GPU=2 "
                             "BACKBONE=resnet50 RPN_ANCHOR_SCALES=(16,32,64,128,256))")


def int_option(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``low..high`` (no upper bound when ``high`` is
    None). argparse reports a bad value by its flag, e.g. ``argument --train: expected an
    integer >= 0, got '-1'``, before any work, with exit code 2."""
    expected = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def check_output(path: str, option: str, kind: str = "folder") -> str:
    """Checks, before any work, that ``path`` can be written as a ``kind`` ("folder" or
    "file"); returns it. CliError naming ``option`` when it is the other kind, or when
    something above it is a file (os.makedirs would fail only after the model ran)."""
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    if os.path.isdir(path):
        if kind == "file":
            raise CliError(f"{option} {path}: expected a file, found a folder")
        return path
    if os.path.exists(path):
        if kind == "folder":
            raise CliError(f"{option} {path}: expected a folder, found a file")
        return path
    above = file_above(path)
    if above is not None:
        raise CliError(f"{option} {path}: {above} is a file, not a folder")
    return path


def weights_error(error: Exception, options: str = "--config and --set") -> str:
    """One line for a weights file that would not load: a shape mismatch names the first
    weight and asks for the ``options`` the file's model was trained with (the library's
    message suggests exclude=/skip_mismatch=, which a command line does not have)."""
    mismatched = getattr(error, "mismatched", None)  # mrcnn.weights.ShapeMismatchError
    if not mismatched:
        return str(error)
    key, expected, found = mismatched[0]
    return (f"{len(mismatched)} weight(s) of the file do not fit the model (first: "
            f"'{key}' is {found} in the file, {expected} in the model): it was written "
            f"by a model of another configuration; give the {options} it was trained with")


def run_command(command: Callable[[], object], prefix: str = "error",
                interrupted: str = "interrupted") -> int:
    """Runs ``command()`` and maps its outcome to an exit code.

    0: done; 2: CliError (one line: "``prefix``: message"); 1: OSError (disk full,
    permissions: not a bug of ours); 130: Ctrl-C, with the ``interrupted`` line; 3: a
    multi-worker run lost a worker (mrcnn.multi_worker.WorkerLostError, one line).
    """
    try:
        command()
    except CliError as error:
        message = " ".join(str(error).split())
        print(f"{prefix}: {message}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except RuntimeError as error:
        from mrcnn.multi_worker import WorkerLostError

        if not isinstance(error, WorkerLostError):
            raise
        print(f"{prefix}: {error}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # TensorFlow's collective threads still wait on the lost peer and can block
        # the interpreter's exit: leave now, with the status the message announced.
        os._exit(3)
    return 0


__all__ = ["CliError", "CLIError", "user_input", "parse_set", "add_set_option",
           "check_output", "weights_error", "run_command"]
