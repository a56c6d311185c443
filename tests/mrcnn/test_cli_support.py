"""The helpers both command lines share: CliError, --set parsing, exit codes, and the
typed overrides (mrcnn.overrides) they apply."""
import argparse
import errno
import pickle

import numpy as np
import pytest

from mrcnn.cli_support import (CLIError, CliError, add_set_option, check_output, int_option,
                               parse_set, run_command, user_input, weights_error)
from mrcnn.config import COMPUTED_FIELDS, Config
from mrcnn.overrides import config_from_overrides, parse_value
from mrcnn.weights import ShapeMismatchError


class TinyConfig(Config):
    NAME = "tiny"
    BACKBONE = "resnet_tiny"
    IMAGE_MIN_DIM = IMAGE_MAX_DIM = 64


def test_both_spellings_are_one_class():
    assert CLIError is CliError


def test_parse_set_splits_at_the_first_equals_sign():
    assert parse_set(["A=1", " B = x=y", "C="]) == {"A": "1", "B": " x=y", "C": ""}
    assert parse_set(None) == {}
    for bad in ("A", "=1"):
        with pytest.raises(CliError, match="--set expects KEY=VALUE"):
            parse_set([bad])


def test_set_option_accepts_several_values_and_repeats():
    parser = argparse.ArgumentParser()
    add_set_option(parser)
    args = parser.parse_args(["--set", "A=1", "B=2", "--set", "C=3"])
    assert args.set == ["A=1", "B=2", "C=3"]
    assert parser.parse_args([]).set == []


def test_int_option_accepts_its_range_and_names_the_flag_otherwise(capsys):
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--count", type=int_option(0))
    parser.add_argument("--size", type=int_option(64, 128))
    assert parser.parse_args(["--count", "0", "--size", "64"]).count == 0
    assert parser.parse_args(["--size", "128"]).size == 128
    assert parser.parse_args(["--count", "12"]).count == 12
    for flag, text, expected in [("--count", "-1", "an integer >= 0"),
                                 ("--count", "1.5", "an integer >= 0"),
                                 ("--count", "", "an integer >= 0"),
                                 ("--size", "63", "an integer in 64..128"),
                                 ("--size", "129", "an integer in 64..128")]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([flag, text])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"tool: error: argument {flag}: expected {expected}, got {text!r}")


def test_user_input_turns_missing_and_invalid_inputs_into_cli_errors():
    with pytest.raises(CliError, match="^data set: nope$"):
        with user_input("data set"):
            raise FileNotFoundError("nope")
    with pytest.raises(CliError, match="^configuration: bad$"):
        with user_input("configuration"):
            raise ValueError("bad")
    with pytest.raises(KeyError):  # a bug stays a bug
        with user_input("data set"):
            raise KeyError("x")


def test_check_output_names_the_option_and_what_is_in_the_way(tmp_path):
    a_file, a_folder = tmp_path / "a_file", tmp_path / "a_folder"
    a_file.write_text("x")
    a_folder.mkdir()
    new = str(tmp_path / "new" / "deeper")
    # What can be written is returned unchanged, and nothing is created.
    assert check_output(new, "--out") == new
    assert check_output(str(a_folder), "--out") == str(a_folder)
    assert check_output(str(a_file), "--json", "file") == str(a_file)  # overwritten later
    assert check_output(str(a_folder / "x.json"), "--json", "file") == str(a_folder / "x.json")
    assert not (tmp_path / "new").exists()
    cases = [
        ((str(a_file), "--out"), f"--out {a_file}: expected a folder, found a file"),
        ((str(a_folder), "--json", "file"),
         f"--json {a_folder}: expected a file, found a folder"),
        ((str(a_file / "run" / "deeper"), "--logs"),
         f"--logs {a_file / 'run' / 'deeper'}: {a_file} is a file, not a folder"),
        ((str(a_file / "x.png"), "--output", "file"),
         f"--output {a_file / 'x.png'}: {a_file} is a file, not a folder"),
    ]
    for args, message in cases:
        with pytest.raises(CliError) as info:
            check_output(*args)
        assert str(info.value) == message
    assert a_file.read_text() == "x"
    with pytest.raises(ValueError, match="kind must be 'folder' or 'file'"):
        check_output(new, "--out", "dir")


