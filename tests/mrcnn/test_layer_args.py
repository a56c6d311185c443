"""mrcnn.layer_args: the graph layers' config fields are read once, by name."""
import keras
import pytest

from mrcnn.config import Config
from mrcnn.detection import DetectionLayer
from mrcnn.layer_args import config_value, float_list, kwargs_from_config, resolve_fields
from mrcnn.proposals import ProposalLayer
from mrcnn.targets import DetectionTargetLayer


class C(Config):
    NAME = "args"
    IMAGES_PER_GPU = 2
    DETECTION_MAX_INSTANCES = 7
    TRAIN_ROIS_PER_IMAGE = 12
    PRE_NMS_LIMIT = 99


def test_config_value_prefers_the_given_value_and_names_what_is_missing():
    assert config_value(C(), "IMAGES_PER_GPU", None) == 2
    assert config_value(C(), "IMAGES_PER_GPU", 5) == 5
    assert config_value(None, "IMAGES_PER_GPU", 0) == 0  # 0 is a value, not "missing"
    with pytest.raises(ValueError, match="IMAGES_PER_GPU is needed"):
        config_value(None, "IMAGES_PER_GPU", None)
    with pytest.raises(ValueError, match="has no field NO_SUCH"):
        config_value(C(), "NO_SUCH", None)
    with pytest.raises(ValueError, match="BBOX_STD_DEV must hold 4 values, got 3"):
        float_list([1, 2, 3], "BBOX_STD_DEV", 4)
    assert resolve_fields(C(), {"a": "IMAGES_PER_GPU", "b": "PRE_NMS_LIMIT"},
                          {"b": 3}) == {"a": 2, "b": 3}


@pytest.mark.parametrize("layer_class, extra", [
    (DetectionLayer, {}),
    (DetectionTargetLayer, {}),
    (ProposalLayer, {"proposal_count": 6, "nms_threshold": 0.7}),
])
def test_kwargs_from_config_builds_the_layer_matterports_config_builds(layer_class, extra):
    config = C()
    kwargs = kwargs_from_config(config, layer_class)
    assert set(kwargs) == set(layer_class.CONFIG_FIELDS)
    for kw, field in layer_class.CONFIG_FIELDS.items():
        assert kwargs[kw] is getattr(config, field)
    by_kwargs = layer_class(name="x", **extra, **kwargs).get_config()
    by_config = layer_class(config=config, name="x", **extra).get_config()
    assert by_kwargs == by_config
    assert by_kwargs["images_per_gpu"] == 2
    # Every field the layer keeps comes from CONFIG_FIELDS or the explicit arguments.
    kept = set(by_kwargs) - set(keras.layers.Layer(name="x").get_config())
    assert kept == set(layer_class.CONFIG_FIELDS) | set(extra)
