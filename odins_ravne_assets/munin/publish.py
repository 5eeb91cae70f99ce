"""Turn the GPU stages' checkpointed work into the published per-camera tables.

The stages key their work by content (sha256) and detection id; these functions join it back to the
camera's current manifest, so a published table holds exactly the media the camera has now, in a
stable order: re-running after new files arrive gives the same table as a run from scratch.
Media with identical content are detected once; their detections are published under the first file
path in sort order (the manifest still lists every file).

The camera background (:mod:`gpu_ops.background`) is computed here, from the thumbnails Stage 1 kept,
over the whole camera: a trigger's background is made of its neighbours in time, so when new media
arrive the boxes of the triggers next to them can change, and the table stays the one a run from
scratch gives. Decided: a background box is added only to an image on which Stage 1 has no box at or
above the events' ``min_confidence`` (it is what the detector missed, not a second opinion), and at
most one per image, the strongest region: the background says that something is there, not how
many, so it counts one animal at most. Its rows carry ``source = background``, the label
``animal``, the confidence ``pipeline.background.conf`` and the model ``camera-background``; their
crops are cut by the ``crops`` asset and classified by Stage 2 like any other.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.background import BackgroundConfig, Trigger, missed_boxes
from gpu_ops.megadetector_format import detection_id
from gpu_ops.stage1 import crop_key, pending_media, read_thumbnails, stage1_signature
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


def detections_table(output, camera_id: str, profile, background: list[dict] | None = None) -> tuple[pa.Table, pa.Table, dict]:
    """(detections, crops, stage-1 failures by file path) for the camera's current manifest.

    ``background``: the camera background's rows already published (the ``crops`` asset passes those
    of the ``detections`` table of the same run); by default they are computed here."""
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
    if background is None:
        background = background_detections(output, camera_id, profile, media, detections)
    for row in background:
        detections.append(row)
        if row["conf"] >= profile.pipeline.crops.min_confidence:  # cut by the crops asset (no file yet)
            crops.append({**{k: row[k] for k in ("camera_id", "detection_id", "file_path", "sha256", "frame_number",
                                                 "category", "label", "conf")},
                          "crop_path": crop_key(camera_id, row["detection_id"]), "width": None, "height": None})
    detections.sort(key=lambda r: (r["file_path"], r["frame_number"], r["detection_id"]))
    crops.sort(key=lambda r: (r["file_path"], r["frame_number"], r["detection_id"]))
    return (
        pa.Table.from_pylist(detections, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(crops, schema=schemas.CROPS),
        failures,
    )


# Background boxes take detection indices from here on, clear of any detector's.
BACKGROUND_INDEX = 900
BACKGROUND_MODEL = "camera-background"


def background_detections(output, camera_id: str, profile, media: dict[str, dict], stage1: list[dict]) -> list[dict]:
    """The camera background's detection rows for the camera's current media (module doc)."""
    settings = profile.pipeline.background
    if not settings.enabled:
        return []
    thumbs = read_thumbnails(output, camera_id)
    events = profile.pipeline.events  # the camera's own events threshold where the profile sets one
    threshold = float(((events.per_camera or {}).get(camera_id) or {}).get("min_confidence", events.min_confidence))
    boxed: set[str] = set()  # images Stage 1 found something on, at the threshold
    found: dict[str, list[tuple[float, float, float, float]]] = {}  # and its boxes there
    for d in stage1:
        if d["frame_number"] == 0 and d["conf"] >= threshold:
            boxed.add(d["sha256"])
            if d.get("bbox_w") is not None:
                found.setdefault(d["sha256"], []).append((d["bbox_x"], d["bbox_y"], d["bbox_w"], d["bbox_h"]))
    members: dict[str, list[dict]] = {}
    for sha256, item in media.items():
        if sha256 in thumbs and item["media_type"] == "image":
            members.setdefault(item["burst_id"] or sha256, []).append(item)
    triggers = []
    for key, items in members.items():
        items.sort(key=lambda m: (m["burst_index"] or 0, m["file_path"]))
        triggers.append(Trigger.of(key, [m["sha256"] for m in items], thumbs,
                                   [m["timestamp"].timestamp() if m["timestamp"] is not None else None for m in items], found))
    config = BackgroundConfig(neighbours=settings.neighbours, k_sigma=settings.k_sigma, prior_conf=settings.conf)
    rows = []
    for sha256, best in sorted(missed_boxes(triggers, boxed, config).items()):
        item = media[sha256]
        rows.append({
            "camera_id": camera_id, "detection_id": detection_id(sha256, 0, BACKGROUND_INDEX),
            "file_path": item["file_path"], "sha256": sha256, "frame_number": 0, "timestamp": item["timestamp"],
            "category": "animal", "label": "animal", "conf": settings.conf,
            "bbox_x": best.bbox[0], "bbox_y": best.bbox[1], "bbox_w": best.bbox[2], "bbox_h": best.bbox[3],
            "source": "background", "model": BACKGROUND_MODEL,
        })
    return rows


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
