"""Backbone pre-training (paper §5.1): the ResNet classifier on ImageNet restricted to
the classes that do not overlap COCO (687) or Pascal VOC (771), or all of ImageNet-1k.

Data: an ImageNet-layout folder, ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``
(any image format Pillow or TensorFlow decodes). The classes are the wnids of the list
that have a ``train/`` folder; the others are reported. Training is the standard recipe
(random-resized crops and horizontal flips; SGD with momentum 0.9, learning rate
0.1 x batch / 256 divided by 10 at the decay epochs, weight decay 1e-4), on images
molded as the detector molds them (RGB minus MEAN_PIXEL), with the backbone's
BatchNorm layers trained.

Each epoch ends with a checkpoint (``pretrain_{classes}_{epoch:04d}.h5`` in the run
folder, written atomically); a rerun resumes after the last one (the weights; the
optimizer's momentum starts again, as in Matterport's resume). The result is
``imagenet_{687|771|1k}.h5``: the backbone's layers only, in the flat Keras 2 layout
that ``SiameseMaskRCNN.load_imagenet_weights("imagenet-687")`` reads.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import numbers
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from mrcnn.config import RESNET_ARCHITECTURES, is_int

logger = logging.getLogger(__name__)

CLASS_LISTS = ("imagenet-687", "imagenet-771", "imagenet-1k")
LIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
MEAN_PIXEL = np.array([123.7, 116.8, 103.9], dtype=np.float32)  # the detector's
MIN_IMAGE_SIZE = 32  # the ResNet's stride: C5 of a smaller crop is empty


def class_list(name: str, train_dir: str) -> list[str]:
    """The wnids of ``name``: the shipped 687 / 771 lists, or every folder of train/ for
    imagenet-1k. ValueError for another name."""
    if name not in CLASS_LISTS:
        raise ValueError(f"--classes: expected one of {', '.join(CLASS_LISTS)}, got {name!r}")
    if name == "imagenet-1k":
        return sorted(d for d in os.listdir(train_dir)
                      if os.path.isdir(os.path.join(train_dir, d)))
    with open(os.path.join(LIST_DIR, f"{name}.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@dataclass
class ImageFolder:
    """The files and labels of one subset; ``wnids[label]`` names a label."""

    files: list
    labels: list
    wnids: list


def list_subset(root: str, subset: str, wnids: Sequence[str]) -> ImageFolder:
    """The images of root/subset/<wnid>/ for the given wnids, sorted; ValueError when
    none of them has images."""
    folder = os.path.join(root, subset)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not found (expected an ImageNet-layout folder with "
                         f"{subset}/<wnid>/*.JPEG)")
    files, labels, present = [], [], []
    for wnid in wnids:
        images = sorted(f for f in glob.glob(os.path.join(folder, wnid, "*"))
                        if f.lower().endswith(IMAGE_SUFFIXES))
        if images:
            present.append(wnid)
            files += images
            labels += [len(present) - 1] * len(images)
    if not files:
        raise ValueError(f"{folder}: no images of the {len(wnids)} classes of the list "
                         "(expected <wnid>/*.JPEG folders)")
    return ImageFolder(files, labels, present)


def check_classes(train: ImageFolder, val: Optional[ImageFolder], wnids: Sequence[str],
                  name: str) -> Optional[ImageFolder]:
    """Warns about list classes without training images; val relabelled to train's
    classes (its other classes dropped)."""
    missing = len(wnids) - len(train.wnids)
    if missing:
        logger.warning("%s: %d of its %d classes have no train/ folder; training on %d",
                       name, missing, len(wnids), len(train.wnids))
    if val is None:
        return None
    index = {w: i for i, w in enumerate(train.wnids)}
    keep = [(f, index[val.wnids[label]]) for f, label in zip(val.files, val.labels)
            if val.wnids[label] in index]
    return ImageFolder([f for f, _ in keep], [label for _, label in keep], train.wnids)


def dataset(folder: ImageFolder, image_size: int, batch_size: int, training: bool,
            seed: int = 0, shard: tuple[int, int] = (0, 1)):
    """A tf.data pipeline of (molded image [B, S, S, 3], label [B]).

    shard (index, count): this worker's files, every count-th of each (seeded, the same
    on every worker) shuffled pass; the stream then repeats endlessly.
    """
    import tensorflow as tf

    def load(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                                   expand_animations=False)
        image = tf.cast(image, tf.float32)
        if training:  # random-resized crop (8%..100% of the area, 3/4..4/3) and a flip
            begin, size, _ = tf.image.sample_distorted_bounding_box(
                tf.shape(image), tf.zeros([0, 0, 4]), min_object_covered=0.0,
                aspect_ratio_range=(0.75, 1.33), area_range=(0.08, 1.0),
                max_attempts=10, use_image_if_no_bounding_boxes=True)
            image = tf.slice(image, begin, size)
            image = tf.image.resize(image, (image_size, image_size))
            image = tf.image.random_flip_left_right(image)
        else:  # resize the short side to 8/7 of the size, then the center crop
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            scale = image_size * 8.0 / 7.0 / tf.reduce_min(shape)
            image = tf.image.resize(image, tf.cast(tf.round(shape * scale), tf.int32))
            image = tf.image.resize_with_crop_or_pad(image, image_size, image_size)
        return image - MEAN_PIXEL, label

    data = tf.data.Dataset.from_tensor_slices((folder.files, folder.labels))
    if training:
        data = data.shuffle(len(folder.files), seed=seed, reshuffle_each_iteration=True)
    if shard[1] > 1:
        data = data.repeat().shard(shard[1], shard[0])
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def distributed(strategy, folder: ImageFolder, image_size: int, batch_size: int,
                training: bool, seed: int):
    """Each worker's shard of ``dataset``, batched per replica (global batch_size)."""
    def dataset_fn(context):
        return dataset(folder, image_size, context.get_per_replica_batch_size(batch_size),
                       training, seed, (context.input_pipeline_id,
                                        context.num_input_pipelines))

    return strategy.distribute_datasets_from_function(dataset_fn)


