"""The camera background through Dagster, on a constructed camera whose right answer is known.

Real JPEGs with EXIF times, through every camera asset as a user's run goes (Stage 1 and Stage 2 in
their subprocesses with the default model, Parquet, the crops asset, events): one infrared scene,
photographed by eight single triggers over two nights, and one burst of three frames of an animal
standing still in it, a soft shape that no COCO detector calls an animal. Stage 1 finds nothing;
the background boxes the animal in the burst's three frames and nowhere else, its crops are cut and
classified, and the camera has one event of one animal. Media that arrive in a later run give the
table a run from scratch gives.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image

from gpu_ops import schemas
from gpu_ops.boxes import iou
from gpu_ops.stage1 import thumbnails_prefix
from gpu_ops.storage import open_storage
from media_support import write_jpeg
from tests.dagster_support import materialize_camera

pytestmark = pytest.mark.slow

CAMERA = "cam-bg"
ANIMAL = (0.55, 0.45, 0.18, 0.22)  # normalized x, y, w, h
EMPTY_TIMES = [f"2024:06:0{1 + k // 4} {20 + k % 4:02d}:{10 * k:02d}:00" for k in range(8)]
BURST_TIMES = [f"2024:06:01 22:31:0{k}" for k in range(3)]


def _scene(seed: int, *, animal: bool) -> np.ndarray:
    """The camera's fixed textured view at night (grey), its noise and exposure per trigger."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    view = 90 + 35 * np.sin(xx / 31.0) * np.cos(yy / 47.0) + 15 * np.sin((xx + 2 * yy) / 11.0)
    frame = view * rng.uniform(0.85, 1.15) + rng.normal(0, 3, view.shape)
    if animal:
        x, y, w, h = ANIMAL
        cx, cy, rx, ry = (x + w / 2) * 640, (y + h / 2) * 480, w * 320, h * 240
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        frame[inside] = 0.6 * frame[inside] + 70
    return np.stack([np.clip(frame, 0, 255).astype(np.uint8)] * 3, axis=2)


def _write(root, tmp_path, names: list[str]) -> None:
    for name in names:
        kind, k = name[:-1], int(name[-1])
        src = tmp_path / "src" / f"{name}.png"
        src.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_scene(k + (100 if kind == "burst" else 0), animal=kind == "burst")).save(src)
        write_jpeg(src, root / CAMERA / f"{name}.jpg", when=(BURST_TIMES if kind == "burst" else EMPTY_TIMES)[k])


ALL = [f"empty{k}" for k in range(8)] + [f"burst{k}" for k in range(3)]


def test_an_animal_no_detector_sees_is_boxed_by_the_camera_background(tmp_path):
    root, output = tmp_path / "in", tmp_path / "out"
    _write(root, tmp_path, ALL)
    materialize_camera(CAMERA, root, output)
    out = open_storage(str(output))
    detections = out.read_parquet(schemas.camera_prefix("detections", CAMERA))
    found = detections.filter(pc.greater_equal(detections["conf"], 0.3)).to_pylist()
    background = [d for d in found if d["source"] == "background"]
    assert sorted(d["file_path"] for d in found) == [f"burst{k}.jpg" for k in range(3)]  # nothing else, nowhere else
    assert len(background) == 3
    for d in background:
        assert (d["category"], d["label"], d["model"]) == ("animal", "animal", "camera-background")
        assert d["conf"] == pytest.approx(0.3) and d["detection_id"].endswith("-0-900")
        assert iou((d["bbox_x"], d["bbox_y"], d["bbox_w"], d["bbox_h"]), ANIMAL) > 0.6
    # Eleven thumbnails, kept beside Stage 1's work.
    thumbs = out.read_parquet(thumbnails_prefix(CAMERA))
    assert thumbs.num_rows == 11 and set(thumbs.column("width").to_pylist()) == {192}
    # Crops cut by the crops asset from the media, classified by Stage 2; one event, one animal.
    crops = out.read_parquet(schemas.camera_prefix("crops", CAMERA)).to_pylist()
    assert sorted(c["detection_id"] for c in crops) == sorted(d["detection_id"] for d in background)
    for crop in crops:
        with Image.open(output / crop["crop_path"]) as image:
            assert (image.width, image.height) == (crop["width"], crop["height"])
    labels = out.read_parquet(schemas.camera_prefix("species_labels", CAMERA))
    assert labels.num_rows == 3
    events = [e for e in out.read_parquet(schemas.camera_prefix("events", CAMERA)).to_pylist() if e["category"] != "blank"]
    assert len(events) == 1 and events[0]["category"] == "animal" and events[0]["max_count"] == 1 and events[0]["n_media"] == 3

    # The burst and two empty triggers arrive in a later run: the same table as this run from scratch.
    later_root, later = tmp_path / "in-later", tmp_path / "out-later"
    _write(later_root, tmp_path, ALL[:6])
    materialize_camera(CAMERA, later_root, later)
    for name in ALL[6:]:
        shutil.copy2(root / CAMERA / f"{name}.jpg", later_root / CAMERA / f"{name}.jpg")
    materialize_camera(CAMERA, later_root, later)
    again = open_storage(str(later)).read_parquet(schemas.camera_prefix("detections", CAMERA))
    assert again.drop_columns(["camera_id"]).to_pylist() == detections.drop_columns(["camera_id"]).to_pylist()
