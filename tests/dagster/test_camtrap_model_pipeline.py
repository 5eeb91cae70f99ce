"""A camera through Dagster with the fine-tuned default (``pipeline.stage1.model: default-camtrap``):
real Dagster instance, the whole camera job with Stage 1 in the entrypoint subprocess (ONNX Runtime,
its own export), and the shipped heads. The detections table must hold the boxes the same model
finds in this process on the torch backend, and name the model."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from gpu_ops.boxes import iou
from gpu_ops.detector_loader import load_detector
from tests.dagster_support import materialize_camera
from tests.media_support import ASSETS, write_jpeg

CAMERA = "cam-camtrap-01"
CONF = 0.3


@pytest.mark.slow
def test_a_profile_naming_the_fine_tuned_default_runs_the_camera_job_with_its_heads(tmp_path):
    source = tmp_path / "in"
    # Hours apart: no burst, so every box is the detector's own (no motion fusion).
    photos = [write_jpeg(ASSETS / name, source / CAMERA / f"IMG_000{i}.JPG", when=f"2024:06:0{i + 1} 0{i + 6}:00:00", scale=0.4)
              for i, name in enumerate(("bus.jpg", "zidane.jpg"))]
    profile = tmp_path / "camtrap.yaml"
    profile.write_text(yaml.safe_dump({"name": "camtrap", "pipeline": {
        "stage1": {"model": "default-camtrap", "confidence_threshold": CONF},
        "crops": {"min_confidence": 0.9},  # few crops: Stage 2 is not what this test is about
    }}))
    out = tmp_path / "out"
    result = materialize_camera(CAMERA, source, out, profile=profile)
    (materialization,) = result.asset_materializations_for_node("detections")
    assert materialization.metadata["model"].value == "default-camtrap"
    rows = [r for r in pq.read_table(out / "detections" / f"camera_id={CAMERA}").to_pylist() if r["source"] == "detector"]
    assert {r["model"] for r in rows} == {"yolov3-tiny-camtrap"}  # the detector's own name, as yolov3-tiny-coco is the default's
    reference = load_detector("default-camtrap", backend="torch", image_size=416, conf_threshold=CONF, animal_score="sum")
    coco = load_detector("default", backend="torch", image_size=416, conf_threshold=CONF, animal_score="sum")
    compared = differs = 0
    for photo in photos:
        image = np.asarray(Image.open(photo).convert("RGB"))
        (expected,) = reference.detect([image])
        ours = [r for r in rows if r["file_path"].endswith(photo.name)]
        for d in expected:
            if d.conf < CONF + 0.02:
                continue
            best = max(((iou(d.bbox, (r["bbox_x"], r["bbox_y"], r["bbox_w"], r["bbox_h"])), r["conf"]) for r in ours
                        if r["label"] == d.label), default=(0.0, 0.0))
            assert best[0] >= 0.9 and abs(best[1] - d.conf) <= 0.02, (photo.name, d, best)
            compared += 1
        (theirs,) = coco.detect([image])
        differs += sorted(round(d.conf, 2) for d in theirs) != sorted(round(d.conf, 2) for d in expected)
    assert compared >= 4 and differs == len(photos)  # the heads are in use: not the COCO scores
