"""The review round trip: labels a person checked, brought back from Timelapse, a Camtrap DP editor
or a MegaDetector file, kept in their own table, and a sample to start the loop.

Reviews live in ``reviews/camera_id=<id>/data.parquet`` (``schemas.REVIEWS``), apart from every
table a stage writes, so re-running Stage 1, Stage 2 or the events never loses them. The events
(:mod:`hugin.events`) read them and let them win; sites and reports follow the events; the exports
take :func:`reviewed_tables` (Camtrap DP marks them ``classificationMethod: human``).

A review is one of two kinds (decided):

- **detection-level** (``detection_id`` set): the reviewer relabelled one of our detections (a
  Camtrap DP media-level row whose ``observationID`` is ours). Blank means it was no animal.
- **media-level** (``detection_id`` null): the reviewer's record of the whole media, one row per
  species with its count, or one ``blank`` row. It replaces the model's detections of that media,
  and counts where the model saw nothing (an animal the detector missed in a negative).

What each source says (decided; unknown files and cameras are reported, not imported):

- **Timelapse CSV** (File > Export data to CSV): ``RelativePath`` and ``File`` name the media,
  with the Timelapse root folder being the input root (the first folder of ``RelativePath`` is the
  camera), or with ``camera`` given, the camera's own folder. The label is the ``Species`` field
  (``species_field``), the count the ``Count`` field; ``Species2``/``Count2`` and so on add more
  species to a media. A row whose species field is empty was not reviewed; ``blank``, ``empty``,
  ``none`` or ``nothing`` says the media is empty; ``human``/``person`` and ``vehicle`` are those
  types. ``DateTime`` is not read: a clock fix is not a label (deployments.csv fixes clocks).
  Every row read is a media-level review.
- **Camtrap DP ``observations.csv``** (ours, edited elsewhere): ``mediaID`` names the media (as
  :mod:`hugin.camtrap_dp_export` writes it), ``observationType``, ``scientificName`` and ``count``
  are the label. A row is a review when it says ``classificationMethod: human``, or differs from
  the model's label (another type, name or count), or is new (an ``observationID`` that is not one
  of our detections). In a media with a new or a blank row, all of the media's rows together are
  its media-level record; other changed rows relabel their detection. An event-level row that
  changed becomes the media-level record of every media holding a detection of the event (with the
  event's count). To drop a false detection set its ``observationType`` to ``blank``: a deleted
  row cannot be told from one never exported.
- **MegaDetector batch output with classifications**: each image entry is the media's record:
  per detection category and top classification, the number of boxes at or above
  ``min_confidence``; an image with none is blank. Where any image carries
  ``"manually_checked": true`` (AddaxAI's verify step), only those images are reviews.

Names are matched to the project's taxonomy (common or scientific names of the labels at hand and
of the default classifier, in any case); a name not found is kept as written.

A later import wins over an earlier one for the same media or detection.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops import schemas
from gpu_ops.classifier import COCO_TAXONOMY
from gpu_ops.megadetector_format import read_batch_output
from gpu_ops.repeat_detections import without_suppressed
from gpu_ops.storage import Storage
from odins_ravne_assets.hugin.camtrap_dp_export import OBSERVATION_TYPES, _media_id
from odins_ravne_assets.hugin.detector_audit import draw_review_sample, is_positive
from odins_ravne_assets.hugin.events import settings_for_camera

FORMATS = ("timelapse", "camtrap-dp", "megadetector")
_BLANK_WORDS = {"blank", "empty", "none", "nothing"}
_TYPE_WORDS = {"human": "human", "person": "human", "people": "human", "vehicle": "vehicle"}
_CATEGORY_OF_TYPE = {"animal": "animal", "human": "person", "vehicle": "vehicle"}
_BINOMIAL = re.compile(r"[A-Z][a-z]+( [a-z]+)?")
# The exports' species labels: the contract columns and how each was classified.
EXPORT_LABELS = pa.schema(list(schemas.SPECIES_LABELS) + [("classification_method", pa.string()), ("count", pa.int32())])
SAMPLE_FILE = "review_sample.csv"
SAMPLE_COLUMNS = ("RelativePath", "File", "DateTime", "Species", "Count", "Kind", "ModelLabel", "ModelConfidence",
                  "Crop", "Image")


class ReviewError(ValueError):
    """A review file that cannot be read: the message says what is wrong and what to do."""


class _Names:
    """Common and scientific names, matched case-insensitively to (species, scientific name)."""

    def __init__(self, labels: Iterable[Mapping[str, Any]]):
        self.known: dict[str, tuple[str, str | None]] = {}
        rows = [{"species": t.species, "scientific_name": t.scientific_name} for t in COCO_TAXONOMY.values()]
        for row in rows + list(labels):
            if row.get("species"):
                pair = (row["species"], row.get("scientific_name"))
                for name in pair:
                    if name:
                        self.known.setdefault(name.strip().lower(), pair)

    def resolve(self, name: str | None, scientific: str | None = None) -> tuple[str | None, str | None]:
        for text in (scientific, name):
            if text and text.strip().lower() in self.known:
                return self.known[text.strip().lower()]
        text = (name or scientific or "").strip() or None
        if scientific:
            return text, scientific.strip()
        return text, text if text and _BINOMIAL.fullmatch(text) else None


def _review(camera_id: str, file_path: str, kind: str, species: str | None, scientific: str | None, count: Any,
            source: str, source_file: str, detection_id: str | None = None) -> dict[str, Any]:
    return {"camera_id": camera_id, "file_path": file_path, "detection_id": detection_id, "observation_type": kind,
            "species": species if kind == "animal" else None, "scientific_name": scientific if kind == "animal" else None,
            "count": _count(count) if kind != "blank" else None, "source": source, "source_file": source_file}


def _count(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        number = int(float(text))
    except ValueError:
        raise ReviewError(f"count {value!r} is not a whole number: fix it in the review file") from None
    if number < 0:
        raise ReviewError(f"count {value!r} is negative: fix it in the review file")
    return number


def _typed(value: str, names: _Names) -> tuple[str, str | None, str | None]:
    """(observation type, species, scientific name) of a reviewer's label."""
    word = value.strip().lower()
    if word in _BLANK_WORDS:
        return "blank", None, None
    if word in _TYPE_WORDS:
        return _TYPE_WORDS[word], None, None
    return ("animal", *names.resolve(value))


