"""The old ``lib/utils.py`` public names, re-exported from their new modules.

Data: get_one_target, siamese_data_generator (siamese_mrcnn.data);
IndexedCocoDataset (siamese_mrcnn.coco); evaluation: customCOCOeval,
evaluate_dataset, evaluate_coco (siamese_mrcnn.evaluation); pictures:
display_results, display_grid (siamese_mrcnn.visualize).
"""
from siamese_mrcnn.coco import IndexedCocoDataset
from siamese_mrcnn.data import get_one_target, siamese_data_generator
from siamese_mrcnn.evaluation import customCOCOeval, evaluate_coco, evaluate_dataset
from siamese_mrcnn.visualize import display_grid, display_results

__all__ = ["get_one_target", "siamese_data_generator", "IndexedCocoDataset", "customCOCOeval",
           "evaluate_dataset", "evaluate_coco", "display_results", "display_grid"]