def build_classifier(architecture: str, num_classes: int, image_size: int):
    """(classifier, backbone): the ResNet (BatchNorm trained) with global average
    pooling and a softmax layer ``fc{num_classes}``; backbone maps the image to C5 and
    shares the classifier's layers. The classifier trains multi-worker too."""
    import keras

    from mrcnn.backbone import resnet_graph
    from mrcnn.h5_model import GraphModel
    from mrcnn.multi_worker import MultiWorkerSteps

    class Classifier(MultiWorkerSteps, GraphModel):
        pass

    image = keras.Input(shape=(image_size, image_size, 3), name="input_image")
    *_, c5 = resnet_graph(image, architecture, stage5=True, train_bn=True)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(c5)
    probs = keras.layers.Dense(num_classes, activation="softmax",
                               name=f"fc{num_classes}")(pooled)
    return (Classifier(image, probs, name="resnet_classifier"),
            GraphModel(image, c5, name="resnet_model"))


def learning_rate(epoch: int, base: float, decay_epochs: Sequence[int]) -> float:
    """base / 10 ** (number of decay epochs passed); epoch counts from 0."""
    return base / 10 ** sum(1 for d in decay_epochs if epoch >= d)


#: The file of one epoch (AtomicCheckpoint formats {epoch:04d}).
CHECKPOINT_NAME = "pretrain_{classes}_{epoch:04d}.h5"


def checkpoint_name(classes: str, epoch: int) -> str:
    return CHECKPOINT_NAME.format(classes=classes, epoch=epoch)


def latest_checkpoint(run_dir: str, classes: str) -> tuple[Optional[str], int]:
    """(path, epoch) of the run's last checkpoint, or (None, 0)."""
    from mrcnn.checkpoints import epoch_in_name

    best, epoch = None, 0
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else []:
        found = epoch_in_name(name)
        if found and name == checkpoint_name(classes, found) and found > epoch:
            best, epoch = os.path.join(run_dir, name), found
    return best, epoch


