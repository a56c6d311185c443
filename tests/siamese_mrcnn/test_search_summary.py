"""search.summary_line, the line `search` prints at the end: counts with their nouns."""
from __future__ import annotations

from siamese_mrcnn.search import summary_line


def _summary(**counts) -> dict:
    return {"images": 11, "searched_now": 9, "from_earlier_runs": 0, "skipped": 2,
            "with_detections": 4, "seconds": 3.0, "images_per_s": 3.0,
            "results": "out/results.jsonl", "contact_sheet": "out/contact_sheet.png",
            **counts}


def test_counts_and_paths():
    assert summary_line(_summary()) == (
        "searched 11 files: 9 images now, 0 from an earlier run, 2 skipped (unreadable); "
        "4 with detections; 3.0 s (3.00 images/s); results: out/results.jsonl; "
        "contact sheet: out/contact_sheet.png")


def test_one_file_and_one_image_are_singular():
    line = summary_line(_summary(images=1, searched_now=1, skipped=0, with_detections=0,
                                 contact_sheet=None))
    assert line.startswith("searched 1 file: 1 image now, 0 from an earlier run, "), line
    assert line.endswith("contact sheet: none (no detections)"), line
    line = summary_line(_summary(images=0, searched_now=0, skipped=0, images_per_s=0.0))
    assert line.startswith("searched 0 files: 0 images now, "), line
