"""Generated one-shot data set of synthetic shapes in COCO format (see generate.py)."""
from .generate import (  # noqa: F401
    APPEARANCES,
    DEFAULT_NUM_CATEGORIES,
    GENERATOR_VERSION,
    MAX_CATEGORIES,
    SHAPE_NAMES,
    DatasetPaths,
    category_table,
    dataset_info,
    generate_dataset,
    is_cached,
    render_image,
    split_classes,
    train_classes,
)
