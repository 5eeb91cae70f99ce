"""Events: detections condensed into "what passed this camera, when, how many".

A camera trap fires bursts; analysts count *events* (a visit of one species), not frames. The steps:

1. Keep detections at or above ``min_confidence`` (the detector's own confidence), joined to their
   species label on ``detection_id``. A detection that Stage 2 did not label (no crop, or a person or
   vehicle) keeps the detector's coarse label: person -> ``human``, vehicle -> ``vehicle``, animal ->
   the detector label (``dog``).
2. Per camera and per category (animal, person, vehicle: never mixed), cut the time-ordered
   detections into *sequences* wherever consecutive detections are more than ``window_minutes`` apart.
3. Label smoothing, animals only (``smoothing``): within one frame, then within one sequence, each
   species gets a vote weighted by confidence (detector conf x classifier score). When one species
   holds more than half of the votes, species holding less than ``label_smoothing`` of the votes
   are relabelled to it: a single "deer" inside a burst of "elk" is one more elk. Species with a
   larger share stay separate events (a fox and a badger really can share a night). With the
   taxonomy (``smoothing="taxonomy"``, the default; :mod:`hugin.taxonomy`), a label that is an
   ancestor of exactly one other label of the frame or sequence is that animal named less
   precisely ("Cervidae" beside "red deer" is the red deer); ``"vote"`` is the sequence vote alone,
   ``"off"`` none of it.
   Rollup (``rollup_below``, off by default): a species whose mean classifier score in the sequence
   is below the threshold is relabelled to the lowest ancestor whose summed support is not, the
   support of a taxon being the sum of the mean scores of the sequence's unsure species under it
   (capped at 1; a sure species is an animal of its own): a burst split between red deer (0.45)
   and roe deer (0.40) is Cervidae (0.85); a species nothing supports enough becomes Animalia. Each event records the rank it was rolled up to
   (``rollup_level``, also where SpeciesNet's ensemble rolled its labels up).
   Reviewed labels (``reviews``, :mod:`hugin.review`) win: a reviewed detection takes the reviewer's
   label; a media reviewed as a whole has its detections replaced by the reviewer's record (one
   per species, with its count; none when blank). Reviewed labels vote but are never relabelled or
   rolled up, and their events are marked ``reviewed``.
4. Per camera, category and (smoothed) species, a gap of more than ``window_minutes`` between
   consecutive detections starts a new event. ``max_count`` is the largest number of *individuals* of
   that species in any one media frame (the largest simultaneous count, not a sum over the burst).
5. Blank events (optional, needs the media table): ok media with no detection kept in step 1 and no
   kept detection within ``window_minutes`` of them, grouped by the same gap rule.

Counting individuals (decided; :func:`_individuals`): the boxes of one frame are merged into the
animals they show before anything is counted. Motion finds what the detector missed, so a
motion-only box (``source = motion``) stands for an animal only in a frame where the detector boxed
nothing of its category; in a frame where it did, the motion box outlines a part of that animal
(legs, a tail, its shadow, the edge the box left out) or the spot it just left, and was counted
again once smoothing gave it the animal's species (the demo's horse, bear and elephant counted 2).
Such boxes are dropped before smoothing: they neither vote nor count. (A second animal that the
detector misses in every frame where it sees the first is missed by the count; motion is not
evidence enough to tell it from the first animal's parts.) Of the remaining boxes of one species,
two show the same individual when
they overlap with IoU >= ``SAME_ANIMAL_IOU`` (a detector's duplicate boxes) or one lies mostly
inside the other (``NESTED_SHARE``: a head boxed as well as the whole animal). Boxes of distinct
animals in a herd overlap less than that (sheep side by side: IoU 0.14 on the demo).

Times (decided): events are placed by the time in the ``timestamp_issue`` column that
:func:`odins_ravne_assets.hugin.deployments.apply_clock_offsets` adds (computed here from the
timestamps alone when the column is absent):

- ``missing`` or ``file_mtime`` (a file's modification time is when it was copied, not when the
  photo was taken): the media has no capture time. It cannot be placed in a sequence, and guessing
  one would merge unrelated visits, so each such media file becomes its own sequence (events with
  null ``start``/``end``): the animal still counts in species lists and richness, while every
  time-based figure (activity by hour, first/last seen, trap-night rates) skips it.
- ``before_2000`` or ``in_future`` (a clock reset to 1970, a wrong year): the camera clock still
  counts seconds, so frames are grouped into events by it, but the event's ``start``/``end`` are
  null: no 1970 reaches a site's first_seen or an activity plot.
- ``outside_deployment``: a real capture time outside the recorded deployment, used as it is.

Empty input returns an empty table with the ``EVENTS`` schema.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from gpu_ops import schemas
from gpu_ops.boxes import iou, share_inside
from odins_ravne_assets.hugin.deployments import NO_CAPTURE_TIME, UNDATED, timestamp_plausibility
from odins_ravne_assets.hugin.taxonomy import Lineage, common_names, lineage_of, smooth_and_roll_up

# Stage 2 does not always label people and vehicles; these are the names their events carry then.
_DEFAULT_NAMES = {
    "person": ("human", "Homo sapiens"),
    "vehicle": ("vehicle", None),
}
BLANK = "blank"
EVENT_CATEGORIES = ("animal", "person", "vehicle", BLANK)
SMOOTHING = ("taxonomy", "vote", "off")
# A review's observation type -> the detection category it stands for (blank: no detection), and
# the names a review of that type carries when the reviewer gave none.
REVIEW_CATEGORIES = {"animal": "animal", "human": "person", "vehicle": "vehicle"}
_REVIEW_NAMES = {"animal": ("animal", "Animalia"), **_DEFAULT_NAMES}
PER_CAMERA_KEYS = ("compression_window", "min_confidence")


@dataclass(frozen=True)
class _Detection:
    camera_id: str
    detection_id: str
    file_path: str
    frame_number: int
    timestamp: datetime | None  # the camera's clock, what sequences are cut by; None when untimed
    dated: bool  # the timestamp may be reported as a start/end (see "Times" in the module docstring)
    category: str
    species: str
    scientific_name: str | None
    crop_path: str | None
    conf: float
    weight: float  # the vote in label smoothing: detector conf x classifier score
    bbox: tuple[float, float, float, float] | None = None  # normalized x, y, w, h when known
    source: str = "detector"  # detector | motion | detector+motion | review
    score: float | None = None  # the classifier's score of its label
    lineage: Lineage = ()
    rollup_level: str | None = None
    reviewed: bool = False
    count: int | None = None  # a reviewer's count of this species in the media


def settings_for_camera(
    camera_id: str,
    *,
    window_minutes: float,
    min_confidence: float,
    per_camera: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[float, float]:
    """The (window_minutes, min_confidence) for one camera: the run's values unless overridden.

    ``per_camera`` is the profile's ``events.per_camera``: ``{camera_id: {compression_window: 5,
    min_confidence: 0.5}}``; either key may be left out.
    """
    override = dict((per_camera or {}).get(camera_id) or {})
    unknown = sorted(set(override) - set(PER_CAMERA_KEYS))
    if unknown:
        raise ValueError(
            f"events.per_camera[{camera_id!r}] has unknown key(s) {unknown}: "
            f"use only {list(PER_CAMERA_KEYS)}"
        )
    window = float(override.get("compression_window", window_minutes))
    min_conf = float(override.get("min_confidence", min_confidence))
    _check_settings(window, min_conf, where=f"camera {camera_id!r}")
    return window, min_conf


def _check_settings(window_minutes: float, min_confidence: float, *, where: str) -> None:
    if not window_minutes >= 0:
        raise ValueError(f"compression window for {where} is {window_minutes}: use minutes >= 0")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence for {where} is {min_confidence}: use a value in [0, 1]")


def condense_events(
    species_labels: pa.Table,
    detections: pa.Table,
    *,
    window_minutes: float,
    min_confidence: float,
    per_camera: Mapping[str, Mapping[str, float]] | None = None,
    label_smoothing: float | None = 0.25,
    smoothing: str = "taxonomy",
    rollup_below: float | None = None,
    reviews: pa.Table | None = None,
    media: pa.Table | None = None,
    now: datetime | None = None,
) -> pa.Table:
    """Condense one camera's detections into ``schemas.EVENTS`` rows.

    ``detections`` drives the events (timestamps, confidences, frames); ``species_labels`` names them.
    Several cameras in one call are handled camera by camera, each with its own settings.

    Keyword arguments beyond the first two are optional refinements:
    ``per_camera`` overrides window / min_confidence per camera (see :func:`settings_for_camera`);
    ``label_smoothing`` is the vote share below which a minority species in a sequence is relabelled
    to the majority (``None`` or 0 turns smoothing off); ``smoothing`` and ``rollup_below`` are the
    taxonomy steps and ``reviews`` (``schemas.REVIEWS``) the reviewed labels of step 3; ``media`` (``schemas.MEDIA``) adds blank
    events for ok media in which nothing was kept; ``now`` is when "in the future" begins for tables
    without a ``timestamp_issue`` column (default: the current time).
    """
    _check_settings(window_minutes, min_confidence, where="the run")
    if label_smoothing is not None and not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"label_smoothing is {label_smoothing}: use a vote share in [0, 0.5), or None to turn it off"
        )
    if smoothing not in SMOOTHING:
        raise ValueError(f"smoothing is {smoothing!r}: use one of {', '.join(SMOOTHING)}")
    if rollup_below is not None and not 0.0 < rollup_below <= 1.0:
        raise ValueError(f"rollup_below is {rollup_below}: use a score in (0, 1], or None to turn rollup off")
    _require_columns(detections, ("camera_id", "detection_id", "timestamp", "conf"), "detections")
    _require_columns(species_labels, ("detection_id",), "species_labels")

    by_camera: dict[str, list[dict[str, Any]]] = defaultdict(list)
    labels = _labels_by_detection(species_labels)
    names = common_names(labels.values())
    reviewed = _reviews_by_camera(reviews)
    for row in detections.to_pylist():
        by_camera[row["camera_id"]].append(row)
    media_by_camera: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if media is not None:
        wanted = [c for c in ("camera_id", "file_path", "timestamp", "status", "timestamp_issue") if c in media.column_names]
        for row in media.select(wanted).to_pylist():
            row["timestamp"], row["dated"] = _placed_time(row, now)
            media_by_camera[row["camera_id"]].append(row)

    events: list[dict[str, Any]] = []
    for camera_id in sorted(set(by_camera) | set(media_by_camera)):
        window, min_conf = settings_for_camera(
            camera_id, window_minutes=window_minutes, min_confidence=min_confidence, per_camera=per_camera
        )
        kept = _without_parts(_kept_detections(by_camera.get(camera_id, []), labels, min_conf, now))
        if camera_id in reviewed:
            every = _kept_detections(by_camera.get(camera_id, []), labels, 0.0, now)
            kept = _apply_reviews(kept, every, reviewed[camera_id], media_by_camera.get(camera_id, []))
        gap = timedelta(minutes=window)
        smoothed: list[_Detection] = []
        for category in ("animal", "person", "vehicle"):
            of_category = [d for d in kept if d.category == category]
            for sequence in _sequences(of_category, gap):
                if category == "animal":
                    sequence = smooth_and_roll_up(sequence, smoothing, label_smoothing, rollup_below, names)
                smoothed.extend(sequence)
        events.extend(_events_from_detections(smoothed, gap))
        if media is not None:
            events.extend(_blank_events(camera_id, media_by_camera.get(camera_id, []), kept, gap))

    events.sort(key=lambda e: (e["camera_id"], e["start"] is None, e["start"] or datetime.min,
                               e["category"], e["species"] or "", e["event_id"]))
    return pa.Table.from_pylist(events, schema=schemas.EVENTS)


def _require_columns(table: pa.Table, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{name} table lacks column(s) {missing}: expected the schemas.{name.upper()} layout")


def _labels_by_detection(species_labels: pa.Table) -> dict[tuple[str | None, str], dict[str, Any]]:
    # Keyed by camera too: detection ids start with the content hash, so the same photo copied into
    # two camera folders has the same ids in both.
    wanted = [c for c in ("camera_id", "detection_id", "species", "scientific_name", "crop_path", "score",
                          "classifier_label", "taxon_rank", "taxon_class", "rollup_level")
              if c in species_labels.column_names]
    return {(row.get("camera_id"), row["detection_id"]): row for row in species_labels.select(wanted).to_pylist()}


def _placed_time(row: Mapping[str, Any], now: datetime | None) -> tuple[datetime | None, bool]:
    """(time to cut sequences by, whether it may be reported) for one detection or media row."""
    stamp = row["timestamp"]
    issue = row["timestamp_issue"] if "timestamp_issue" in row else timestamp_plausibility(stamp, now)
    if stamp is None or issue in NO_CAPTURE_TIME:
        return None, False
    return stamp, issue not in UNDATED


def _kept_detections(
    rows: list[dict[str, Any]], labels: Mapping[tuple, Mapping[str, Any]], min_confidence: float,
    now: datetime | None = None,
) -> list[_Detection]:
    # Confidences are float32 in the tables: compare in float32 too, or a detection stored as 0.7
    # (0.69999999 in float32) would fall below a threshold of 0.7.
    threshold = np.float32(min_confidence)
    kept = []
    for row in rows:
        conf = row["conf"]
        if conf is None or np.float32(conf) < threshold:
            continue
        category = row.get("category") or "animal"
        label = labels.get((row["camera_id"], row["detection_id"])) or labels.get((None, row["detection_id"])) or {}
        species = label.get("species")
        scientific = label.get("scientific_name")
        lineage = lineage_of(label)
        if not species:
            species, scientific = _DEFAULT_NAMES.get(category, (row.get("label") or category, None))
            lineage = lineage_of({"scientific_name": scientific})
        score = label.get("score")
        weight = float(conf) * (float(score) if score is not None else 1.0)
        timestamp, dated = _placed_time(row, now)
        kept.append(
            _Detection(
                camera_id=row["camera_id"],
                detection_id=row["detection_id"],
                file_path=row.get("file_path") or "",
                frame_number=int(row.get("frame_number") or 0),
                timestamp=timestamp,
                dated=dated,
                category=category,
                species=species,
                scientific_name=scientific,
                crop_path=label.get("crop_path"),
                conf=float(conf),
                weight=weight,
                bbox=_bbox(row),
                source=row.get("source") or "detector",
                score=None if score is None else float(score),
                lineage=lineage,
                rollup_level=label.get("rollup_level"),
            )
        )
    return kept


def _reviews_by_camera(reviews: pa.Table | None) -> dict[str, tuple[dict[str, dict], dict[str, list[dict]]]]:
    """camera -> (detection-level reviews by detection id, media-level reviews by file path)."""
    out: dict[str, tuple[dict[str, dict], dict[str, list[dict]]]] = {}
    for row in (reviews.to_pylist() if reviews is not None else []):
        by_detection, by_media = out.setdefault(row["camera_id"], ({}, defaultdict(list)))
        if row["detection_id"]:
            by_detection[row["detection_id"]] = row
        else:
            by_media[row["file_path"]].append(row)
    return out


def _as_reviewed(d: _Detection, review: Mapping[str, Any], **changes: Any) -> _Detection | None:
    category = REVIEW_CATEGORIES.get(review["observation_type"])
    if category is None:  # reviewed as blank: the detection was not an animal, person or vehicle
        return None
    named = review["species"] or review["scientific_name"]
    species = review["species"] or review["scientific_name"] or _REVIEW_NAMES[category][0]
    scientific = review["scientific_name"] if named else _REVIEW_NAMES[category][1]
    return replace(d, category=category, species=species, scientific_name=scientific, score=1.0,
                   lineage=lineage_of({"scientific_name": scientific}), rollup_level=None, reviewed=True,
                   count=review["count"], **changes)


def _apply_reviews(
    kept: list[_Detection], every: list[_Detection], review: tuple[dict[str, dict], dict[str, list[dict]]],
    media_rows: list[dict[str, Any]],
) -> list[_Detection]:
    """The kept detections with the reviewers' labels (see step 3 of the module docstring).

    A media reviewed as a whole keeps the reviewer's record even where the model kept nothing (an
    animal the detector missed): its time comes from the media table, its picture from the media's
    best detection of that category, if any.
    """
    by_detection, by_media = review
    out = [d for d in kept if d.file_path not in by_media and d.detection_id not in by_detection]
    # A reviewed detection counts even below min_confidence: a person confirmed it.
    for d in every:
        if d.file_path not in by_media and d.detection_id in by_detection:
            relabelled = _as_reviewed(d, by_detection[d.detection_id])
            if relabelled is not None:
                out.append(relabelled)
    media_time = {r["file_path"]: (r["timestamp"], r["dated"]) for r in media_rows}
    for file_path, rows in sorted(by_media.items()):
        in_media = [d for d in every if d.file_path == file_path]
        for i, row in enumerate(rows):
            category = REVIEW_CATEGORIES.get(row["observation_type"])
            if category is None:
                continue
            seen = [d for d in in_media if d.category == category] or in_media
            best = max(seen, key=lambda d: (d.conf, d.detection_id)) if seen else None
            timestamp, dated = (best.timestamp, best.dated) if best else media_time.get(file_path, (None, False))
            base = best or _Detection(
                camera_id=row["camera_id"], detection_id=f"{file_path}#review{i}", file_path=file_path, frame_number=0,
                timestamp=timestamp, dated=dated, category=category, species="", scientific_name=None, crop_path=None,
                conf=1.0, weight=1.0)
            out.append(_as_reviewed(base, row, detection_id=base.detection_id, timestamp=timestamp, dated=dated,
                                    bbox=None, source="review", weight=1.0))
    return out


def _bbox(row: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    values = [row.get(k) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
    return None if any(v is None for v in values) else tuple(float(v) for v in values)


# Two boxes of one species in one frame show the same animal when they overlap this much (a detector's
# duplicates: two boxes on one person had IoU 0.41 on the demo, animals side by side 0.14)...
SAME_ANIMAL_IOU = 0.3
# ...or when one lies this much inside the other (small detectors box a head as well as the animal).
NESTED_SHARE = 0.7


def _without_parts(detections: list[_Detection]) -> list[_Detection]:
    """Drop motion-only boxes from frames where the detector boxed something of their category."""
    drawn = {(d.file_path, d.frame_number, d.category) for d in detections if d.source != "motion"}
    return [d for d in detections if d.source != "motion" or (d.file_path, d.frame_number, d.category) not in drawn]


def _individuals(boxes: list[tuple[float, float, float, float] | None]) -> int:
    """How many animals one frame's boxes of one species show (see the module docstring).

    Boxes are joined into groups (a box joins every box it overlaps enough, transitively); each group
    is one animal. A detection without a box cannot be merged and counts on its own.
    """
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            if a is None or b is None:
                continue
            smaller, larger = (a, b) if a[2] * a[3] <= b[2] * b[3] else (b, a)
            if iou(a, b) >= SAME_ANIMAL_IOU or share_inside(smaller, larger) >= NESTED_SHARE:
                parent[root(i)] = root(j)
    return len({root(i) for i in range(len(boxes))})


def _sequences(detections: list[_Detection], gap: timedelta) -> list[list[_Detection]]:
    """Cut time-ordered detections where the gap exceeds the window; untimed media stand alone."""
    timed = sorted((d for d in detections if d.timestamp is not None),
                   key=lambda d: (d.timestamp, d.file_path, d.frame_number, d.detection_id))
    sequences: list[list[_Detection]] = []
    for d in timed:
        if sequences and d.timestamp - sequences[-1][-1].timestamp <= gap:
            sequences[-1].append(d)
        else:
            sequences.append([d])
    untimed: dict[str, list[_Detection]] = defaultdict(list)
    for d in detections:
        if d.timestamp is None:
            untimed[d.file_path].append(d)
    sequences.extend(sorted(untimed[k], key=lambda d: (d.frame_number, d.detection_id)) for k in sorted(untimed))
    return sequences


def _event_id(camera_id: str, category: str, species: str | None, start: datetime | None, first: str) -> str:
    # Readable prefix (camera, start) for humans; the hash keeps ids unique and stable across runs.
    digest = hashlib.sha1(
        "|".join([camera_id, category, species or "", start.isoformat() if start else "", first]).encode()
    ).hexdigest()[:10]
    when = start.strftime("%Y%m%dT%H%M%S") if start else "notime"
    return f"{camera_id}-{when}-{digest}"


def _events_from_detections(detections: list[_Detection], gap: timedelta) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[_Detection]] = defaultdict(list)
    for d in detections:
        groups[(d.category, d.species)].append(d)
    events = []
    for (category, species), members in sorted(groups.items()):
        for run in _sequences(members, gap):
            per_frame: dict[tuple[str, int], list] = defaultdict(list)
            counted: dict[tuple[str, int], int] = {}
            for d in run:
                per_frame[(d.file_path, d.frame_number)].append(d.bbox)
                if d.count is not None:  # a reviewer counted this species in the media
                    counted[(d.file_path, d.frame_number)] = max(d.count, counted.get((d.file_path, d.frame_number), 0))
            best = max(run, key=lambda d: (d.conf, d.crop_path is not None, -_ts(d), d.detection_id))
            times = [d.timestamp for d in run if d.dated]
            start = min(times) if times else None
            events.append(
                {
                    "camera_id": run[0].camera_id,
                    "event_id": _event_id(run[0].camera_id, category, species, start, run[0].detection_id),
                    "category": category,
                    "species": species,
                    "scientific_name": best.scientific_name,
                    "start": start,
                    "end": max(times) if times else None,
                    "n_media": len({d.file_path for d in run}),
                    "max_count": max(counted.get(frame, _individuals(boxes)) for frame, boxes in per_frame.items()),
                    "best_conf": best.conf,
                    "representative_file_path": best.file_path,
                    "representative_detection_id": best.detection_id,
                    "representative_crop_path": best.crop_path,
                    "rollup_level": best.rollup_level,
                    "reviewed": any(d.reviewed for d in run),
                }
            )
    return events


def _ts(d: _Detection) -> float:
    return d.timestamp.timestamp() if d.timestamp is not None else float("inf")


def _blank_events(
    camera_id: str, media_rows: list[dict[str, Any]], kept: list[_Detection], gap: timedelta
) -> list[dict[str, Any]]:
    occupied = {d.file_path for d in kept}
    kept_times = np.array(sorted(d.timestamp for d in kept if d.timestamp is not None), dtype="datetime64[us]")
    blank = []
    for row in media_rows:
        if row["status"] != "ok" or row["file_path"] in occupied:
            continue
        t = row["timestamp"]
        if t is not None and kept_times.size:
            # An empty frame at the tail of a visit (the animal just left) belongs to that visit.
            i = int(np.searchsorted(kept_times, np.datetime64(t, "us")))
            near = [kept_times[j] for j in (i - 1, i) if 0 <= j < kept_times.size]
            if any(abs(np.datetime64(t, "us") - k) <= np.timedelta64(gap) for k in near):
                continue
        blank.append(row)
    runs: list[list[dict[str, Any]]] = []
    for row in sorted((r for r in blank if r["timestamp"] is not None), key=lambda r: (r["timestamp"], r["file_path"])):
        if runs and row["timestamp"] - runs[-1][-1]["timestamp"] <= gap:
            runs[-1].append(row)
        else:
            runs.append([row])
    runs.extend([r] for r in sorted((r for r in blank if r["timestamp"] is None), key=lambda r: r["file_path"]))
    events = []
    for run in runs:
        times = [r["timestamp"] for r in run if r["dated"]]
        start = min(times) if times else None
        events.append(
            {
                "camera_id": camera_id,
                "event_id": _event_id(camera_id, BLANK, None, start, run[0]["file_path"]),
                "category": BLANK,
                "species": None,
                "scientific_name": None,
                "start": start,
                "end": max(times) if times else None,
                "n_media": len(run),
                "max_count": 0,
                "best_conf": None,
                "representative_file_path": run[0]["file_path"],
                "representative_detection_id": None,
                "representative_crop_path": None,
                "rollup_level": None,
                "reviewed": False,
            }
        )
    return events