def read_timelapse(data: bytes, media: pa.Table, labels: pa.Table, *, source_file: str, camera_id: str | None = None,
                   species_field: str = "Species", count_field: str = "Count") -> tuple[list[dict], list[str]]:
    """Media-level reviews of a Timelapse CSV export, and the files it names that are not in ``media``."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    fields = reader.fieldnames or []
    missing = [f for f in ("File", "RelativePath", species_field) if f not in fields]
    if missing:
        raise ReviewError(f"{source_file} lacks the column(s) {missing}: export the data to CSV from Timelapse "
                          f"(File, RelativePath and the '{species_field}' field; --species-field names another)")
    slots = sorted((f[len(species_field):] for f in fields if re.fullmatch(re.escape(species_field) + r"\d*", f)),
                   key=lambda s: int(s or 1))
    known = {(m["camera_id"], m["file_path"]) for m in media.select(["camera_id", "file_path"]).to_pylist()}
    names, reviews, unknown = _Names(labels.to_pylist()), [], []
    for row in reader:
        folder = PurePosixPath((row.get("RelativePath") or "").replace("\\", "/"))
        parts = [p for p in (folder / (row.get("File") or "")).parts if p not in ("", ".")]
        camera, path = (camera_id, "/".join(parts)) if camera_id else (parts[0], "/".join(parts[1:])) if len(parts) > 1 else (None, "")
        values = [(row.get(species_field + slot) or "", row.get(count_field + slot)) for slot in slots]
        values = [(v, c) for v, c in values if v.strip()]
        if not values:
            continue  # not reviewed
        if (camera, path) not in known:
            unknown.append("/".join(parts))
            continue
        for value, count in values:
            kind, species, scientific = _typed(value, names)
            reviews.append(_review(camera, path, kind, species, scientific, count, "timelapse", source_file))
    return reviews, unknown


def read_camtrap_observations(data: bytes, media: pa.Table, detections: pa.Table, labels: pa.Table, events: pa.Table,
                              *, source_file: str) -> tuple[list[dict], list[str]]:
    """Reviews in an edited Camtrap DP ``observations.csv`` (see the module docstring), and unknown media."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    missing = [f for f in ("observationID", "mediaID", "observationLevel", "observationType", "scientificName", "count")
               if f not in (reader.fieldnames or [])]
    if missing:
        raise ReviewError(f"{source_file} lacks the column(s) {missing}: is this a Camtrap DP observations.csv?")
    media_of = {_media_id(m["camera_id"], m["file_path"]): (m["camera_id"], m["file_path"])
                for m in media.select(["camera_id", "file_path"]).to_pylist()}
    label_of = {(r["camera_id"], r["detection_id"]): r for r in labels.to_pylist()}
    dets = detections.to_pylist()
    ours = {}
    for d in dets:
        ours[d["detection_id"]] = d
        ours[f"{d['camera_id']}/{d['detection_id']}"] = d
    names, unknown = _Names(labels.to_pylist()), []
    rows_of_media: dict[tuple[str, str], list[dict]] = defaultdict(list)
    whole_media: set[tuple[str, str]] = set()
    changed_rows: dict[tuple[str, str], list[tuple[dict, dict]]] = defaultdict(list)
    event_rows = []
    for row in reader:
        kind = row["observationType"].strip()
        scientific = row["scientificName"].strip() or None
        if row["observationLevel"].strip() == "event":
            event_rows.append(row)
            continue
        where = media_of.get(row["mediaID"].strip())
        if where is None:
            unknown.append(row["mediaID"])
            continue
        species, scientific = names.resolve(scientific, scientific) if kind == "animal" else (None, None)
        review = _review(*where, kind if kind in _CATEGORY_OF_TYPE or kind == "blank" else "animal", species, scientific,
                         row["count"], "camtrap-dp", source_file)
        rows_of_media[where].append(review)
        det = ours.get(row["observationID"].strip())
        if det is None or det["camera_id"] != where[0] or kind == "blank":
            whole_media.add(where)
            continue
        model = label_of.get((det["camera_id"], det["detection_id"]), {})
        model_type = OBSERVATION_TYPES.get(det["category"], "unknown")
        model_name = model.get("scientific_name") or ("Homo sapiens" if det["category"] == "person" else None)
        if (row.get("classificationMethod", "").strip() == "human" or kind != model_type
                or (kind == "animal" and scientific != model_name) or (review["count"] or 1) != 1):
            changed_rows[where].append((review, det))
    reviews = [r for where in sorted(whole_media) for r in _merged(rows_of_media[where])]
    for where, changed in sorted(changed_rows.items()):
        if where not in whole_media:
            reviews += [{**review, "detection_id": det["detection_id"], "count": None} for review, det in changed]
    reviews += _event_reviews(event_rows, events, dets, label_of, names, source_file)
    return reviews, unknown


