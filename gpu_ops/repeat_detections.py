"""Repeat-detection elimination: a box at the same place across many triggers of one camera, on
several days, is a rock, a stump or a branch, not an animal (MegaDetector's RDE, TrapTagger's static
groups).

Per camera, detections at or above ``min_conf`` are grouped greedily (strongest first) with boxes of
IoU >= ``iou`` to the group's first box. A group is a **repeat** when its boxes come from at least
``min_triggers`` distinct triggers (bursts, or single media) on at least ``min_days`` distinct days:
a burst of an animal that stands still is one trigger, however many frames it has, and an animal
that comes back to the same spot every night rarely stands in the same box. Decided: counting
triggers, not frames, and asking for two days, so a camera's first busy night cannot erase an animal.
A day is a capture date the camera wrote (EXIF or video metadata): a file's modification time is the
copy's date, so media without a camera time count as triggers but add no day.

Where it sits (``settings.pipeline.repeat_detections``): the ``repeat_detections`` asset runs after
``detections`` and writes the ``repeat_detections`` table (:func:`repeats_table`, one row per place:
camera, box, label, triggers, days, first and last seen, an example file, ``suppressed``, the reason
and the detection ids). The ``detections`` table stays Stage 1's whole output, so undoing a
suppression needs no GPU work; every reader of answers leaves the suppressed detections out with
:func:`without_suppressed`: crops (so Stage 2 does not classify them), events, and from the events
sites and reports, the exports, and Stage 3's ``observations``.

Undo, decided: one file, ``repeat_detections_keep.csv`` at the top of the input folder (beside
``deployments.csv``), with the columns ``camera_id, bbox_x, bbox_y, bbox_w, bbox_h`` of the
``repeat_detections`` table, so rows of that table (``odins-ravne query "SELECT * FROM
repeat_detections"``) can be pasted in as they are; other columns are ignored. A place whose box has
IoU >= ``iou`` with a kept box of its camera stays in the table with ``suppressed = False`` and its
detections count again after the next run of the camera.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops import schemas
from gpu_ops.boxes import Box, iou
from gpu_ops.settings import RepeatDetectionSettings

KEEP_FILE = "repeat_detections_keep.csv"
KEEP_COLUMNS = ("camera_id", "bbox_x", "bbox_y", "bbox_w", "bbox_h")
# Times a camera wrote; a file time is the copy's (see the module doc).
CAMERA_TIME_SOURCES = frozenset({"exif", "video_metadata"})
_CELL = 0.05  # grid of box centres that narrows which groups a box is compared with


@dataclass(frozen=True)
class DetectionRef:
    det_id: str
    camera_id: str
    trigger: str  # burst id, or the media's own id for a single photo
    day: str | None  # capture date, ISO; None without a camera-written time
    conf: float
    bbox: Box
    label: str = ""
    file_path: str = ""
    timestamp: datetime | None = None


@dataclass(frozen=True)
class Repeat:
    camera_id: str
    bbox: Box  # the group's first (strongest) box
    detections: int
    triggers: int
    days: int
    suppressed: bool  # False where the user's keep file keeps it
    reason: str
    det_ids: tuple[str, ...]
    label: str = ""
    example_file_path: str = ""
    first_seen: datetime | None = None
    last_seen: datetime | None = None


def _cells(box: Box, threshold: float) -> Iterable[tuple[int, int]]:
    """The grid cells whose groups can hold a box of IoU >= ``threshold`` with ``box``.

    IoU >= t needs the overlap to be at least t times the larger box, so the centres are at most
    ``w (1 - t) / t`` apart in x (and likewise in y).
    """
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    rx, ry = box[2] * (1 - threshold) / threshold, box[3] * (1 - threshold) / threshold
    for i in range(math.floor((cx - rx) / _CELL), math.floor((cx + rx) / _CELL) + 1):
        for j in range(math.floor((cy - ry) / _CELL), math.floor((cy + ry) / _CELL) + 1):
            yield i, j


def _cell(box: Box) -> tuple[int, int]:
    return math.floor((box[0] + box[2] / 2) / _CELL), math.floor((box[1] + box[3] / 2) / _CELL)


def _groups(dets: list[DetectionRef], threshold: float) -> list[list[DetectionRef]]:
    groups: list[list[DetectionRef]] = []
    by_cell: dict[tuple[int, int], list[int]] = {}
    for d in sorted(dets, key=lambda d: (-d.conf, d.det_id)):
        near = sorted({g for cell in _cells(d.bbox, threshold) for g in by_cell.get(cell, ())})
        home = next((g for g in near if iou(groups[g][0].bbox, d.bbox) >= threshold), None)
        if home is None:
            by_cell.setdefault(_cell(d.bbox), []).append(len(groups))
            groups.append([d])
        else:
            groups[home].append(d)
    return groups


def find_repeats(detections: Iterable[DetectionRef], config: RepeatDetectionSettings,
                 keep: dict[str, list[Box]] | None = None) -> tuple[list[Repeat], set[str]]:
    """The repeat groups of every camera and the ids of the detections to suppress (module doc)."""
    if not config.enabled:
        return [], set()
    keep = keep or {}
    by_camera: dict[str, list[DetectionRef]] = {}
    for d in detections:
        if d.conf >= config.min_conf:
            by_camera.setdefault(d.camera_id, []).append(d)
    repeats, suppressed = [], set()
    for camera, dets in sorted(by_camera.items()):
        for group in _groups(dets, config.iou):
            triggers, days = len({d.trigger for d in group}), len({d.day for d in group} - {None})
            if triggers < config.min_triggers or days < config.min_days:
                continue
            kept = any(iou(group[0].bbox, box) >= config.iou for box in keep.get(camera, []))
            reason = (f"same box (IoU >= {config.iou:g}) in {triggers} triggers on {days} days"
                      + (f"; kept by {KEEP_FILE}" if kept else ""))
            times = [d.timestamp for d in group if d.timestamp is not None]
            repeats.append(Repeat(camera, group[0].bbox, len(group), triggers, days, not kept, reason,
                                  tuple(sorted(d.det_id for d in group)), group[0].label, group[0].file_path,
                                  min(times, default=None), max(times, default=None)))
            if not kept:
                suppressed.update(d.det_id for d in group)
    return repeats, suppressed


def references(detections: pa.Table, media: pa.Table) -> list[DetectionRef]:
    """``schemas.DETECTIONS`` rows as :class:`DetectionRef`, each with its trigger and day from ``media``."""
    of_file = {
        (m["camera_id"], m["file_path"]): m
        for m in media.select(["camera_id", "file_path", "burst_id", "timestamp_source"]).to_pylist()
    }
    refs = []
    for d in detections.to_pylist():
        m = of_file.get((d["camera_id"], d["file_path"])) or {}
        dated = d["timestamp"] is not None and m.get("timestamp_source") in CAMERA_TIME_SOURCES
        refs.append(DetectionRef(
            d["detection_id"], d["camera_id"], m.get("burst_id") or d["file_path"],
            d["timestamp"].date().isoformat() if dated else None, float(d["conf"]),
            (d["bbox_x"], d["bbox_y"], d["bbox_w"], d["bbox_h"]), d["label"] or "", d["file_path"],
            d["timestamp"] if dated else None,
        ))
    return refs


def repeats_table(repeats: list[Repeat]) -> pa.Table:
    return pa.Table.from_pylist([
        {
            "camera_id": r.camera_id, "bbox_x": r.bbox[0], "bbox_y": r.bbox[1], "bbox_w": r.bbox[2],
            "bbox_h": r.bbox[3], "label": r.label, "detections": r.detections, "triggers": r.triggers,
            "days": r.days, "first_seen": r.first_seen, "last_seen": r.last_seen,
            "example_file_path": r.example_file_path, "suppressed": r.suppressed, "reason": r.reason,
            "detection_ids": list(r.det_ids),
        }
        for r in repeats
    ], schema=schemas.REPEAT_DETECTIONS)


def without_suppressed(detections: pa.Table, repeats: pa.Table | None) -> pa.Table:
    """``detections`` (any table with camera_id and detection_id) less the suppressed places' detections."""
    if repeats is None or repeats.num_rows == 0:
        return detections
    gone = {
        (row["camera_id"], det_id)
        for row in repeats.filter(pc.field("suppressed")).select(["camera_id", "detection_ids"]).to_pylist()
        for det_id in row["detection_ids"]
    }
    if not gone:
        return detections
    keys = zip(detections.column("camera_id").to_pylist(), detections.column("detection_id").to_pylist())
    return detections.filter(pa.array([key not in gone for key in keys], pa.bool_()))


def read_keep_file(data: bytes, source: str = KEEP_FILE) -> dict[str, list[Box]]:
    """The places a user keeps, by camera, from the keep file's bytes (module doc)."""
    out: dict[str, list[Box]] = {}
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    missing = [c for c in KEEP_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}: use {', '.join(KEEP_COLUMNS)} "
                         "(rows of the repeat_detections table)")
    for n, row in enumerate(reader, start=2):
        try:
            box = tuple(float(row[k]) for k in KEEP_COLUMNS[1:])
        except (TypeError, ValueError):
            raise ValueError(f"{source} line {n}: bbox_x, bbox_y, bbox_w, bbox_h must be numbers") from None
        out.setdefault((row["camera_id"] or "").strip(), []).append(box)
    return out


def camera_repeats(detections: pa.Table, media: pa.Table, config: RepeatDetectionSettings,
                   keep: dict[str, list[Box]] | None = None) -> pa.Table:
    """The ``repeat_detections`` table of one camera's published detections and media."""
    repeats, _ = find_repeats(references(detections, media), config, keep)
    return repeats_table(repeats)
