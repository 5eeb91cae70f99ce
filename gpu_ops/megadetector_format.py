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
- Stage 2 species go in ``classifications`` with ``classification_categories`` (common names) and
  ``classification_category_descriptions``: each class's lineage as SpeciesNet writes it,
  ``uuid;class;order;family;genus;species;common name`` (SpeciesNet's own label; for the other
  classifiers the taxon path of :func:`gpu_ops.classifier.lineage`, uuid empty): what Timelapse
  searches. A detection's ``classifications`` are its label first, then the classifier's next best
  classes (``top_classifications``) scoring no more than the label, up to ``top_k`` in all: sorted
  by score as the format says, so a reader taking the best takes the pipeline's label;
- ``info.detector_metadata`` (``megadetector_version``, ``typical_detection_threshold``,
  ``conservative_detection_threshold``): MegaDetector's published values for a MegaDetector model
  (a threshold it publishes none for is left out, as MegaDetector writes it), else version
  ``unknown`` with this pipeline's own thresholds: events count detections from
  ``pipeline.events.min_confidence`` (typical), Stage 1 writes them from
  ``pipeline.stage1.confidence_threshold`` (conservative). Timelapse takes its default thresholds from it.

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
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.classifier import Taxon, lineage, taxon_of_lineage
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
TOP_K = 3  # classifications written per detection, at most
# MegaDetector's published thresholds, (typical, conservative), from its run_detector.known_models.
MEGADETECTOR_THRESHOLDS = {
    "v2.0.0": (0.8, 0.3), "v3.0.0": (0.8, 0.3), "v4.1.0": (0.8, 0.3),
    "v5a.0.0": (0.2, 0.05), "v5b.0.0": (0.2, 0.05), "v5a.0.1": (0.2, 0.05), "v5b.0.1": (0.2, 0.05),
    "v1000.0.0-redwood": (0.3, None), "v1000.0.0-spruce": (None, None), "v1000.0.0-larch": (None, None),
    "v1000.0.0-cedar": (None, None), "v1000.0.0-sorrel": (None, None),
}
# The pipeline's own thresholds where a model is not MegaDetector: the defaults of
# EventSettings.min_confidence and Stage1Settings.confidence_threshold unless the export is given the profile's.
DEFAULT_THRESHOLDS = (0.3, 0.1)
_LINEAGE = re.compile(r"[^;]*(;[^;]*){6}")


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

def megadetector_version(model: str) -> str | None:
    """MegaDetector's version string for a model name (``md_v5a.0.0``, ``megadetector-v1000-redwood``), else None."""
    name = model.lower()
    for version in sorted(MEGADETECTOR_THRESHOLDS, key=len, reverse=True):  # stable: v5a.0.0 before v5a.0.1
        number, _, family = version.partition("-")
        release = number.split(".")[0] + (f"-{family}" if family else "")  # the registry's v5a, v1000-redwood
        if version in name or re.search(rf"megadetector-{re.escape(release)}\b", name):
            return version
    return None