def _merged(rows: list[dict]) -> list[dict]:
    """One media-level row per type and name, counts summed; blank only when nothing else is there."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        if r["observation_type"] == "blank":
            continue
        key = (r["observation_type"], r["species"], r["scientific_name"])
        if key in merged:
            merged[key]["count"] = (merged[key]["count"] or 1) + (r["count"] or 1)
        else:
            merged[key] = dict(r)
    return list(merged.values()) or [rows[0]]


def _event_reviews(rows: list[dict], events: pa.Table, detections: list[dict], label_of: Mapping, names: _Names,
                   source_file: str) -> list[dict]:
    by_id = {e["event_id"]: e for e in events.to_pylist()}
    reviews = []
    for row in rows:
        event = by_id.get(row["observationID"].strip()) or by_id.get(row.get("eventID", "").strip())
        kind = row["observationType"].strip()
        if event is None or event["start"] is None:
            continue
        scientific = row["scientificName"].strip() or None
        unchanged = (kind == OBSERVATION_TYPES.get(event["category"]) and scientific == event["scientific_name"]
                     and _count(row["count"]) in (None, event["max_count"]))
        if unchanged and row.get("classificationMethod", "").strip() != "human":
            continue
        species, scientific = names.resolve(scientific, scientific) if kind == "animal" else (None, None)
        # The event's media: detections of its category inside its span, of its species where any is.
        inside = [d for d in detections if d["camera_id"] == event["camera_id"] and d["category"] == event["category"]
                  and d["timestamp"] is not None and event["start"] <= d["timestamp"] <= event["end"]]
        same = [d for d in inside if label_of.get((d["camera_id"], d["detection_id"]), {}).get("species") == event["species"]]
        for file_path in sorted({d["file_path"] for d in same or inside}):
            reviews.append(_review(event["camera_id"], file_path, kind, species, scientific, row["count"],
                                   "camtrap-dp", source_file))
    return reviews


def read_megadetector_review(data: bytes, media: pa.Table, labels: pa.Table, *, source_file: str, camera_id: str | None,
                             min_confidence: float) -> tuple[list[dict], list[str]]:
    """Media-level reviews of a MegaDetector batch output with classifications (see the module docstring)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReviewError(f"{source_file} is not JSON ({err}): give a MegaDetector batch output file") from None
    if not isinstance(doc, dict) or not doc.get("classification_categories"):
        raise ReviewError(f"{source_file} has no classification_categories: a MegaDetector file without "
                          "classifications holds no reviewed labels")
    try:
        batch = read_batch_output(doc, camera_id=camera_id, media=media)
    except ValueError as err:
        raise ReviewError(str(err)) from None
    images = [i for i in doc.get("images") or [] if isinstance(i, dict)]
    checked = {str(i.get("file", "")).replace("\\", "/").lstrip("/") for i in images if i.get("manually_checked") is True}
    known = {(m["camera_id"], m["file_path"]) for m in media.select(["camera_id", "file_path"]).to_pylist()}
    names = _Names(labels.to_pylist())
    top = {(r["camera_id"], r["detection_id"]): r for r in batch.species_labels.to_pylist()}
    boxes: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for d in batch.detections.to_pylist():
        if d["conf"] >= min_confidence:
            boxes[(d["camera_id"], d["file_path"])].append(d)
    reviews, unknown = [], []
    for m in batch.media.to_pylist():
        where = (m["camera_id"], m["file_path"])
        name = m["file_path"] if camera_id else f"{m['camera_id']}/{m['file_path']}"
        if m["status"] != "ok" or (checked and name not in checked):
            continue
        if where not in known:
            unknown.append(name)
            continue
        counts: dict[tuple, int] = defaultdict(int)
        for d in boxes[where]:
            label = top.get((d["camera_id"], d["detection_id"]))
            kind = {"person": "human"}.get(d["category"], d["category"])
            named = names.resolve(label["species"], label["scientific_name"] if label and ";" not in (label["scientific_name"] or "") else None) \
                if label and kind == "animal" else (None, None)
            counts[(kind, *named)] += 1
        for (kind, species, scientific), n in sorted(counts.items(), key=str) or [(("blank", None, None), None)]:
            reviews.append(_review(*where, kind, species, scientific, n, "megadetector", source_file))
    return reviews, unknown


