#!/usr/bin/env python
"""Backbone pre-training (paper §5.1): ResNet-50 on ImageNet without the classes that
overlap COCO (687) or Pascal VOC (771), or on all of ImageNet-1k.

    python samples/imagenet/pretrain.py --data /data/imagenet --classes imagenet-687

reads DATA/train/<wnid>/*.JPEG (and DATA/val/<wnid>/*.JPEG when present), trains with
the standard recipe, checkpoints every epoch under --logs (a rerun resumes), and writes
checkpoints/imagenet_687.h5, which SiameseMaskRCNN.load_imagenet_weights("imagenet-687")
and `train_siamese.py train --model imagenet-687` read. The code lives in
siamese_mrcnn.pretraining.
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))

from mrcnn.cli_support import CliError, check_output, run_command, user_input  # noqa: E402


def main(argv=None) -> int:
    from siamese_mrcnn.pretraining import CLASS_LISTS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="ImageNet-layout folder (train/, val/)")
    parser.add_argument("--classes", default="imagenet-687", choices=CLASS_LISTS,
                        help="class list (default imagenet-687)")
    parser.add_argument("--epochs", type=int, default=90, help="train up to this epoch (90)")
    parser.add_argument("--batch", type=int, default=256, help="images per step (256)")
    parser.add_argument("--lr", type=float, default=0.1,
                        help="learning rate per 256 images (0.1; scaled by --batch/256)")
    parser.add_argument("--decay-epochs", default="30,60,80",
                        help="epochs where the learning rate is divided by 10 (30,60,80)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="(1e-4)")
    parser.add_argument("--image-size", type=int, default=224, help="crop size (224)")
    parser.add_argument("--backbone", default="resnet50",
                        help="resnet50 (the paper's), resnet101 or resnet_tiny (tests)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="steps per epoch (default: the training images / --batch)")
    parser.add_argument("--logs", default="logs",
                        help="checkpoints go to LOGS/pretrain_{classes}/ (default logs)")
    parser.add_argument("--output", default=None,
                        help="the backbone file (default checkpoints/imagenet_{687|771|1k}.h5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run(args), prefix="error",
                       interrupted="interrupted: the last finished epoch's checkpoint is kept")


# pretrain's settings and the flags that set them (its errors name the setting).
FLAGS = {"epochs": "--epochs", "batch_size": "--batch", "image_size": "--image-size",
         "architecture": "--backbone", "base_lr": "--lr", "decay_epochs": "--decay-epochs",
         "weight_decay": "--weight-decay", "steps_per_epoch": "--steps-per-epoch",
         "seed": "--seed"}


def run(args) -> dict:
    from siamese_mrcnn.pretraining import check_settings, pretrain

    with user_input("--decay-epochs"):
        decay = [int(e) for e in args.decay_epochs.split(",") if e.strip()]
    settings = dict(epochs=args.epochs, batch_size=args.batch, image_size=args.image_size,
                    architecture=args.backbone, base_lr=args.lr, decay_epochs=decay,
                    weight_decay=args.weight_decay, steps_per_epoch=args.steps_per_epoch,
                    seed=args.seed)
    if args.epochs < 1:
        raise CliError(f"--epochs: expected an integer >= 1, got {args.epochs}")
    try:  # before any file is read or written
        check_settings(**settings)
    except ValueError as error:
        name, _, problem = str(error).partition(": ")
        raise CliError(f"{FLAGS.get(name, name)}: {problem}") from error
    output = args.output or os.path.join(
        "checkpoints", f"imagenet_{args.classes.split('-')[1]}.h5")
    check_output(output, "--output", "file")
    check_output(args.logs, "--logs")
    with user_input("--data"):
        result = pretrain(args.data, args.classes, os.path.join(args.logs,
                                                                f"pretrain_{args.classes}"),
                          output, **settings)
    trained = (f"epochs {result['initial_epoch'] + 1}..{args.epochs}"
               if result["initial_epoch"] < args.epochs
               else f"nothing to train (epoch {result['initial_epoch']} reached)")
    print(f"{len(result['classes'])} classes, {trained}; backbone: {result['output']}")
    return result


if __name__ == "__main__":
    sys.exit(main())
