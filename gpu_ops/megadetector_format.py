"""The MegaDetector batch output format (1.6): the contract with the tools camera-trap users already run.

Timelapse, AddaxAI and MegaDetector's own postprocessing read this JSON; so does the import that lets
results computed elsewhere join the pipeline. Everything the format fixes is defined here once and
imported by the MegaDetector detector adapters, the import (Munin) and the export (Hugin):

- detection categories ``{"1": "animal", "2": "person", "3": "vehicle"}``; a MegaDetector model's
  0-based class index is the category id minus one;
- a failed media keeps its entry with a ``failure`` string and ``detections: null``, never dropped;
- confidences rounded to 3 digits, box coordinates (normalized ``[x, y, w, h]``, origin top-left) to 4;
- videos carry ``frame_rate`` (the media table's, measured at ingest; never guessed),
  ``frames_processed`` and a ``frame_number`` per detection; a failed video is written as
  MegaDetector writes one: ``frame_rate`` -1 when unknown, no frames processed;
- Stage 2 species go in ``classifications`` with ``classification_categories``.

Detection ids (``<sha256[:16]>-<frame_number>-<index>``) are defined here too: an imported file
must produce the ids Stage 1 would have written, so that both name the same crops and labels.
Reading and writing are inverse: export -> import -> export gives the same JSON. Reading validates
the whole file before returning anything (:func:`read_batch_output`): an import commits all of a
file or none of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.fileio import atomic_write

FORMAT_VERSION = "1.6"
CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
CATEGORY_IDS = {name: category_id for category_id, name in CATEGORIES.items()}
# The models' class indices (what ultralytics reports for an MDv6 / MDv1000 checkpoint).
CLASS_CATEGORIES = {int(category_id) - 1: name for category_id, name in CATEGORIES.items()}
# MegaDetector's own failure strings; ours say more (e.g. "truncated JPEG: ..."), this one is the
# fallback for a failed media whose reason was not recorded.
FAILURE_IMAGE_ACCESS = "Failure image access"
CONF_DIGITS = 3
COORD_DIGITS = 4
BBOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
# MegaDetector's frame rate of a video it could not read.
UNKNOWN_FRAME_RATE = -1.0
# Box coordinates may overshoot the image by this much (each is rounded to COORD_DIGITS on write);
# such boxes are clipped to the image, anything further out is an error in the file.
BBOX_TOLERANCE = 1e-3
# What the format knows about videos and the contract's media table does not: kept on read media
# so that a re-export is unchanged.
MEDIA_EXTRAS = [("frames_processed", pa.list_(pa.int32()))]
MEDIA_SCHEMA = pa.schema(list(schemas.MEDIA) + [pa.field(name, kind) for name, kind in MEDIA_EXTRAS])


def detection_id(sha256: str, frame_number: int, index: int) -> str:
    """The stable id of the ``index``-th detection on a frame of the media with this content hash."""
    return f"{sha256[:16]}-{frame_number}-{index}"


def _index_in_frame(det_id: str) -> int:
    try:
        return int(str(det_id).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


@dataclass
class BatchOutput:
    """A batch output file as contract tables."""

    media: pa.Table  # MEDIA_SCHEMA: schemas.MEDIA plus MEDIA_EXTRAS
    detections: pa.Table  # schemas.DETECTIONS
    species_labels: pa.Table  # schemas.SPECIES_LABELS (the top classification of each detection)
    info: dict[str, Any]


# -- write ----------------------------------------------------------------------------------------

def info_block(models: Iterable[str], classifiers: Iterable[str], *, classified: bool,
               overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The file's ``info``: format version, detector(s), completion time and, when classified, the classifier(s).

    ``overrides`` (e.g. the ``info`` of an imported file, to reproduce it exactly) win over the
    generated entries, except the format version, which is what this module writes.
    """
    models, classifiers = sorted(set(models)), sorted(set(classifiers))
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "detector": models[0] if len(models) == 1 else ("; ".join(models) or "unknown"),
        "detection_completion_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    }
    if classified:
        info["classifier"] = "; ".join(classifiers) or "unknown"
    info.update(dict(overrides or {}))
    info["format_version"] = FORMAT_VERSION
    return info