def merge_reviews(old: pa.Table, new: list[dict], *, imported_at: datetime | None = None) -> pa.Table:
    """The reviews table after an import: the new rows replace older ones of the same media or detection."""
    stamp = imported_at or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    whole = {(r["camera_id"], r["file_path"]) for r in new if r["detection_id"] is None}
    relabelled = {(r["camera_id"], r["detection_id"]) for r in new if r["detection_id"] is not None}
    touched = {(r["camera_id"], r["file_path"]) for r in new}
    kept = [r for r in old.to_pylist()
            if (r["camera_id"], r["file_path"]) not in whole and (r["camera_id"], r["detection_id"]) not in relabelled
            and not (r["detection_id"] is None and (r["camera_id"], r["file_path"]) in touched)]
    rows = kept + [{**r, "imported_at": stamp} for r in new]
    rows.sort(key=lambda r: (r["camera_id"], r["file_path"], r["detection_id"] or "", r["observation_type"], r["species"] or ""))
    return pa.Table.from_pylist(rows, schema=schemas.REVIEWS)


def write_reviews(output: Storage, reviews: pa.Table) -> dict[str, int]:
    """One file per camera (``reviews/camera_id=<id>/data.parquet``); rows per camera written."""
    written = {}
    for camera in sorted(set(reviews.column("camera_id").to_pylist())):
        part = reviews.filter(pc.equal(reviews.column("camera_id"), camera))
        output.write_parquet(schemas.camera_key("reviews", camera), part)
        written[camera] = part.num_rows
    return written