def detector_metadata(models: Iterable[str], thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """``info.detector_metadata`` as MegaDetector writes it, for the models of a file.

    ``thresholds``: (typical, conservative) of this pipeline, used where the model is not one
    MegaDetector publishes thresholds for.
    """
    versions = {megadetector_version(m) for m in models}
    version = versions.pop() if len(versions) == 1 else None
    typical, conservative = MEGADETECTOR_THRESHOLDS.get(version, (None, None)) if version else (None, None)
    if version is None or (typical is None and conservative is None):
        typical, conservative = thresholds[0], min(thresholds)
    meta: dict[str, Any] = {"megadetector_version": version or "unknown"}
    if typical is not None:
        meta["typical_detection_threshold"] = typical
    if conservative is not None:
        meta["conservative_detection_threshold"] = conservative
    return meta


def info_block(models: Iterable[str], classifiers: Iterable[str], *, classified: bool,
               overrides: Mapping[str, Any] | None = None,
               thresholds: tuple[float, float] = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    """The file's ``info``: format version, detector(s) and their metadata, completion time and, when
    classified, the classifier(s).

    ``overrides`` (e.g. the ``info`` of an imported file, to reproduce it exactly) win over the
    generated entries, except the format version, which is what this module writes.
    """
    models, classifiers = sorted(set(models)), sorted(set(classifiers))
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "detector": models[0] if len(models) == 1 else ("; ".join(models) or "unknown"),
        "detection_completion_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "detector_metadata": detector_metadata(models, thresholds),
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
    top_k: int = TOP_K,
    thresholds: tuple[float, float] = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Contract rows (media, detections, species labels) as a batch output document.

    With ``camera_id``, the rows are that camera's and file names are relative to its folder;
    without, names are ``<camera_id>/<file_path>``, relative to the input root. ``info``: see
    :func:`info_block`; ``top_k``: classifications per detection, at most; ``thresholds``: the
    pipeline's (typical, conservative) detection thresholds, see :func:`detector_metadata`.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1 (the label itself), got {top_k}")
    media, detections = list(media), list(detections)
    labels = {(r["camera_id"], r["detection_id"]): r for r in species_labels}
    used_labels = [labels[(d["camera_id"], d["detection_id"])] for d in detections
                   if labels.get((d["camera_id"], d["detection_id"]), {}).get("species")]
    ranked = {(r["camera_id"], r["detection_id"]): _ranked_classes(r, top_k) for r in used_labels
              if r.get("score") is not None}
    descriptions: dict[str, str] = {}
    for r in used_labels:  # a label's own lineage first, then those of the alternatives
        descriptions.setdefault(r["species"], label_lineage(r))
    for classes in ranked.values():
        for name, _, line in classes[1:]:
            descriptions.setdefault(name, line)
    class_names = sorted(descriptions)
    class_ids = {name: str(i) for i, name in enumerate(class_names)}

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
        images.append(_image_entry(name, m, dets, ranked, class_ids))

    result: dict[str, Any] = {
        "info": info_block((d["model"] for d in detections if d.get("model")),
                           (r["classification_source"] for r in used_labels if r.get("classification_source")),
                           classified=bool(class_names), overrides=info, thresholds=thresholds),
        "detection_categories": dict(CATEGORIES),
    }
    if class_names:
        result["classification_categories"] = {class_ids[n]: n for n in class_names}
        result["classification_category_descriptions"] = {class_ids[n]: descriptions[n] for n in class_names}
    result["images"] = images
    return result


def label_lineage(label: Mapping[str, Any]) -> str:
    """A species label's lineage string: the classifier's own (SpeciesNet's label), else its taxon path."""
    own = label.get("classifier_label")
    if own and _LINEAGE.fullmatch(own):
        return own
    return lineage(Taxon(label["species"], label.get("scientific_name"), label.get("taxon_rank"), label.get("taxon_class")))


def _ranked_classes(label: Mapping[str, Any], top_k: int) -> list[tuple[str, float, str]]:
    """``(name, score, lineage)``: the label, then the classifier's next best scoring no more, ``top_k`` in all."""
    score = round(float(label["score"]), CONF_DIGITS)
    classes = [(label["species"], score, label_lineage(label))]
    for alt in label.get("top_classifications") or []:
        alt_score = round(float(alt["score"]), CONF_DIGITS)
        if len(classes) >= top_k:
            break
        if alt["species"] and alt_score <= score and all(alt["species"] != c[0] for c in classes):
            classes.append((alt["species"], alt_score,
                            alt.get("lineage") or lineage(Taxon(alt["species"], None, None, None))))
    return classes


def _image_entry(name: str, m: Mapping[str, Any], dets: list[Mapping[str, Any]],
                 ranked: Mapping[tuple[str, str], list[tuple[str, float, str]]],
                 class_ids: Mapping[str, str]) -> dict[str, Any]:
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
        classes = ranked.get((d["camera_id"], d["detection_id"]))
        if classes:
            det["classifications"] = [[class_ids[n], score] for n, score, _ in classes]
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
                label_rows.append(_label_row(camera, det_id, rel, category, classes, class_names, class_desc, classifier))
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{where}: {problems[0]}{more}; nothing was read: fix the file and try again")
    return BatchOutput(
        pa.Table.from_pylist(media_rows, schema=MEDIA_SCHEMA),
        pa.Table.from_pylist(det_rows, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(label_rows, schema=schemas.SPECIES_LABELS),
        info,
    )


def _label_row(camera: str, det_id: str, rel: str, category: str, classes: list[tuple[str, float]],
               class_names: Mapping[str, str], class_desc: Mapping[str, str], classifier: str) -> dict[str, Any]:
    """A species label from a detection's classifications: the best one; all of them as its top classes.

    A lineage description (SpeciesNet's layout) is kept as ``classifier_label`` and gives the
    scientific name, rank and class; any other description is taken as the scientific name.
    """
    ordered = sorted(classes, key=lambda c: -c[1])  # stable: the first listed wins a tie
    top_id, top_score = ordered[0]
    description = class_desc.get(top_id)
    row = {
        "camera_id": camera, "detection_id": det_id, "file_path": rel, "crop_path": None,
        "category": category, "detector_label": category, "species": class_names[top_id],
        "scientific_name": description, "taxon_rank": None, "taxon_class": None, "score": top_score,
        "classification_source": classifier,
    }
    if description and _LINEAGE.fullmatch(description):
        taxon = taxon_of_lineage(description)
        row.update(scientific_name=taxon.scientific_name, taxon_rank=taxon.taxon_rank, taxon_class=taxon.taxon_class,
                   classifier_label=description)
    if len(ordered) > 1:
        row["top_classifications"] = [{"species": class_names[c], "lineage": class_desc.get(c), "score": score}
                                      for c, score in ordered]
    return row


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
