"""Join results computed elsewhere: a MegaDetector batch output file becomes Stage 1 work.

The imported detections are committed as the camera's Stage 1 checkpoint under the current profile's
settings digest, so the ``detections`` asset publishes them, the ``crops`` asset cuts their crops
from the camera's media (crop files that do not exist yet are cut, see ``crops``), and Stage 2 and
everything after run as usual. Media the file covers are never sent to the detector again; media it
does not cover are detected as usual.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.megadetector_format import detection_id, read_batch_output
from gpu_ops.stage1 import RESULT_SCHEMA, crop_key
from odins_ravne_assets.munin.publish import stage1_state


def import_megadetector(output, camera_id: str, json_path: str | Path, profile) -> dict:
    """Commit the file's detections for one camera; returns what was imported."""
    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    if manifest is None:
        raise FileNotFoundError(f"camera '{camera_id}' has no media manifest yet: materialize raw_images for it first")
    results = read_batch_output(json_path, camera_id=camera_id, media=manifest)
    media, detections = results.media, results.detections
    known = {row["file_path"]: row for row in manifest.to_pylist() if row["status"] == "ok"}
    covered = {row["file_path"] for row in media.to_pylist() if row["file_path"] in known}
    unknown = sorted({row["file_path"] for row in media.to_pylist()} - set(known))
    crop_min = profile.pipeline.crops.min_confidence
    rows, counters = [], {}
    source = f"megadetector-import:{Path(json_path).name}"
    for det in detections.to_pylist():
        item = known.get(det["file_path"])
        if item is None:
            continue
        frame = det["frame_number"] or 0
        index = counters.get((item["sha256"], frame), 0)
        counters[(item["sha256"], frame)] = index + 1
        det_id = detection_id(item["sha256"], frame, index)
        rows.append(
            {
                "sha256": item["sha256"],
                "frame_number": frame,
                "frame_offset_s": 0.0,
                "index": index,
                **{k: det[k] for k in ("category", "label", "conf", "bbox_x", "bbox_y", "bbox_w", "bbox_h")},
                "source": source,
                "model": det["model"] or source,
                "crop_path": crop_key(camera_id, det_id) if det["conf"] >= crop_min else None,
                "crop_width": None,
                "crop_height": None,
            }
        )
    keys = sorted({known[path]["sha256"] for path in covered})
    if keys:
        stage1_state(output, camera_id, profile).commit(keys, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), {})
    return {"media": len(keys), "detections": len(rows), "not_in_camera": unknown}
