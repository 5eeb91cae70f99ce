"""The MegaDetector batch output format (1.6): the contract with the tools camera-trap users already run.

Timelapse, AddaxAI and MegaDetector's own postprocessing read this JSON; so does the import that lets
results computed elsewhere join the pipeline. Everything the format fixes is defined here once and
imported by the MegaDetector detector adapters, the import (Munin) and the export (Hugin):

- detection categories ``{"1": "animal", "2": "person", "3": "vehicle"}``; a MegaDetector model's
  0-based class index is the category id minus one;
- a failed media keeps its entry with a ``failure`` string and ``detections: null``, never dropped;
- confidences rounded to 3 digits, box coordinates (normalized ``[x, y, w, h]``, origin top-left) to 4;
- videos carry ``frame_rate``, ``frames_processed`` and a ``frame_number`` per detection;
- Stage 2 species go in ``classifications`` with ``classification_categories``.

Detection ids (``<sha256[:16]>-<frame_number>-<index>``) are defined here too: an imported file
must produce the ids Stage 1 would have written, so that both name the same crops and labels.
Reading and writing are inverse: export -> import -> export gives the same JSON.
"""

from __future__ import annotations

import hashlib
import json
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
# What the format knows about videos and the contract's media table does not (yet): kept on read
# media so that a re-export is unchanged.
MEDIA_EXTRAS = [("frame_rate", pa.float64()), ("frames_processed", pa.list_(pa.int32()))]
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
            images.append({"file": name, "failure": m.get("failure") or FAILURE_IMAGE_ACCESS, "detections": None})
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
        rate = _frame_rate(m, dets)
        if rate is not None:  # unknown for a video without frame_rate whose detections are all on frame 0
            entry["frame_rate"] = rate
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


def _frame_rate(m: Mapping[str, Any], dets: list[Mapping[str, Any]]) -> float | None:
    """The video's frame rate: from a ``frame_rate`` media column when there is one, else derived
    from its detections (media time + frame offset: frame_number / offset), else None."""
    if m.get("frame_rate"):
        return float(m["frame_rate"])
    start = m.get("timestamp")
    for d in dets:
        if d["frame_number"] and start is not None and d["timestamp"] is not None:
            seconds = (d["timestamp"] - start).total_seconds()
            if seconds > 0:
                return round(d["frame_number"] / seconds, 3)
    return None


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
    """
    if isinstance(source, Mapping):
        doc = dict(source)
    else:
        text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
        doc = json.loads(text)
    where = "MegaDetector JSON"
    if not isinstance(doc.get("images"), list) or not isinstance(doc.get("detection_categories"), dict):
        raise ValueError(f"{where}: needs 'images' (a list) and 'detection_categories'; is this a batch output file?")
    info = dict(doc.get("info") or {})
    categories = {str(k): v for k, v in doc["detection_categories"].items()}
    class_names = {str(k): v for k, v in (doc.get("classification_categories") or {}).items()}
    class_desc = {str(k): v for k, v in (doc.get("classification_category_descriptions") or {}).items()}
    known = {(m["camera_id"], m["file_path"]): m for m in media.to_pylist()} if media is not None else {}
    model = info.get("detector") or "megadetector"
    classifier = info.get("classifier") or "megadetector-json"

    media_rows, det_rows, label_rows = [], [], []
    for n, image in enumerate(doc["images"]):
        file = str(image.get("file") or "").replace("\\", "/")
        if not file:
            raise ValueError(f"{where}: images[{n}] has no 'file'")
        if camera_id is not None:
            camera, rel = camera_id, file.lstrip("/")
        else:
            parts = file.lstrip("/").split("/", 1)
            if len(parts) < 2:
                raise ValueError(f"{where}: images[{n}] file {file!r} has no camera folder; pass camera_id= for a per-camera file")
            camera, rel = parts
        row = _media_row(camera, rel, image, known.get((camera, rel)))
        media_rows.append(row)
        if row["status"] != "ok":
            continue
        sha = row["sha256"]
        id_hash = sha or hashlib.sha256(f"path:{camera}/{rel}".encode()).hexdigest()
        per_frame: dict[int, int] = defaultdict(int)
        for det in image.get("detections") or []:
            category = categories.get(str(det.get("category")))
            if category not in CATEGORY_IDS:
                continue
            frame = int(det.get("frame_number") or 0)
            det_id = detection_id(id_hash, frame, per_frame[frame])
            per_frame[frame] += 1
            bbox = det.get("bbox") or [0, 0, 0, 0]
            ts = row["timestamp"]
            if ts is not None and frame and image.get("frame_rate"):
                ts = ts + timedelta(seconds=frame / float(image["frame_rate"]))
            det_rows.append({
                "camera_id": camera, "detection_id": det_id, "file_path": rel, "sha256": sha,
                "frame_number": frame, "timestamp": ts, "category": category, "label": category,
                "conf": float(det.get("conf") or 0.0), **dict(zip(BBOX_COLUMNS, bbox)),
                "source": "detector", "model": model,
            })
            classes = det.get("classifications") or []
            if classes:
                top_id, top_score = max(classes, key=lambda c: c[1])
                label_rows.append({
                    "camera_id": camera, "detection_id": det_id, "file_path": rel, "crop_path": None,
                    "category": category, "detector_label": category,
                    "species": class_names.get(str(top_id), str(top_id)),
                    "scientific_name": class_desc.get(str(top_id)),
                    "taxon_rank": None, "taxon_class": None, "score": float(top_score),
                    "classification_source": classifier,
                })
    return BatchOutput(
        pa.Table.from_pylist(media_rows, schema=MEDIA_SCHEMA),
        pa.Table.from_pylist(det_rows, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(label_rows, schema=schemas.SPECIES_LABELS),
        info,
    )


def _media_row(camera: str, rel: str, image: Mapping[str, Any], manifest_row: Mapping[str, Any] | None) -> dict[str, Any]:
    base = dict(manifest_row or {})
    failure = image.get("failure")
    is_video = "frame_rate" in image or "frames_processed" in image
    row = {f.name: base.get(f.name) for f in schemas.MEDIA}
    row.update({
        "camera_id": camera, "file_path": rel,
        "media_type": base.get("media_type") or ("video" if is_video else "image"),
        "status": "failed" if failure else "ok",
        "failure": failure or None,
        "frame_rate": image.get("frame_rate"),
        "frames_processed": image.get("frames_processed"),
    })
    if not base:
        row["timestamp_source"] = "none"
        row["gps_status"] = "missing"
        row["frame_count"] = 1 if not is_video else None
    return row
