"""Repeat-detection elimination: a box at the same place across many triggers of one camera, on
several days, is a rock, a stump or a branch, not an animal (MegaDetector's RDE, TrapTagger's static
groups).

Per camera, detections at or above ``min_conf`` are grouped greedily (strongest first) with boxes of
IoU >= ``iou`` to the group's first box. A group is a **repeat** when its boxes come from at least
``min_triggers`` distinct triggers (bursts, or single media) on at least ``min_days`` distinct days:
a burst of an animal that stands still is one trigger, however many frames it has, and an animal
that comes back to the same spot every night rarely stands in the same box. Decided: counting
triggers, not frames, and asking for two days, so a camera's first busy night cannot erase an animal.

What a user sees and can undo: :func:`find_repeats` returns one :class:`Repeat` row per group (the
``repeat_detections`` table: camera, the box, how many triggers and days, why) and the ids of the
suppressed detections; a CSV of ``camera_id, x, y, w, h`` (:func:`read_overrides`) names boxes a
user keeps anyway: a group whose box has IoU >= ``iou`` with an override is reported with
``suppressed = False``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gpu_ops.boxes import Box, iou


@dataclass(frozen=True)
class RepeatConfig:
    enabled: bool = True
    iou: float = 0.7  # boxes this close are the same place
    min_triggers: int = 4  # distinct triggers a place must recur in...
    min_days: int = 2  # ...over at least this many days
    min_conf: float = 0.1  # detections below are not counted (stage1.confidence_threshold)


@dataclass(frozen=True)
class DetectionRef:
    det_id: str
    camera_id: str
    trigger: str  # burst id, or the media's own id for a single photo
    day: str  # capture date, ISO
    conf: float
    bbox: Box


@dataclass(frozen=True)
class Repeat:
    camera_id: str
    bbox: Box  # the group's first (strongest) box
    detections: int
    triggers: int
    days: int
    suppressed: bool  # False where the user's override keeps it
    reason: str
    det_ids: tuple[str, ...]


def find_repeats(detections: Iterable[DetectionRef], config: RepeatConfig,
                 overrides: dict[str, list[Box]] | None = None) -> tuple[list[Repeat], set[str]]:
    """The repeat groups of every camera and the ids of the detections to suppress (module doc)."""
    if not config.enabled:
        return [], set()
    overrides = overrides or {}
    by_camera: dict[str, list[DetectionRef]] = {}
    for d in detections:
        if d.conf >= config.min_conf:
            by_camera.setdefault(d.camera_id, []).append(d)
    repeats, suppressed = [], set()
    for camera, dets in sorted(by_camera.items()):
        groups: list[list[DetectionRef]] = []
        for d in sorted(dets, key=lambda d: (-d.conf, d.det_id)):
            home = next((g for g in groups if iou(g[0].bbox, d.bbox) >= config.iou), None)
            if home is None:
                groups.append([d])
            else:
                home.append(d)
        for group in groups:
            triggers, days = len({d.trigger for d in group}), len({d.day for d in group})
            if triggers < config.min_triggers or days < config.min_days:
                continue
            kept = any(iou(group[0].bbox, box) >= config.iou for box in overrides.get(camera, []))
            reason = (f"same box (IoU >= {config.iou:g}) in {triggers} triggers on {days} days"
                      + ("; kept by the user's override" if kept else ""))
            repeats.append(Repeat(camera, group[0].bbox, len(group), triggers, days, not kept, reason,
                                  tuple(sorted(d.det_id for d in group))))
            if not kept:
                suppressed.update(d.det_id for d in group)
    return repeats, suppressed


def read_overrides(path: Path) -> dict[str, list[Box]]:
    """``camera_id, x, y, w, h`` rows (normalized box, origin top-left): places a user keeps."""
    out: dict[str, list[Box]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for n, row in enumerate(csv.DictReader(handle), start=2):
            try:
                box = tuple(float(row[k]) for k in ("x", "y", "w", "h"))
                camera = row["camera_id"].strip()
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path} line {n}: expected columns camera_id, x, y, w, h with numbers") from None
            out.setdefault(camera, []).append(box)
    return out