def reviewed_tables(media: pa.Table, detections: pa.Table, labels: pa.Table, reviews: pa.Table, *,
                    boxes_only: bool = False) -> tuple[pa.Table, pa.Table]:
    """Detections and species labels with the reviews applied, for the exports.

    Labels gain ``classification_method`` (``human`` where reviewed, else ``machine``) and ``count``.
    A media-level review stands as one detection per row: the media's best model box of that
    category where there is one, else a box-less one (left out with ``boxes_only``: the MegaDetector
    format needs a box).
    """
    by_detection, by_media = {}, defaultdict(list)
    for r in reviews.to_pylist():
        if r["detection_id"]:
            by_detection[(r["camera_id"], r["detection_id"])] = r
        else:
            by_media[(r["camera_id"], r["file_path"])].append(r)
    label_of = {(r["camera_id"], r["detection_id"]): r for r in labels.to_pylist()}
    media_of = {(m["camera_id"], m["file_path"]): m for m in media.to_pylist()}
    dets_of: dict[tuple[str, str], list[dict]] = defaultdict(list)
    out_dets, out_labels = [], []
    for d in detections.to_pylist():
        key = (d["camera_id"], d["detection_id"])
        dets_of[(d["camera_id"], d["file_path"])].append(d)
        if (d["camera_id"], d["file_path"]) in by_media:
            continue
        review = by_detection.get(key)
        if review is None:
            out_dets.append(d)
            if key in label_of:
                out_labels.append({**label_of[key], "classification_method": "machine", "count": None})
        elif review["observation_type"] != "blank":
            out_dets.append({**d, "category": _CATEGORY_OF_TYPE[review["observation_type"]]})
            out_labels.append(_reviewed_label(d, review))
    for (camera, file_path), rows in sorted(by_media.items()):
        for i, review in enumerate(r for r in rows if r["observation_type"] != "blank"):
            category = _CATEGORY_OF_TYPE[review["observation_type"]]
            seen = [d for d in dets_of.get((camera, file_path), []) if d["category"] == category]
            m = media_of.get((camera, file_path), {})
            if seen:
                best = max(seen, key=lambda d: (d["conf"] or 0.0, d["detection_id"]))
            elif boxes_only:
                continue
            else:
                best = {"camera_id": camera, "file_path": file_path, "sha256": m.get("sha256"), "frame_number": 0,
                        "timestamp": m.get("timestamp"), "label": category, "conf": 1.0, "bbox_x": None, "bbox_y": None,
                        "bbox_w": None, "bbox_h": None, "source": "review", "model": "review"}
            det_id = "review-" + hashlib.sha1(f"{camera}/{file_path}/{i}".encode()).hexdigest()[:16]
            det = {**best, "detection_id": det_id, "category": category}
            out_dets.append(det)
            out_labels.append(_reviewed_label(det, review))
    return (pa.Table.from_pylist(out_dets, schema=detections.schema),
            pa.Table.from_pylist([{f.name: r.get(f.name) for f in EXPORT_LABELS} for r in out_labels], schema=EXPORT_LABELS))


def _reviewed_label(d: Mapping[str, Any], review: Mapping[str, Any]) -> dict[str, Any]:
    species, scientific = review["species"], review["scientific_name"]
    if review["observation_type"] == "human":
        species, scientific = "human", "Homo sapiens"
    return {"camera_id": d["camera_id"], "detection_id": d["detection_id"], "file_path": d["file_path"],
            "crop_path": None, "category": _CATEGORY_OF_TYPE[review["observation_type"]], "detector_label": d.get("label"),
            "species": species or review["observation_type"], "scientific_name": scientific, "score": 1.0,
            "classification_source": f"review:{review['source']}", "classification_method": "human",
            "count": review["count"]}


