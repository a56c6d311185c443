"""Mask R-CNN on TensorFlow 2 / Keras 3 with Matterport's public API."""
__version__ = "0.1.0"
