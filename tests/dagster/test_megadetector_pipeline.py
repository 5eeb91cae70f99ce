"""A camera through Dagster with a MegaDetector release named in the profile: its boxes reach the tables.

Real Dagster instance, the whole camera job (raw_images -> detections -> crops -> species_labels ->
events -> condensed_reports), Stage 1 in the entrypoint subprocess. No weights can be fetched here,
so a random checkpoint in the release's own format is put in a private model cache under the
registry's file name; the registry pins it on first use, as it would a file placed by hand.

* ``megadetector-v5a``: a random YOLOv5n6 (the same P6 head and stride 64 as v5a's YOLOv5x6, a
  fiftieth of its cost), run at the release's 1280. The detections table must hold the boxes
  MegaDetector's own inference (``reference_detections``) finds on each photo.
* ``megadetector-v1000-sorrel``: a random YOLO11n in the ultralytics format (sorrel is YOLO11s),
  at 640. Its reference is the same checkpoint loaded in this process and run on each photo.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from bench.random_checkpoints import build_ultralytics, build_yolov5, save_megadetector_checkpoint, save_ultralytics_checkpoint
from gpu_ops.detector_loader import load_detector
from gpu_ops.model_registry import KNOWN_MODELS
from tests.dagster_support import materialize_camera
from tests.media_support import ASSETS, write_jpeg
from tests.megadetector_support import assert_boxes_match, reference_detections

CAMERA = "cam-md-01"
CONF = 0.3


def _yolov5_case(path):
    checkpoint = save_megadetector_checkpoint(build_yolov5("yolov5n6.yaml", objectness_boost=0.0, head_scale=0.025), path)
    return checkpoint, lambda photo: reference_detections(checkpoint, photo, image_size=1280, conf=CONF)


def _ultralytics_case(path):
    checkpoint = save_ultralytics_checkpoint(build_ultralytics("yolo11n.yaml", class_bias=-1.0), path)
    ids = {"animal": 0, "person": 1, "vehicle": 2}

    def reference(photo):
        detector = load_detector(f"megadetector:{checkpoint}", backend="torch", device="cpu", image_size=640,
                                 conf_threshold=CONF)
        (found,) = detector.detect([np.asarray(Image.open(photo).convert("RGB"))])
        return [(ids[d.label], d.conf, d.bbox) for d in found]

    return checkpoint, reference


@pytest.mark.slow
@pytest.mark.parametrize("release, case", [("megadetector-v5a", _yolov5_case), ("megadetector-v1000-sorrel", _ultralytics_case)])
def test_a_profile_naming_a_megadetector_release_runs_the_camera_job(release, case, tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("ODINS_RAVNE_MODEL_DIR", str(models))  # the entrypoint subprocess inherits it
    checkpoint, reference = case(KNOWN_MODELS[release].target(models))
    source = tmp_path / "in"
    # Hours apart: no burst, so every box is the detector's own (no motion fusion).
    photos = [write_jpeg(ASSETS / name, source / CAMERA / f"IMG_000{i}.JPG", when=f"2024:06:0{i + 1} 0{i + 6}:00:00", scale=0.4)
              for i, name in enumerate(("bus.jpg", "zidane.jpg"))]
    profile = tmp_path / "md.yaml"
    profile.write_text(yaml.safe_dump({"name": "md", "pipeline": {
        "stage1": {"model": release, "backend": "torch", "confidence_threshold": CONF},
        "crops": {"min_confidence": 0.9},  # few crops: Stage 2 is not what this test is about
    }}))
    out = tmp_path / "out"
    result = materialize_camera(CAMERA, source, out, profile=profile)
    assert (checkpoint.parent / f"{checkpoint.name}.sha256").is_file()  # pinned on first use

    (materialization,) = result.asset_materializations_for_node("detections")
    assert materialization.metadata["model"].value == release
    rows = pq.read_table(out / "detections" / f"camera_id={CAMERA}").to_pylist()
    assert {r["model"] for r in rows} == {release}
    assert {r["category"] for r in rows} <= {"animal", "person", "vehicle"}
    assert all(r["label"] == r["category"] and r["source"] == "detector" for r in rows)
    compared = 0
    for photo in photos:
        found = [{"label": r["label"], "conf": r["conf"], "bbox": (r["bbox_x"], r["bbox_y"], r["bbox_w"], r["bbox_h"])}
                 for r in rows if r["file_path"].endswith(photo.name)]
        compared += assert_boxes_match(found, reference(photo), min_boxes=1, conf=CONF)
    assert compared >= 6
    events = pq.read_table(out / "events" / f"camera_id={CAMERA}").to_pylist()
    assert events and {e["category"] for e in events} <= {r["category"] for r in rows}
    assert result.asset_materializations_for_node("condensed_reports")
