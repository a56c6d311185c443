"""Matching the query pyramid against the reference: the Siamese part of the paper.

At every pyramid level P2..P6 (paper §4, the old code's ``l1_distance_graph``):

1. the k reference pyramids are averaged (``ReferenceAverage``),
2. the averaged level is global-average-pooled to one vector (``ReferencePool``),
3. the absolute difference |P_query - vector| is taken at every position
   (``L1Difference``),
4. [P_query, |difference|] are concatenated (2C channels, query first) and
5. a 1x1 conv with bias and no activation, ``fpn_distance_P{level}``, maps them
   to 3C/2 channels (384 for C = 256).

Order of operations: the old code adds the k reference pyramids one after the
other, divides by k and only then pools (average, then pool). Both are linear,
so pooling first gives the same result up to float rounding; this module keeps
the old order in ``build_matching_graph``. ``match_with_vectors`` starts from
pooled vectors, for a reference encoded once and reused over many queries.
"""
from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import ops

# Names of the five pyramid levels, in order.
LEVEL_NAMES = ("P2", "P3", "P4", "P5", "P6")


@keras.saving.register_keras_serializable(package="siamese_mrcnn")
class ReferenceAverage(keras.layers.Layer):
    """Mean of the k reference feature maps of one pyramid level.

    Input: [batch, k, h, w, C], or a list of k tensors [batch, h, w, C].
    Output: [batch, h, w, C].

    With a static k the maps are summed one after the other and divided by k,
    the old code's order (a chain of Add layers, then x / k).
    """

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            maps = list(inputs)
        else:
            num_references = inputs.shape[1]
            if num_references is None:
                return ops.mean(inputs, axis=1)
            maps = [inputs[:, i] for i in range(num_references)]
        total = maps[0]
        for feature_map in maps[1:]:
            total = total + feature_map
        return total / float(len(maps))

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return (input_shape[0],) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="siamese_mrcnn")
class ReferencePool(keras.layers.Layer):
    """Global average pooling of a reference feature map to one vector.

    Input: [batch, h, w, C].
    Output: [batch, C], or [batch, 1, 1, C] with keepdims=True.
    """

    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def call(self, inputs):
        return ops.mean(inputs, axis=[1, 2], keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0], 1, 1, input_shape[-1])
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"keepdims": self.keepdims})
        return config


@keras.saving.register_keras_serializable(package="siamese_mrcnn")
class L1Difference(keras.layers.Layer):
    """|P_query - vector| at every position of the query map.

    Inputs: [query, vector] with query [batch, H, W, C] and vector [batch, C]
    or [batch, 1, 1, C].
    Output: [batch, H, W, C].
    """

    def call(self, inputs):
        query, vector = inputs
        if len(vector.shape) == 2:
            vector = vector[:, None, None, :]  # [batch, 1, 1, C]
        return ops.abs(query - vector)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


def _level_names(count: int) -> Sequence[str]:
    if count > len(LEVEL_NAMES):
        raise ValueError("expected at most {} pyramid levels ({}), got {}".format(
            len(LEVEL_NAMES), ", ".join(LEVEL_NAMES), count))
    return LEVEL_NAMES[:count]


def _channels(query_levels: Sequence) -> int:
    channels = query_levels[0].shape[-1]
    if channels is None:
        raise ValueError("query levels: expected a static channel count, got shape {}".format(
            query_levels[0].shape))
    return int(channels)


def match_with_vectors(query_levels: Sequence, reference_vectors: Sequence,
                       feature_maps: Optional[int] = None) -> list:
    """Fuses each query level with its reference vector (steps 3 to 5).

    query_levels: [P2..P6] of the query, each [batch, H, W, C].
    reference_vectors: one pooled reference vector per level, each [batch, C]
        (or [batch, 1, 1, C]).
    feature_maps: filters of the fpn_distance convs; default 3 * C // 2.
    Returns the matched levels, each [batch, H, W, feature_maps].
    """
    if len(query_levels) != len(reference_vectors):
        raise ValueError("expected one reference vector per query level: {} query levels, "
                         "{} reference vectors".format(len(query_levels),
                                                       len(reference_vectors)))
    filters = feature_maps or 3 * _channels(query_levels) // 2
    matched = []
    for level, query, vector in zip(_level_names(len(query_levels)), query_levels,
                                    reference_vectors):
        difference = L1Difference(name="l1_difference_" + level)([query, vector])
        # [batch, H, W, 2C]: query first, as in the old code.
        fused = keras.layers.Concatenate(axis=-1, name="siamese_concat_" + level)(
            [query, difference])
        matched.append(keras.layers.Conv2D(filters, (1, 1), name="fpn_distance_" + level)(
            fused))  # [batch, H, W, filters]
    return matched


def pool_references(reference_levels: Sequence) -> list:
    """Reference pyramid(s) -> one pooled vector per level (steps 1 and 2).

    reference_levels: one entry per level: [batch, k, h, w, C] (k stacked
        references), a list of k tensors [batch, h, w, C], or one tensor
        [batch, h, w, C] (a single reference).
    Returns one vector [batch, C] per level.
    """
    vectors = []
    for level, reference in zip(_level_names(len(reference_levels)), reference_levels):
        if isinstance(reference, (list, tuple)) or len(reference.shape) == 5:
            reference = ReferenceAverage(name="reference_average_" + level)(reference)
        vectors.append(ReferencePool(name="reference_pool_" + level)(reference))
    return vectors


def build_matching_graph(query_levels: Sequence, reference_levels: Sequence,
                         feature_maps: Optional[int] = None) -> list:
    """The full matching: average and pool the references, fuse with the query.

    query_levels: [P2, P3, P4, P5, P6] of the query, each [batch, H, W, C].
    reference_levels: see pool_references().
    feature_maps: filters of the fpn_distance_P* convs; default 3 * C // 2.
    Returns [P2, P3, P4, P5, P6] matched, each [batch, H, W, 3C/2].
    """
    if len(query_levels) != len(reference_levels):
        raise ValueError("expected as many reference levels as query levels: {} query "
                         "levels, {} reference levels".format(len(query_levels),
                                                              len(reference_levels)))
    return match_with_vectors(query_levels, pool_references(reference_levels),
                              feature_maps=feature_maps)
