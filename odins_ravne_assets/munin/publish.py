"""Turn the GPU stages' checkpointed work into the published per-camera tables.

The stages key their work by content (sha256) and detection id; these functions join it back to the
camera's current manifest, so a published table holds exactly the media the camera has now, in a
stable order: re-running after new files arrive gives the same table as a run from scratch.
Media with identical content are detected once; their detections are published under the first file
path in sort order (the manifest still lists every file).
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.megadetector_format import detection_id
from gpu_ops.stage1 import pending_media, stage1_signature
from gpu_ops.stage2 import LABEL_COLUMNS, stage2_state
from gpu_ops.workstate import WorkState


def _first_file_per_content(manifest: pa.Table) -> dict[str, dict]:
    first: dict[str, dict] = {}
    for row in sorted(manifest.to_pylist(), key=lambda r: r["file_path"]):
        if row["status"] == "ok" and row["sha256"] not in first:
            first[row["sha256"]] = row
    return first


def stage1_state(output, camera_id: str, profile) -> WorkState:
    return WorkState(output, "detect", stage1_signature(profile)[0], camera_id)


def stage1_pending(output, camera_id: str, profile) -> int:
    """How many unique media of the camera Stage 1 has not done yet (0: no GPU job is needed)."""
    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    if manifest is None:
        return 0
    return len(pending_media(manifest, stage1_state(output, camera_id, profile).done()))


def stage2_pending(output, camera_id: str, profile) -> int:
    """How many crops of the camera Stage 2 has not labelled yet."""
    crops = output.read_parquet(schemas.camera_prefix("crops", camera_id))
    if crops is None:
        return 0
    done = stage2_state(output, camera_id, profile).done()
    return sum(1 for d in crops.column("detection_id").to_pylist() if d not in done)


def detections_table(output, camera_id: str, profile) -> tuple[pa.Table, pa.Table, dict]:
    """(detections, crops, stage-1 failures by file path) for the camera's current manifest."""
    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    state = stage1_state(output, camera_id, profile)
    work = state.results()
    media = _first_file_per_content(manifest)
    failures = {
        media[key]["file_path"]: reason
        for key, reason in state.done().items()
        if reason and key in media
    }
    detections, crops = [], []
    for row in (work.to_pylist() if work is not None else []):
        item = media.get(row["sha256"])
        if item is None:  # the file left the camera folder since it was detected
            continue
        det_id = detection_id(row["sha256"], row["frame_number"], row["index"])
        timestamp = item["timestamp"]
        if timestamp is not None and row["frame_offset_s"]:
            timestamp = timestamp + timedelta(seconds=row["frame_offset_s"])
        detections.append(
            {
                "camera_id": camera_id,
                "detection_id": det_id,
                "file_path": item["file_path"],
                "sha256": row["sha256"],
                "frame_number": row["frame_number"],
                "timestamp": timestamp,
                **{k: row[k] for k in ("category", "label", "conf", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "source", "model")},
            }
        )
        if row["crop_path"]:
            crops.append(
                {
                    "camera_id": camera_id,
                    "detection_id": det_id,
                    "file_path": item["file_path"],
                    "sha256": row["sha256"],
                    "frame_number": row["frame_number"],
                    "crop_path": row["crop_path"],
                    "width": row["crop_width"],
                    "height": row["crop_height"],
                    "category": row["category"],
                    "label": row["label"],
                    "conf": row["conf"],
                }
            )
    detections.sort(key=lambda r: (r["file_path"], r["frame_number"], r["detection_id"]))
    crops.sort(key=lambda r: (r["file_path"], r["frame_number"], r["detection_id"]))
    return (
        pa.Table.from_pylist(detections, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(crops, schema=schemas.CROPS),
        failures,
    )


def species_table(output, camera_id: str, profile) -> pa.Table:
    crops = output.read_parquet(schemas.camera_prefix("crops", camera_id))
    work = stage2_state(output, camera_id, profile).results()
    if crops is None or work is None:
        return schemas.SPECIES_LABELS.empty_table()
    labels = {row["detection_id"]: row for row in work.to_pylist()}
    rows = []
    for crop in crops.to_pylist():
        label = labels.get(crop["detection_id"])
        if label is None:
            continue
        rows.append(
            {
                "camera_id": camera_id,
                "detection_id": crop["detection_id"],
                "file_path": crop["file_path"],
                "crop_path": crop["crop_path"],
                "category": crop["category"],
                "detector_label": crop["label"],
                **{k: label.get(k) for k in LABEL_COLUMNS},
            }
        )
    return pa.Table.from_pylist(rows, schema=schemas.SPECIES_LABELS)