def sample_for_review(output: Storage, dest: Storage, *, per_camera: int, seed: int, min_confidence: float,
                      media_source: Storage | None = None,
                      overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, int]]:
    """A seeded random sample of each camera's media for review: half positives, half negatives.

    Positives are ok media with an animal detection at or above ``min_confidence`` (suppressed
    repeat detections left out: what the events count and what the detector audit,
    :mod:`odins_ravne_assets.hugin.detector_audit`, calls positive), negatives the rest (the ones
    MegaDetector's advice says to check; a negative's model label is its best other box, a person
    or a vehicle, where it has one), each side drawn across the infrared and daylight frames as
    :func:`~odins_ravne_assets.hugin.detector_audit.draw_review_sample` draws. Writes ``SAMPLE_FILE`` in Timelapse's columns, so the
    filled file goes back in as ``--format timelapse``, with the best crop of each positive under
    ``crops/`` and, when ``media_source`` (the input root) is given, the media themselves under
    ``media/<camera>/`` (open ``media/`` as the Timelapse root). ``overrides`` are the events'
    ``per_camera`` settings: a camera's own ``min_confidence`` wins, as in its events and its audit.
    Returns per camera the positives and negatives drawn.
    """
    from gpu_ops.stage1 import read_infrared  # here: gpu_ops.stage1 brings torch, 4 s the review commands need not wait

    media = output.read_parquet("media", empty=schemas.MEDIA).to_pylist()
    detections = without_suppressed(output.read_parquet("detections", empty=schemas.DETECTIONS),
                                    output.read_parquet("repeat_detections", empty=schemas.REPEAT_DETECTIONS)).to_pylist()
    labels = {(r["camera_id"], r["detection_id"]): r for r in output.read_parquet("species_labels", empty=schemas.SPECIES_LABELS).to_pylist()}
    best: dict[tuple[str, str], dict] = {}  # the box shown: the best animal one, else the best of any category
    threshold = {camera: settings_for_camera(camera, window_minutes=1.0, min_confidence=min_confidence,  # window unused
                                             per_camera=overrides)[1]
                 for camera in {d["camera_id"] for d in detections}}
    for d in detections:
        key = (d["camera_id"], d["file_path"])
        if d["conf"] is None or d["conf"] < threshold[d["camera_id"]]:
            continue
        rank = (d["category"] == "animal", d["conf"])
        if key not in best or rank > (best[key]["category"] == "animal", best[key]["conf"]):
            best[key] = d
    rng = random.Random(seed)
    rows, drawn = [], {}
    for camera in sorted({m["camera_id"] for m in media}):
        ok = sorted((m for m in media if m["camera_id"] == camera and m["status"] == "ok"), key=lambda m: m["file_path"])
        positive = {m["file_path"] for m in ok if (camera, m["file_path"]) in best
                    and is_positive(best[(camera, m["file_path"])], threshold[camera])}
        picked = draw_review_sample(ok, positive, read_infrared(output, camera), per_camera, rng)
        drawn[camera] = {"positives": sum(kind == "positive" for _, kind in picked),
                         "negatives": sum(kind == "negative" for _, kind in picked)}
        for m, kind in sorted(picked, key=lambda p: p[0]["file_path"]):
            path = PurePosixPath(camera) / m["file_path"]
            det = best.get((camera, m["file_path"]))
            label = labels.get((camera, det["detection_id"])) if det else None
            crop = ""
            if label and label.get("crop_path") and output.exists(label["crop_path"]):
                crop = f"crops/{camera}/{PurePosixPath(label['crop_path']).name}"
                dest.write_bytes(crop, output.read_bytes(label["crop_path"]))
            image = ""
            if media_source is not None and media_source.exists(str(path)):
                image = f"media/{path}"
                dest.write_bytes(image, media_source.read_bytes(str(path)))
            rows.append({
                "RelativePath": str(path.parent), "File": path.name,
                "DateTime": m["timestamp"].strftime("%Y-%m-%d %H:%M:%S") if m["timestamp"] else "",
                "Species": "", "Count": "", "Kind": kind,
                "ModelLabel": (label or {}).get("species") or (det["label"] if det else ""),
                "ModelConfidence": f"{det['conf']:.3f}" if det else "", "Crop": crop, "Image": image,
            })
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=SAMPLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    dest.write_bytes(SAMPLE_FILE, text.getvalue().encode("utf-8"))
    return drawn