def check_settings(epochs: int, batch_size: int, image_size: int, architecture: str,
                   base_lr: float, decay_epochs: Sequence[int], weight_decay: float,
                   steps_per_epoch: Optional[int], seed: int) -> None:
    """ValueError naming the first of pretrain's settings that cannot train, before any
    file is read or written (a negative seed used to fail only after classes.txt was
    written, and a negative learning rate trained)."""
    for name, value, low, why in (
            ("epochs", epochs, 0, ""), ("batch_size", batch_size, 1, ""),
            ("image_size", image_size, MIN_IMAGE_SIZE, " (the ResNet's stride)"),
            ("seed", seed, 0, ""), ("steps_per_epoch", steps_per_epoch, 1, "")):
        if name == "steps_per_epoch" and value is None:  # None: the images / the batch
            continue
        if not is_int(value) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}{why}, got {value!r}")
    if seed >= 2 ** 32:  # keras.utils.set_random_seed's bound
        raise ValueError(f"seed: expected an integer < 2**32, got {seed!r}")
    if not all(is_int(e) and e >= 1 for e in decay_epochs):
        raise ValueError(f"decay_epochs: expected integers >= 1, got {list(decay_epochs)!r}")
    if not (isinstance(base_lr, numbers.Real) and np.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr: expected a number > 0, got {base_lr!r}")
    if not (isinstance(weight_decay, numbers.Real) and np.isfinite(weight_decay)
            and weight_decay >= 0):
        raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
    if architecture not in RESNET_ARCHITECTURES:
        raise ValueError(f"architecture: expected one of {sorted(RESNET_ARCHITECTURES)}, "
                         f"got {architecture!r}")


def pretrain(data_dir: str, classes: str, run_dir: str, output: str, epochs: int = 90,
             batch_size: int = 256, image_size: int = 224, architecture: str = "resnet50",
             base_lr: float = 0.1, decay_epochs: Sequence[int] = (30, 60, 80),
             weight_decay: float = 1e-4, steps_per_epoch: Optional[int] = None,
             verbose: int = 1, seed: int = 0) -> dict:
    """Trains (or resumes) up to ``epochs`` and writes the backbone to ``output``.
    Returns {"history": {metric: [per epoch]}, "initial_epoch", "classes": wnids,
    "output"}. ValueError for a bad folder or class list."""
    check_settings(epochs=epochs, batch_size=batch_size, image_size=image_size,
                   architecture=architecture, base_lr=base_lr, decay_epochs=decay_epochs,
                   weight_decay=weight_decay, steps_per_epoch=steps_per_epoch, seed=seed)
    import keras

    from mrcnn import multi_worker
    from mrcnn.training import AtomicCheckpoint
    from mrcnn.weights import save_weights

    train_dir = os.path.join(data_dir, "train")
    wnids = class_list(classes, train_dir) if os.path.isdir(train_dir) else []
    train = list_subset(data_dir, "train", wnids)
    val_dir = os.path.join(data_dir, "val")
    val = list_subset(data_dir, "val", wnids) if os.path.isdir(val_dir) else None
    val = check_classes(train, val, wnids, classes)
    if len(train.wnids) < 2:
        raise ValueError(f"{train_dir}: images of {len(train.wnids)} class(es) of "
                         f"{classes}; a classifier needs at least 2")
    cluster = multi_worker.read_tf_config()
    # TensorFlow wants the strategy before anything else runs on its runtime.
    strategy = multi_worker.get_strategy() if cluster is not None else None
    chief = cluster is None or cluster.is_chief
    if chief:  # the other workers of a multi-worker run write nothing
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "classes.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(train.wnids) + "\n")  # label i is line i
    keras.utils.set_random_seed(seed)

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
        model, backbone = build_classifier(architecture, len(train.wnids), image_size)
    checkpoint, initial_epoch = latest_checkpoint(run_dir, classes) if chief else (None, 0)
    if checkpoint:
        logger.info("Resuming from %s (epoch %d)", checkpoint, initial_epoch)
        model.load_weights(checkpoint)
    if strategy is not None:  # the chief's weights and epoch on every worker
        initial_epoch = multi_worker.sync_from_chief(
            strategy, model, {"epoch": initial_epoch})["epoch"]
    history: dict = {}
    if initial_epoch < epochs:
        rate = base_lr * batch_size / 256
        with scope():
            optimizer = keras.optimizers.SGD(rate, momentum=0.9, weight_decay=weight_decay)
            # The recipe decays the convolution and dense kernels only.
            optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
        callbacks = [keras.callbacks.LearningRateScheduler(
            lambda epoch: learning_rate(epoch, rate, decay_epochs))]
        if chief:
            callbacks.append(AtomicCheckpoint(
                os.path.join(run_dir, CHECKPOINT_NAME.replace("{classes}", classes))))
        with_val = bool(val and val.files)
        if strategy is None:
            train_data = dataset(train, image_size, batch_size, True, seed)
            val_data = dataset(val, image_size, batch_size, False) if with_val else None
            val_steps = None
            failures = contextlib.nullcontext()
        else:  # endless per-worker shards: fit needs the step counts
            if batch_size % strategy.num_replicas_in_sync:
                raise ValueError(f"--batch {batch_size} must be a multiple of the "
                                 f"{strategy.num_replicas_in_sync} replicas")
            steps_per_epoch = steps_per_epoch or max(1, len(train.files) // batch_size)
            train_data = distributed(strategy, train, image_size, batch_size, True, seed)
            val_steps = max(1, len(val.files) // batch_size) if with_val else None
            val_data = (distributed(strategy, val, image_size, batch_size, False, seed)
                        if with_val else None)
            failures = multi_worker.worker_failures(cluster)
        with failures:
            fit = model.fit(train_data, validation_data=val_data, validation_steps=val_steps,
                            epochs=epochs, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            verbose=verbose, shuffle=False)  # the pipeline shuffles
        history = {k: [float(v) for v in values] for k, values in fit.history.items()}
    multi_worker.leave_together(cluster, "pretrain_end")  # no one leaves a peer reading
    if chief:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        save_weights(backbone, output)  # the backbone's layers only, flat; atomic
    return {"history": history, "initial_epoch": initial_epoch, "classes": train.wnids,
            "output": output}


__all__ = ["CLASS_LISTS", "class_list", "ImageFolder", "list_subset", "check_classes",
           "dataset", "build_classifier", "learning_rate", "latest_checkpoint",
           "pretrain", "checkpoint_name", "CHECKPOINT_NAME", "MEAN_PIXEL"]