def test_check_output_takes_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    assert check_output("logs", "--logs") == "logs"
    with pytest.raises(CliError, match=r"^--logs a_file/logs: .*a_file is a file"):
        check_output("a_file/logs", "--logs")


@pytest.mark.parametrize("error, code, line", [
    (None, 0, None),
    (CliError("bad\n  input"), 2, "tool: error: bad input"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "tool: error: [Errno 28]"),
    (KeyboardInterrupt(), 130, "stopped"),
])
def test_run_command_maps_outcomes_to_exit_codes(error, code, line, capsys):
    def command():
        if error is not None:
            raise error

    assert run_command(command, prefix="tool: error", interrupted="stopped") == code
    err = capsys.readouterr().err
    if line is None:
        assert err == ""
    else:
        assert len(err.splitlines()) == 1 and err.startswith(line)


def test_weights_error_turns_a_shape_mismatch_into_command_line_advice():
    error = ShapeMismatchError([("conv1/kernel", (7, 7, 3, 64), (7, 7, 3, 16)),
                                ("conv1/bias", (64,), (16,))])
    assert "skip_mismatch=True" in str(error)  # the library's advice, for API users
    assert weights_error(error) == (
        "2 weight(s) of the file do not fit the model (first: 'conv1/kernel' is "
        "(7, 7, 3, 16) in the file, (7, 7, 3, 64) in the model): it was written by a model "
        "of another configuration; give the --config and --set it was trained with")
    assert weights_error(error, "--num-classes").endswith("give the --num-classes it was "
                                                          "trained with")
    assert weights_error(ValueError("not an HDF5 file")) == "not an HDF5 file"
    # It crosses processes whole (a worker pool's error): same class, list and message.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ShapeMismatchError and copy.mismatched == error.mismatched
    assert str(copy) == str(error)


def test_overrides_are_typed_like_the_default():
    assert parse_value("X", "true", False) is True
    assert parse_value("X", "3", 1) == 3 and parse_value("X", "1.5", 1) == 1.5
    assert parse_value("X", "(1, 2)", (0,)) == (1, 2)
    array = parse_value("X", "[0.1, 0.2]", np.array([1.0, 1.0], np.float32))
    assert array.dtype == np.float32 and array.tolist() == pytest.approx([0.1, 0.2])
    assert parse_value("X", "None", 3) is None and parse_value("X", "None", "a") == "None"
    with pytest.raises(ValueError, match="X: expected a value of type bool"):
        parse_value("X", "maybe", True)


def test_config_from_overrides_copies_recomputes_and_validates():
    base = TinyConfig()
    config = config_from_overrides(base, {"IMAGES_PER_GPU": "3", "GPU_COUNT": 2})
    assert (config.IMAGES_PER_GPU, config.BATCH_SIZE) == (3, 6)
    assert (base.IMAGES_PER_GPU, base.BATCH_SIZE) == (2, 2)  # the base is not changed
    assert config_from_overrides(TinyConfig).NAME == "tiny"
    assert set(COMPUTED_FIELDS) <= set(Config.computed_fields())
    with pytest.raises(ValueError, match="IMAGE_SHAPE is computed"):
        config_from_overrides(base, {"IMAGE_SHAPE": "[64, 64, 3]"})
    with pytest.raises(ValueError, match="did you mean IMAGE_MAX_DIM"):
        config_from_overrides(base, {"IMAGE_MAX_DMI": "64"})
    with pytest.raises(ValueError, match="IMAGE_MAX_DIM"):
        config_from_overrides(base, {"IMAGE_MAX_DIM": "100", "IMAGE_MIN_DIM": "100"})
