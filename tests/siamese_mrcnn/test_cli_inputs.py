"""cli_inputs.init_weights: what --model does to a model, on stand-ins (no model built)."""
from __future__ import annotations

import logging

import pytest

from siamese_mrcnn.cli_inputs import CLIError, init_weights

UNTRAINED = "the heads are untrained"


class StandIn:
    """The part of SiameseMaskRCNN that init_weights uses, recording the calls."""

    CHECKPOINTS = type("Checkpoints", (), {"is_checkpoint": staticmethod(lambda p: False)})

    def __init__(self, mode: str):
        self.mode = mode
        self.calls = []

    def get_imagenet_weights(self, spec):
        return f"/checkpoints/{spec}.h5"

    def load_imagenet_weights(self, pretraining, weights_path):
        self.calls.append(("imagenet", pretraining, weights_path))

    def load_weights(self, path, by_name):
        self.calls.append(("weights", path, by_name))


@pytest.mark.parametrize("spec", ["none", "imagenet-687", ""])
def test_inference_without_trained_weights_warns(spec, caplog):
    model = StandIn("inference")
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.cli"):
        loaded = init_weights(model, spec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"--model {spec or 'none'}: {UNTRAINED}")
    assert "PATH.h5 or last" in warnings[0]
    if spec.startswith("imagenet"):
        assert loaded == "/checkpoints/imagenet-687.h5"
        assert model.calls == [("imagenet", spec, loaded)]
    else:
        assert loaded == "none" and model.calls == []


def test_the_warning_names_the_option(caplog):
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.cli"):
        init_weights(StandIn("inference"), "none", option="--models")
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["--models none"]


@pytest.mark.parametrize("spec", ["none", "imagenet-771"])
def test_training_from_untrained_weights_is_quiet(spec, caplog):
    # Training starts from none / ImageNet by design: nothing to warn of.
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.cli"):
        init_weights(StandIn("training"), spec)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_weights_file_is_loaded_by_name_without_a_warning(tmp_path, caplog):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"")  # only its existence is checked before the (stand-in) load
    model = StandIn("inference")
    with caplog.at_level(logging.WARNING, logger="siamese_mrcnn.cli"):
        assert init_weights(model, str(weights)) == str(weights)
    assert model.calls == [("weights", str(weights), True)]
    assert caplog.records == []


def test_a_missing_file_is_a_cli_error_before_any_load(tmp_path):
    model = StandIn("inference")
    with pytest.raises(CLIError, match="weights file not found: .*nope.h5"):
        init_weights(model, str(tmp_path / "nope.h5"))
    assert model.calls == []
