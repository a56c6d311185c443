"""search.summary_line, the line `search` prints at the end: counts with their nouns;
search_collection's argument checks."""
from __future__ import annotations

import pytest

from siamese_mrcnn import search
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


@pytest.mark.parametrize("kwargs, message", [
    # One path for the list: its characters were searched as 22 unreadable files.
    ({"files": "photos/a.jpg"}, r"files: expected a list of image paths, got one path "
                                r"'photos/a.jpg' \(list_images"),
    ({"min_score": 50}, r"min_score: expected a score in \[0, 1\], got 50"),  # kept nothing
    ({"top": -1}, r"top: expected an integer >= 0 \(0: no contact sheet\), got -1"),
])
def test_search_collection_refuses_what_would_search_for_nothing(tmp_path, kwargs, message):
    arguments = dict(model=None, reference=None, files=["a.jpg"], output=str(tmp_path / "out"))
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        search.search_collection(**arguments)
    assert not (tmp_path / "out").exists()  # told before anything is written
