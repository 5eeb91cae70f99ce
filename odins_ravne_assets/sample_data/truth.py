"""The ground truth of the sample cards: one row per file saying what is in it, and a summary.

Tests and the demo check the pipeline against these rows (``summary["truth"]``; ``--truth`` writes
them as JSON). Each row: ``camera_id``, ``file_path`` (relative to the camera folder), ``kind``
("image", "video", "empty", "broken", "no_exif", "ignored"), ``label`` (in the user's words),
``coco_label`` (the class a COCO detector should find), ``event_id``, ``timestamp`` (ISO) and
``note``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from odins_ravne_assets.sample_data.cameras import BROKEN_CAMERA, BROKEN_TIME, CAMERAS, Camera, Event, OddFile


def event_truth(camera: Camera, rel: str, event: Event, event_id: str, taken: datetime, media_type: str) -> dict[str, Any]:
    """The row of one frame (``media_type`` "image") or clip ("video") of a trigger."""
    return {
        "camera_id": camera.camera_id,
        "file_path": rel,
        "kind": "empty" if event.kind == "empty" else media_type,
        "label": None if event.kind == "empty" else event.label,
        "coco_label": event.coco_label,
        "event_id": event_id,
        "timestamp": taken.isoformat(),
        "note": "",
    }


def odd_file_truth(odd: OddFile) -> dict[str, Any]:
    """The row of one of ``BROKEN_CAMERA``'s odd files: no event, nothing a detector should find."""
    return {
        "camera_id": BROKEN_CAMERA,
        "file_path": odd.name,
        "kind": odd.kind,
        "label": odd.label,
        "coco_label": None,
        "event_id": None,
        "timestamp": BROKEN_TIME.isoformat(),
        "note": odd.note,
    }


def summarize(dest: Path, truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Per camera: files, bytes, images, videos, empty, broken, events, GPS, make; then the labels."""
    cameras: dict[str, Any] = {}
    for camera in CAMERAS:
        rows = [row for row in truth if row["camera_id"] == camera.camera_id]
        cameras[camera.camera_id] = {
            "files": len(rows),
            "bytes": sum((dest / camera.camera_id / row["file_path"]).stat().st_size for row in rows),
            "images": sum(row["kind"] in ("image", "empty", "no_exif") for row in rows),
            "videos": sum(row["kind"] == "video" for row in rows),
            "empty": sum(row["kind"] == "empty" for row in rows),
            "broken": sum(row["kind"] == "broken" for row in rows),
            "events": len({row["event_id"] for row in rows if row["event_id"]}),
            "gps": list(camera.gps) if camera.gps is not None else None,
            "make": camera.make,
            "model": camera.model,
        }
    labels = sorted({row["label"] for row in truth if row["label"] and row["kind"] in ("image", "video")})
    coco = sorted({row["coco_label"] for row in truth if row["coco_label"]})
    return {
        "dest": str(dest),
        "cameras": cameras,
        "files": len(truth),
        "bytes": sum(c["bytes"] for c in cameras.values()),
        "labels": labels,
        "coco_labels": coco,
    }
