"""``python -m siamese_mrcnn train|evaluate|detect|search|export|report ...``: the
command line of samples/coco/train_siamese.py, for an installed package (a wheel does
not carry samples/). The same options, messages and exit statuses (0; 1 an I/O error;
2 a user error, one ``error: ...`` line)."""
import os
import sys

# Before TensorFlow is first imported, as train_siamese.py does: its C++ start-up logs
# are not for the user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from siamese_mrcnn.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="python -m siamese_mrcnn"))
