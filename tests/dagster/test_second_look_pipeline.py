"""A camera through Dagster with the infrared second look asked for (``pipeline.stage1.infrared_second_look:
always``), real Dagster instance and Stage 1 in the entrypoint subprocess: a flat night frame the first look
finds nothing on gets the second look's boxes, marked ``source = contrast``, with their crops; the colour
frame beside it is looked at once; and turning it off again re-detects, since the answer changes."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from gpu_ops import schemas, second_look
from gpu_ops.storage import open_storage
from tests.dagster_support import materialize_camera
from tests.media_support import ASSETS, write_jpeg

CAMERA = "cam-night-01"


def _table(out, name: str) -> list[dict]:
    return open_storage(str(out)).read_parquet(schemas.camera_prefix(name, CAMERA)).to_pylist()


def _profile(tmp_path, setting: str):
    path = tmp_path / f"{setting}.yaml"
    path.write_text(yaml.safe_dump({"name": setting, "pipeline": {
        "stage1": {"infrared_second_look": setting}, "crops": {"min_confidence": 0.3}}}))
    return path


@pytest.mark.slow
def test_a_flat_night_frame_gets_the_second_look_s_boxes_through_the_camera_job(tmp_path):
    source = tmp_path / "in"
    grey = np.asarray(Image.open(ASSETS / "zidane.jpg").convert("L")).astype(np.float64)
    flat = tmp_path / "flat.png"
    Image.fromarray((105 + 10 * grey / 255).astype(np.uint8)).convert("RGB").save(flat)  # a night frame's few grey levels
    write_jpeg(flat, source / CAMERA / "IMG_0001.JPG", when="2024:06:01 02:00:00")
    write_jpeg(ASSETS / "bus.jpg", source / CAMERA / "IMG_0002.JPG", when="2024:06:01 14:00:00", scale=0.5)
    out = tmp_path / "out"
    result = materialize_camera(CAMERA, source, out, profile=_profile(tmp_path, "always"))
    (materialization,) = result.asset_materializations_for_node("detections")
    figures = {k: v.value for k, v in materialization.metadata.items()}
    assert figures["stage1_second_looks"] == 1 and figures["stage1_second_look_detections"] >= 1  # the night frame alone
    rows = _table(out, "detections")
    night = [r for r in rows if r["file_path"].endswith("IMG_0001.JPG") and r["conf"] >= second_look.BELOW]
    assert night and {r["source"] for r in night} == {second_look.SOURCE} and {r["category"] for r in night} == {"person"}
    crops = {c["detection_id"]: c for c in _table(out, "crops")}
    for r in night:  # cut by Stage 1 from the frame it looked at, listed by the crops asset, classified
        with Image.open(out / crops[r["detection_id"]]["crop_path"]) as crop:
            assert crop.height > 100
    labels = _table(out, "species_labels")
    assert {r["detection_id"] for r in night} <= {label["detection_id"] for label in labels}
    assert second_look.SOURCE not in {r["source"] for r in rows if r["file_path"].endswith("IMG_0002.JPG")}

    materialize_camera(CAMERA, source, out, profile=_profile(tmp_path, "never"))
    rows = _table(out, "detections")
    assert not [r for r in rows if r["file_path"].endswith("IMG_0001.JPG") and r["conf"] >= second_look.BELOW]
