#!/usr/bin/env python
"""Siamese Mask R-CNN command line: train | evaluate | detect.

    python samples/coco/train_siamese.py train --dataset DIR --split 1 --model imagenet-687
    python samples/coco/train_siamese.py evaluate --dataset DIR --model last --runs 5
    python samples/coco/train_siamese.py detect --model W.h5 --image Q.jpg --reference R.jpg \
        --output out.png

`--help` on each subcommand lists every option. The code lives in siamese_mrcnn.cli.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))

from siamese_mrcnn.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
