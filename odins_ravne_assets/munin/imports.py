"""Join results computed elsewhere: a MegaDetector batch output file becomes Stage 1 (and Stage 2) work.

The imported detections are committed as the camera's Stage 1 checkpoint under the current profile's
settings digest, so the ``detections`` asset publishes them, the ``crops`` asset cuts their crops
from the camera's media (crop files that do not exist yet are cut, see ``crops``), and Stage 2 and
everything after run as usual. Media the file covers are never sent to the detector again; media it
does not cover are detected as usual.

The file's classifications are kept: each classified detection's top class is committed as the
Stage 2 result of its crop under the current classifier's digest, so Stage 2 classifies only the
detections the file left unclassified. Choosing another classifier later starts a fresh Stage 2
work folder, which then classifies every crop itself.

Nothing is committed unless the whole file is valid (:func:`gpu_ops.megadetector_format.read_batch_output`).
Files with the same content are detected once (Stage 1 works by content): their detections are taken
from the first such file in path order, so a copied photo is never counted twice.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops import stage2
from gpu_ops.megadetector_format import detection_id, read_batch_output
from gpu_ops.stage1 import RESULT_SCHEMA, crop_key
from odins_ravne_assets.munin.publish import stage1_state


def import_megadetector(output, camera_id: str, json_path: str | Path, profile) -> dict:
    """Commit the file's detections and classifications for one camera; returns what was imported."""
    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    if manifest is None:
        raise FileNotFoundError(f"camera '{camera_id}' has no media manifest yet: materialize raw_images for it first")
    results = read_batch_output(json_path, camera_id=camera_id, media=manifest)
    known = {row["file_path"]: row for row in manifest.to_pylist() if row["status"] == "ok"}
    listed = {row["file_path"] for row in results.media.to_pylist()}
    unknown = sorted(listed - set(known))
    # Per content, the first covered file in path order speaks for it.
    speaker: dict[str, str] = {}
    for path in sorted(listed & set(known)):
        speaker.setdefault(known[path]["sha256"], path)
    crop_min = profile.pipeline.crops.min_confidence
    source = f"megadetector-import:{Path(json_path).name}"
    rows, ids = [], {}
    for det in results.detections.to_pylist():
        item = known.get(det["file_path"])
        if item is None or speaker[item["sha256"]] != det["file_path"]:
            continue
        frame, index = det["frame_number"], int(det["detection_id"].rsplit("-", 1)[1])
        det_id = detection_id(item["sha256"], frame, index)
        ids[det["detection_id"]] = det_id
        rows.append(
            {
                "sha256": item["sha256"],
                "frame_number": frame,
                "frame_offset_s": frame / item["frame_rate"] if frame and item["frame_rate"] else 0.0,
                "index": index,
                **{k: det[k] for k in ("category", "label", "conf", "bbox_x", "bbox_y", "bbox_w", "bbox_h")},
                "source": source,
                "model": det["model"] or source,
                "crop_path": crop_key(camera_id, det_id) if det["conf"] >= crop_min else None,
                "crop_width": None,
                "crop_height": None,
            }
        )
    # Stage 2 labels crops: a detection under the crop threshold has no crop to label.
    cropped = {detection_id(r["sha256"], r["frame_number"], r["index"]) for r in rows if r["crop_path"]}
    labels = [
        {**{k: label.get(k) for k in stage2.LABEL_COLUMNS}, "detection_id": ids[label["detection_id"]],
         "raw_label": label["species"], "raw_score": label["score"], "prediction_source": "classifier"}
        for label in results.species_labels.to_pylist()
        if ids.get(label["detection_id"]) in cropped
    ]
    keys = sorted(speaker)
    if keys:
        stage1_state(output, camera_id, profile).commit(keys, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), {})
    if labels:
        stage2.stage2_state(output, camera_id, profile).commit(
            [label["detection_id"] for label in labels], pa.Table.from_pylist(labels, schema=stage2.RESULT_SCHEMA), {}
        )
    return {"media": len(keys), "detections": len(rows), "labels": len(labels), "not_in_camera": unknown}

