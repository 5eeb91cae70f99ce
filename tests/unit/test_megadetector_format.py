"""The MegaDetector batch output format: the one definition of categories, ids, rounding and failures."""

from __future__ import annotations

import json

from hugin_tables import Shots

from gpu_ops import megadetector_format as md
from gpu_ops.schemas import DETECTION_CATEGORIES


def test_the_format_categories_are_the_stage1_categories():
    assert md.CATEGORIES == {"1": "animal", "2": "person", "3": "vehicle"}
    assert set(md.CATEGORIES.values()) == set(DETECTION_CATEGORIES)
    assert md.CLASS_CATEGORIES == {0: "animal", 1: "person", 2: "vehicle"}  # a model's 0-based class index
    assert md.detection_id("ab" * 32, 30, 2) == "abababababababab-30-2"


def test_rounding_failures_and_the_info_block(tmp_path):
    s = Shots("cam-r")
    s.shot(0, ("elk", 0.123456))
    s.detections[-1].update(bbox_x=0.123456, bbox_w=0.333333)
    s.shot(1, status="failed")  # failed at ingest without a reason
    media, detections, labels = s.tables()
    doc = md.to_batch_output(media.to_pylist(), detections.to_pylist(), labels.to_pylist(), camera_id="cam-r",
                             info={"detector": "md_v5a.0.0.pt", "format_version": "1.0"})
    (elk,) = doc["images"][0]["detections"]
    assert elk["conf"] == 0.123 and elk["bbox"][0] == 0.1235 and elk["bbox"][2] == 0.3333
    assert elk["classifications"] == [["0", 0.9]]
    assert doc["images"][1] == {"file": "IMG_0001.JPG", "failure": md.FAILURE_IMAGE_ACCESS, "detections": None}
    # The given info wins, but the file is written in this module's format version.
    assert doc["info"]["detector"] == "md_v5a.0.0.pt" and doc["info"]["format_version"] == md.FORMAT_VERSION
    assert doc["info"]["classifier"] == "test" and doc["classification_category_descriptions"] == {"0": ";mammalia;;;sci;elk;elk"}

    path = md.write_batch_output(doc, tmp_path / "out" / "cam-r.json")
    assert json.loads(path.read_text()) == doc
    assert [p.name for p in path.parent.iterdir()] == ["cam-r.json"]  # no temporary file left
    again = md.read_batch_output(path, camera_id="cam-r", media=media)
    assert again.detections["detection_id"].to_pylist() == detections["detection_id"].to_pylist()
    assert again.media["failure"].to_pylist() == [None, md.FAILURE_IMAGE_ACCESS]
