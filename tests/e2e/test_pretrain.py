"""samples/imagenet/pretrain.py on a generated ImageNet-layout folder: 3 classes of the
687 list and one that is not in it; the loss falls, a rerun resumes, and the backbone
file fills the Siamese model's ResNet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samples.imagenet import pretrain
from siamese_mrcnn.pretraining import (LIST_DIR, check_settings, class_list, learning_rate,
                                        list_subset)
from siamese_mrcnn.pretraining import pretrain as pretrain_model

LISTED = Path(LIST_DIR, "imagenet-687.txt").read_text().split()[:3]
UNLISTED = "n02084071"  # dog: in ImageNet, overlaps COCO, so not in the 687 list
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (200, 200, 0)]


def make_imagenet(root: Path, per_class: int, seed: int = 0) -> None:
    """train/ and val/ with one colour per class (the classes are learnable), noise on top."""
    rng = np.random.default_rng(seed)
    for subset, count in (("train", per_class), ("val", 3)):
        for wnid, colour in zip(LISTED + [UNLISTED], COLOURS):
            folder = root / subset / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                image = np.clip(rng.normal(colour, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")


@pytest.mark.parametrize("setting, value, message", [
    ("epochs", -1, "epochs: expected an integer >= 0, got -1"),
    ("batch_size", 0, "batch_size: expected an integer >= 1, got 0"),
    ("batch_size", 2.0, "batch_size: expected an integer >= 1, got 2.0"),
    ("image_size", 31, "image_size: expected an integer >= 32 (the ResNet's stride), got 31"),
    ("seed", 2 ** 32, "seed: expected an integer < 2**32, got 4294967296"),
    ("steps_per_epoch", True, "steps_per_epoch: expected an integer >= 1, got True"),
    ("base_lr", 0.0, "base_lr: expected a number > 0, got 0.0"),
    ("base_lr", np.float32(-1), "base_lr: expected a number > 0, got np.float32(-1.0)"),
    ("weight_decay", float("inf"), "weight_decay: expected a number >= 0, got inf"),
    ("architecture", "resnet18", "architecture: expected one of"),
])
def test_pretrain_names_a_bad_setting_before_it_reads_or_writes(tmp_path, setting, value,
                                                               message):
    with pytest.raises(ValueError) as caught:
        pretrain_model(str(tmp_path / "missing"), "imagenet-687", str(tmp_path / "run"),
                       str(tmp_path / "b.h5"), **{setting: value})
    assert str(caught.value).startswith(message), caught.value
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    check_settings(epochs=0, batch_size=1, image_size=32, architecture="resnet_tiny",
                   base_lr=1e-3, decay_epochs=(), weight_decay=0, steps_per_epoch=None,
                   seed=2 ** 32 - 1)  # the bounds themselves pass


def test_class_lists_and_learning_rate():
    assert len(class_list("imagenet-687", ".")) == 687
    assert len(class_list("imagenet-771", ".")) == 771
    assert UNLISTED not in class_list("imagenet-687", ".")
    assert [learning_rate(e, 0.1, (2, 4)) for e in range(5)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    with pytest.raises(ValueError, match="expected one of imagenet-687"):
        class_list("imagenet-22k", ".")


def test_pretrain_learns_resumes_and_fills_the_backbone(tmp_path, capsys):
    make_imagenet(tmp_path / "data", per_class=8)
    listed = list_subset(str(tmp_path / "data"), "train", class_list("imagenet-687", "."))
    assert listed.wnids == sorted(LISTED, key=LISTED.index) and len(listed.files) == 24

    common = ["--data", str(tmp_path / "data"), "--classes", "imagenet-687", "--batch", "6",
              "--image-size", "32", "--backbone", "resnet_tiny", "--lr", "0.4",
              "--decay-epochs", "100", "--logs", str(tmp_path / "logs"), "--output",
              str(tmp_path / "imagenet_687.h5")]
    assert pretrain.main([*common, "--epochs", "4"]) == 0
    assert "3 classes, epochs 1..4" in capsys.readouterr().out
    run = tmp_path / "logs" / "pretrain_imagenet-687"
    assert sorted(p.name for p in run.glob("*.h5")) == [
        f"pretrain_imagenet-687_{e:04d}.h5" for e in (1, 2, 3, 4)]
    assert (run / "classes.txt").read_text().split() == LISTED

    # Resumed: only epoch 5 runs, from the weights of epoch 4.
    from siamese_mrcnn.pretraining import pretrain as pretrain_fn

    result = pretrain_fn(str(tmp_path / "data"), "imagenet-687", str(run),
                         str(tmp_path / "imagenet_687.h5"), epochs=5, batch_size=6,
                         image_size=32, architecture="resnet_tiny", base_lr=0.4,
                         decay_epochs=(100,), verbose=0)
    assert result["initial_epoch"] == 4 and len(result["history"]["loss"]) == 1
    assert (run / "pretrain_imagenet-687_0005.h5").is_file()
    assert pretrain.main([*common, "--epochs", "5"]) == 0
    assert "nothing to train (epoch 5 reached)" in capsys.readouterr().out

    # The backbone file fills every array of the Siamese model's ResNet.
    from mrcnn import weights as weights_io
    from siamese_mrcnn.config import preset
    from siamese_mrcnn.model import SiameseMaskRCNN
    from siamese_mrcnn.pretraining import build_classifier

    layout = weights_io.read_layout(str(tmp_path / "imagenet_687.h5"))
    assert not any(name.startswith("fc") for name in layout)  # the backbone only
    model = SiameseMaskRCNN("inference", preset("tiny_eval"), str(tmp_path / "m"))
    report = model.load_imagenet_weights(weights_path=str(tmp_path / "imagenet_687.h5"))
    resnet = model.keras_model.get_layer("resnet_model")
    assert len(report.loaded) == len(resnet.weights) > 100
    assert not report.mismatched and not report.unused_in_file
    classifier, backbone = build_classifier("resnet_tiny", 3, 32)
    classifier.load_weights(str(run / "pretrain_imagenet-687_0005.h5"))
    trained = weights_io.weight_map(backbone)
    loaded = weights_io.weight_map(resnet)
    assert sorted(loaded) == sorted(trained)
    for key, variable in loaded.items():
        np.testing.assert_array_equal(np.asarray(variable), np.asarray(trained[key]), key)


def test_the_loss_falls(tmp_path):
    from siamese_mrcnn.pretraining import pretrain as pretrain_fn

    make_imagenet(tmp_path / "data", per_class=8, seed=1)
    result = pretrain_fn(str(tmp_path / "data"), "imagenet-687", str(tmp_path / "run"),
                         str(tmp_path / "b.h5"), epochs=6, batch_size=6, image_size=32,
                         architecture="resnet_tiny", base_lr=0.4, decay_epochs=(100,),
                         verbose=0)
    loss = result["history"]["loss"]
    assert loss[-1] < 0.7 * loss[0], loss


@pytest.mark.parametrize("args, words", [
    (["--data", "{missing}"], "train: not found"),
    (["--data", "{empty}"], "no images of the 687 classes"),
    (["--data", "{data}", "--decay-epochs", "a,b"], "--decay-epochs"),
    (["--data", "{data}", "--image-size", "8"],
     "--image-size: expected an integer >= 32 (the ResNet's stride), got 8"),
    # Each was accepted (a negative rate trained) or failed late, under "--data:".
    (["--data", "{data}", "--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
    (["--data", "{data}", "--lr", "-1"], "--lr: expected a number > 0, got -1.0"),
    (["--data", "{data}", "--lr", "nan"], "--lr: expected a number > 0, got nan"),
    (["--data", "{data}", "--weight-decay", "-0.1"],
     "--weight-decay: expected a number >= 0, got -0.1"),
    (["--data", "{data}", "--steps-per-epoch", "0"],
     "--steps-per-epoch: expected an integer >= 1, got 0"),
    (["--data", "{data}", "--backbone", "resnet7"],
     "--backbone: expected one of ['resnet101', 'resnet50', 'resnet_tiny'], got 'resnet7'"),
    (["--data", "{data}", "--decay-epochs", "0,3"],
     "--decay-epochs: expected integers >= 1, got [0, 3]"),
    # Output paths, checked before the data are read.
    (["--data", "{data}", "--output", "{data}"], "--output {data}: expected a file, found a folder"),
    (["--data", "{data}", "--output", "{file}/b.h5"],
     "--output {file}/b.h5: {file} is a file, not a folder"),
    (["--data", "{data}", "--logs", "{file}"], "--logs {file}: expected a folder, found a file"),
])
def test_errors_are_one_line(tmp_path, args, words, capsys):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "a_file").write_text("x")
    make_imagenet(tmp_path / "data", per_class=1)
    names = {"missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty"),
             "data": str(tmp_path / "data"), "file": str(tmp_path / "a_file")}
    assert pretrain.main(["--logs", str(tmp_path / "logs")]
                         + [a.format(**names) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words.format(**names) in err[0], err
    assert (tmp_path / "a_file").read_text() == "x"
    assert not (tmp_path / "logs").exists()


def test_two_workers_pretrain_and_the_chief_writes_the_backbone(tmp_path):
    """pretrain.py with TF_CONFIG on 2 processes: both finish the epochs with the same
    logged losses; only the chief writes checkpoints and the backbone file, which
    loads; a rerun on both resumes from the chief's last checkpoint."""
    from mrcnn import weights as weights_io
    from tests.helpers.processes import ROOT, run_workers

    make_imagenet(tmp_path / "data", per_class=8)
    script = ROOT / "samples" / "imagenet" / "pretrain.py"

    def run_both(epochs):
        done = run_workers([[script, "--data", tmp_path / "data", "--batch", 6,
                             "--image-size", 32, "--backbone", "resnet_tiny", "--lr", 0.4,
                             "--decay-epochs", 100, "--epochs", epochs, "--logs",
                             tmp_path / f"logs{index}", "--output",
                             tmp_path / f"out{index}" / "imagenet_687.h5"]
                            for index in range(2)])
        for proc in done:
            assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return [proc.stdout for proc in done]

    first = run_both(2)
    assert all("3 classes, epochs 1..2" in out for out in first)
    run = tmp_path / "logs0" / "pretrain_imagenet-687"
    assert sorted(p.name for p in run.glob("*.h5")) == [
        "pretrain_imagenet-687_0001.h5", "pretrain_imagenet-687_0002.h5"]
    assert not (tmp_path / "logs1").exists() and not (tmp_path / "out1").exists()
    layout = weights_io.read_layout(str(tmp_path / "out0" / "imagenet_687.h5"))
    assert "conv1" in layout and not any(name.startswith("fc") for name in layout)

    resumed = run_both(3)
    assert "3 classes, epochs 3..3" in resumed[0]  # the chief resumed from epoch 2
    assert "Epoch 3/3" in resumed[1] and "Epoch 1/3" not in resumed[1]
    assert (run / "pretrain_imagenet-687_0003.h5").is_file()