def to_batch_output(
    media: Iterable[Mapping[str, Any]],
    detections: Iterable[Mapping[str, Any]],
    species_labels: Iterable[Mapping[str, Any]] = (),
    *,
    camera_id: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Contract rows (media, detections, species labels) as a batch output document.

    With ``camera_id``, the rows are that camera's and file names are relative to its folder;
    without, names are ``<camera_id>/<file_path>``, relative to the input root. ``info``: see
    :func:`info_block`.
    """
    media, detections = list(media), list(detections)
    labels = {(r["camera_id"], r["detection_id"]): r for r in species_labels}
    used_labels = [labels[(d["camera_id"], d["detection_id"])] for d in detections
                   if labels.get((d["camera_id"], d["detection_id"]), {}).get("species")]
    class_names = sorted({r["species"] for r in used_labels})
    class_ids = {name: str(i) for i, name in enumerate(class_names)}
    scientific: dict[str, str] = {}
    for r in used_labels:
        if r.get("scientific_name"):
            scientific.setdefault(r["species"], r["scientific_name"])

    by_media: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for d in detections:
        by_media[(d["camera_id"], d["file_path"])].append(d)
    images = []
    for m in sorted(media, key=lambda m: (m["camera_id"], m["file_path"])):
        name = m["file_path"] if camera_id is not None else f"{m['camera_id']}/{m['file_path']}"
        if m["status"] != "ok":
            entry = {"file": name, "failure": m.get("failure") or FAILURE_IMAGE_ACCESS, "detections": None}
            if m.get("media_type") == "video":
                entry.update(frame_rate=float(m.get("frame_rate") or UNKNOWN_FRAME_RATE), frames_processed=[])
            images.append(entry)
            continue
        dets = sorted(by_media.get((m["camera_id"], m["file_path"]), []),
                      key=lambda d: (d["frame_number"] or 0, _index_in_frame(d["detection_id"]), d["detection_id"]))
        images.append(_image_entry(name, m, dets, labels, class_ids))

    result: dict[str, Any] = {
        "info": info_block((d["model"] for d in detections if d.get("model")),
                           (r["classification_source"] for r in used_labels if r.get("classification_source")),
                           classified=bool(class_names), overrides=info),
        "detection_categories": dict(CATEGORIES),
    }
    if class_names:
        result["classification_categories"] = {class_ids[n]: n for n in class_names}
        if all(n in scientific for n in class_names):
            result["classification_category_descriptions"] = {class_ids[n]: scientific[n] for n in class_names}
    result["images"] = images
    return result


def _image_entry(name: str, m: Mapping[str, Any], dets: list[Mapping[str, Any]],
                 labels: Mapping[tuple[str, str], Mapping[str, Any]], class_ids: Mapping[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": name}
    is_video = m.get("media_type") == "video"
    if is_video:
        if m.get("frame_rate"):  # ingest measures it; a table from elsewhere may not know it
            entry["frame_rate"] = float(m["frame_rate"])
        entry["frames_processed"] = (list(m["frames_processed"]) if m.get("frames_processed") is not None
                                     else sorted({0, *(d["frame_number"] or 0 for d in dets)}))
    out = []
    for d in dets:
        if d["category"] not in CATEGORY_IDS:
            continue
        det: dict[str, Any] = {
            "category": CATEGORY_IDS[d["category"]],
            "conf": round(float(d["conf"]), CONF_DIGITS),
            "bbox": [round(float(d[k]), COORD_DIGITS) for k in BBOX_COLUMNS],
        }
        if is_video:
            det["frame_number"] = int(d["frame_number"] or 0)
        label = labels.get((d["camera_id"], d["detection_id"]))
        if label and label.get("species") and label.get("score") is not None:
            det["classifications"] = [[class_ids[label["species"]], round(float(label["score"]), CONF_DIGITS)]]
        out.append(det)
    entry["detections"] = out
    return entry


def write_batch_output(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Write a batch output document as JSON, atomically (MegaDetector's own layout: indent 1)."""
    return atomic_write(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


# -- read -----------------------------------------------------------------------------------------

def read_batch_output(
    source: str | Path | bytes | Mapping[str, Any],
    *,
    camera_id: str | None = None,
    media: pa.Table | None = None,
) -> BatchOutput:
    """Validate and read a batch output file (from here or from any MegaDetector run) into contract tables.

    ``camera_id``: the file covers one camera and its paths are relative to that camera's folder;
    without it, the first path component is the camera. ``media`` (the ``raw_images`` manifest):
    sha256, timestamps and the rest are taken from it, so detection ids match what Stage 1 would
    write; without it, sha256 is unknown (null) and detection ids use a hash of the path instead.
    Detections of categories other than animal, person and vehicle are skipped, as the format says.

    The whole file is checked first and any problem raises one ``ValueError`` that names the file,
    the entry and what is wrong: a file listed twice (its detections would count twice), a box that
    is not four finite numbers inside the image, a confidence or classification score outside
    [0, 1], a classification of an unknown class, a negative frame number.
    """
    if isinstance(source, Mapping):
        doc, where = dict(source), "MegaDetector JSON"
    else:
        where = "MegaDetector JSON" if isinstance(source, bytes) else f"MegaDetector JSON {Path(source).name}"
        text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not JSON ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("detection_categories"), dict):
        raise ValueError(f"{where}: needs 'images' (a list) and 'detection_categories'; is this a batch output file?")
    info = dict(doc.get("info") or {})
    categories = {str(k): v for k, v in doc["detection_categories"].items()}
    class_names = {str(k): v for k, v in (doc.get("classification_categories") or {}).items()}
    class_desc = {str(k): v for k, v in (doc.get("classification_category_descriptions") or {}).items()}
    known = {(m["camera_id"], m["file_path"]): m for m in media.to_pylist()} if media is not None else {}
    model = info.get("detector") or "megadetector"
    classifier = info.get("classifier") or "megadetector-json"

    problems: list[str] = []
    listed: dict[tuple[str, str], int] = {}
    media_rows, det_rows, label_rows = [], [], []
    for n, image in enumerate(doc["images"]):
        if not isinstance(image, dict):
            problems.append(f"images[{n}] is not an object")
            continue
        file = str(image.get("file") or "").replace("\\", "/")
        if not file:
            problems.append(f"images[{n}] has no 'file'")
            continue
        if camera_id is not None:
            camera, rel = camera_id, file.lstrip("/")
        else:
            parts = file.lstrip("/").split("/", 1)
            if len(parts) < 2:
                raise ValueError(f"{where}: images[{n}] file {file!r} has no camera folder; pass camera_id= for a per-camera file")
            camera, rel = parts
        if (camera, rel) in listed:
            problems.append(f"images[{n}] {file!r} is listed twice (also images[{listed[(camera, rel)]}]): keep one entry per file")
            continue
        listed[(camera, rel)] = n
        row = _media_row(camera, rel, image, known.get((camera, rel)))
        media_rows.append(row)
        if row["status"] != "ok":
            continue
        entry = f"images[{n}] {file!r}"
        if not isinstance(image.get("detections"), list):
            problems.append(f"{entry} has neither a 'failure' nor a 'detections' list")
            continue
        sha = row["sha256"]
        id_hash = sha or hashlib.sha256(f"path:{camera}/{rel}".encode()).hexdigest()
        per_frame: dict[int, int] = defaultdict(int)
        for k, det in enumerate(image["detections"]):
            what = f"{entry} detection {k}"
            category = categories.get(str(det.get("category"))) if isinstance(det, dict) else None
            if category not in CATEGORY_IDS:
                if not isinstance(det, dict):
                    problems.append(f"{what} is not an object")
                continue
            checked = _checked_detection(det, class_names, what)
            if isinstance(checked, str):
                problems.append(checked)
                continue
            frame, conf, bbox, classes = checked
            det_id = detection_id(id_hash, frame, per_frame[frame])
            per_frame[frame] += 1
            ts = row["timestamp"]
            if ts is not None and frame and row["frame_rate"]:
                ts = ts + timedelta(seconds=frame / float(row["frame_rate"]))
            det_rows.append({
                "camera_id": camera, "detection_id": det_id, "file_path": rel, "sha256": sha,
                "frame_number": frame, "timestamp": ts, "category": category, "label": category,
                "conf": conf, **dict(zip(BBOX_COLUMNS, bbox)),
                "source": "detector", "model": model,
            })
            if classes:
                top_id, top_score = max(classes, key=lambda c: c[1])
                label_rows.append({
                    "camera_id": camera, "detection_id": det_id, "file_path": rel, "crop_path": None,
                    "category": category, "detector_label": category,
                    "species": class_names[top_id], "scientific_name": class_desc.get(top_id),
                    "taxon_rank": None, "taxon_class": None, "score": top_score,
                    "classification_source": classifier,
                })
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{where}: {problems[0]}{more}; nothing was read: fix the file and try again")
    return BatchOutput(
        pa.Table.from_pylist(media_rows, schema=MEDIA_SCHEMA),
        pa.Table.from_pylist(det_rows, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(label_rows, schema=schemas.SPECIES_LABELS),
        info,
    )


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (strings, booleans, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _checked_detection(det: Mapping[str, Any], class_names: Mapping[str, str], what: str):
    """``(frame_number, conf, bbox, classifications)`` of a valid detection, else the problem (a str).

    A box overshooting the image by up to ``BBOX_TOLERANCE`` (rounding) is clipped to it.
    """
    frame = det.get("frame_number", 0)
    if frame is None:
        frame = 0
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        return f"{what}: frame_number {frame!r} is not a frame index (a whole number from 0)"
    conf = _number(det.get("conf"))
    if conf is None or not 0.0 <= conf <= 1.0:
        return f"{what}: conf {det.get('conf')!r} is not a number in [0, 1]"
    bbox = det.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        size = f"has {len(bbox)} numbers" if isinstance(bbox, list) else "is missing" if bbox is None else "is not a list"
        return f"{what}: bbox {bbox!r} {size}, expected [x, y, width, height]"
    numbers = [_number(v) for v in bbox]
    if any(v is None for v in numbers):
        return f"{what}: bbox {bbox!r} holds a value that is not a finite number"
    x, y, w, h = numbers
    if w <= 0 or h <= 0 or x < -BBOX_TOLERANCE or y < -BBOX_TOLERANCE or x + w > 1 + BBOX_TOLERANCE or y + h > 1 + BBOX_TOLERANCE:
        return f"{what}: bbox {bbox!r} is not inside the image (normalized [x, y, width, height], each in [0, 1])"
    x, y = max(0.0, x), max(0.0, y)
    bbox = [x, y, min(w, 1.0 - x), min(h, 1.0 - y)]
    classes = []
    for c in det.get("classifications") or []:
        if not isinstance(c, (list, tuple)) or len(c) < 2 or str(c[0]) not in class_names:
            return f"{what}: classification {c!r} is not [class id, score] of a class in classification_categories"
        score = _number(c[1])
        if score is None or not 0.0 <= score <= 1.0:
            return f"{what}: classification {c!r} has a score outside [0, 1]"
        classes.append((str(c[0]), score))
    return frame, conf, bbox, classes


def _media_row(camera: str, rel: str, image: Mapping[str, Any], manifest_row: Mapping[str, Any] | None) -> dict[str, Any]:
    base = dict(manifest_row or {})
    failure = image.get("failure")
    is_video = "frame_rate" in image or "frames_processed" in image
    rate = _number(image.get("frame_rate"))
    row = {f.name: base.get(f.name) for f in schemas.MEDIA}
    row.update({
        "camera_id": camera, "file_path": rel,
        "media_type": base.get("media_type") or ("video" if is_video else "image"),
        "status": "failed" if failure else "ok",
        "failure": str(failure) if failure else None,
        # The manifest's own measurement wins; the file's -1 means unknown.
        "frame_rate": base.get("frame_rate") or (rate if rate and rate > 0 else None),
        "frames_processed": image.get("frames_processed"),
    })
    if not base:
        row["timestamp_source"] = "none"
        row["gps_status"] = "missing"
        row["frame_count"] = 1 if not is_video else None
    return row
