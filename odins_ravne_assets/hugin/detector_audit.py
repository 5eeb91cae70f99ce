"""How many of a camera's animals the detector finds, estimated from the user's own reviews.

The detector's recall on real camera-trap frames depends on the camera, its scene and the light: the
offline default boxes about a third of real infrared animal frames (README, Detection on real
frames), MegaDetector far more, and no benchmark says what either does on *this* project's cameras.
A review of a random sample does. ``odins-ravne review sample`` draws, per camera, media the
detector calls positive (an animal box at or above the events' ``min_confidence``) and media it
calls negative; the reviewer says of each whether an animal is in it. Per camera and lighting
(infrared or daylight, as Stage 1 judged the frame, :func:`gpu_ops.stage1.read_infrared`; media
without a thumbnail, such as videos, are ``unknown``), with ``N+`` positives and ``N-`` negatives of
which ``r+`` and ``r-`` were reviewed, ``c`` of those positives confirmed and ``m`` of those
negatives with an animal after all:

- precision ``p = c / r+``, the animal share of the negatives ``q = m / r-``;
- animal media ``A = N+ p + N- q``, missed ``N- q``, recall ``N+ p / A``;
- the ``all`` row sums the strata (a stratified estimate: night and day are estimated apart and
  added, so a sample heavy in daylight does not hide what the night misses);
- the 95 % interval takes Wilson intervals of ``p`` and ``q`` in each stratum (narrowed by the
  finite-population correction: reviewing all of a stratum's negatives leaves no doubt about them)
  and combines their extremes (recall is lowest with ``p`` at its low end and ``q`` at its high
  end). On real frames (``python -m bench.realdata_audit``, the labels by eye as the reviewer) it
  held the true recall in 93-100 % of 500 seeded review samples of 10, 20 and 40 media.

``status``: ``ok`` where the interval's low end reaches ``target_recall`` (``pipeline.events``),
``misses_animals`` where its high end is below it (event counts, detection rates and occupancy of
the camera are lower bounds: the camera needs a better detector or its negatives reviewed),
``uncertain`` in between (review more), ``not_audited`` where a stratum that needs reviews has none
or the reviews show no animal at all. The estimate assumes the reviewed media are a random sample of
each camera's positives and of its negatives (as ``review sample`` draws them), or all of them.

Only media-level reviews count (a Timelapse row, a MegaDetector ``manually_checked`` image, a Camtrap
DP media-level observation): a review of one box says nothing of the animals no box was put on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Mapping

import pyarrow as pa

from gpu_ops import schemas

LIGHTINGS = ("infrared", "daylight", "unknown")
Z = 1.959964  # 95 %


def wilson(successes: int, n: int, z: float = Z, population: int | None = None) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None without observations.

    With ``population`` (the media the ``n`` were drawn from, without replacement) each side's
    distance from ``successes / n`` is shrunk by the finite-population correction
    ``sqrt((N - n) / (N - 1))``: a camera whose every negative was reviewed knows its share exactly.
    """
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if population is not None and population > 1:
        fpc = math.sqrt(max(0, population - n) / (population - 1))
        low, high = p - fpc * (p - low), p + fpc * (high - p)
    return low, high


def audit_detector(media: pa.Table, detections: pa.Table, reviews: pa.Table, *, camera_id: str,
                   min_confidence: float, target_recall: float,
                   infrared: Mapping[str, bool] | None = None) -> pa.Table:
    """The :data:`gpu_ops.schemas.DETECTOR_AUDIT` rows of one camera: one per lighting it has, and ``all``.

    ``detections`` are those the events count (repeat detections already left out); ``infrared``
    maps an image's sha256 to Stage 1's judgement of it.
    """
    infrared = infrared or {}
    positive_files = {d["file_path"] for d in detections.select(["camera_id", "file_path", "category", "conf"]).to_pylist()
                      if d["camera_id"] == camera_id and d["category"] == "animal"
                      and d["conf"] is not None and d["conf"] >= min_confidence}
    verdict: dict[str, bool] = {}  # file -> the reviewer saw an animal
    for r in reviews.select(["camera_id", "file_path", "detection_id", "observation_type"]).to_pylist():
        if r["camera_id"] == camera_id and not r["detection_id"]:
            verdict[r["file_path"]] = verdict.get(r["file_path"], False) or r["observation_type"] == "animal"
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in media.select(["camera_id", "file_path", "sha256", "status"]).to_pylist():
        if m["camera_id"] != camera_id or m["status"] != "ok":
            continue
        lighting = ("infrared" if infrared[m["sha256"]] else "daylight") if m["sha256"] in infrared else "unknown"
        c = counts[lighting]
        side = "positives" if m["file_path"] in positive_files else "negatives"
        c["media"] += 1
        c[side] += 1
        if m["file_path"] in verdict:
            c[f"reviewed_{side}"] += 1
            c["confirmed_positives" if side == "positives" else "missed_negatives"] += verdict[m["file_path"]]
    strata = [(lighting, counts[lighting]) for lighting in LIGHTINGS if lighting in counts]
    rows = [_row(camera_id, lighting, [c], min_confidence, target_recall) for lighting, c in strata]
    if strata:
        rows.append(_row(camera_id, "all", [c for _, c in strata], min_confidence, target_recall))
    return pa.Table.from_pylist(rows, schema=schemas.DETECTOR_AUDIT)


def _row(camera_id: str, lighting: str, strata: list[Mapping[str, int]], min_confidence: float,
         target_recall: float) -> dict[str, Any]:
    keys = ("media", "positives", "negatives", "reviewed_positives", "confirmed_positives", "reviewed_negatives",
            "missed_negatives")
    row: dict[str, Any] = {"camera_id": camera_id, "lighting": lighting, "min_confidence": min_confidence,
                           **{k: sum(c.get(k, 0) for c in strata) for k in keys}}
    found = missed = 0.0
    found_lo = found_hi = missed_lo = missed_hi = 0.0
    unreviewed = []
    for c in strata:
        n_pos, n_neg = c.get("positives", 0), c.get("negatives", 0)
        p = wilson(c.get("confirmed_positives", 0), c.get("reviewed_positives", 0), population=n_pos)
        q = wilson(c.get("missed_negatives", 0), c.get("reviewed_negatives", 0), population=n_neg)
        if (n_pos and p is None) or (n_neg and q is None):
            unreviewed.append("positives" if n_pos and p is None else "negatives")
            continue
        if n_pos:
            share = c["confirmed_positives"] / c["reviewed_positives"]
            found, found_lo, found_hi = found + n_pos * share, found_lo + n_pos * p[0], found_hi + n_pos * p[1]
        if n_neg:
            share = c["missed_negatives"] / c["reviewed_negatives"]
            missed, missed_lo, missed_hi = missed + n_neg * share, missed_lo + n_neg * q[0], missed_hi + n_neg * q[1]
    empty = {k: None for k in ("est_animal_media", "est_missed_media", "recall", "recall_low", "recall_high",
                               "precision", "precision_low", "precision_high")}
    if unreviewed:
        what = " and ".join(sorted(set(unreviewed)))
        return {**row, **empty, "status": "not_audited",
                "note": f"no media-level review of its {what}: run `odins-ravne review sample` and import the review"}
    positives = row["positives"]
    precision = {"precision": found / positives, "precision_low": found_lo / positives,
                 "precision_high": found_hi / positives} if positives else {}
    if found + missed == 0:
        return {**row, **empty, **precision, "est_animal_media": 0.0, "est_missed_media": 0.0, "status": "not_audited",
                "note": "the reviewed media show no animal: nothing to estimate recall on"}
    recall = found / (found + missed)
    low = found_lo / (found_lo + missed_hi) if found_lo + missed_hi else 0.0
    high = found_hi / (found_hi + missed_lo) if found_hi + missed_lo else 1.0
    if low >= target_recall:
        status, note = "ok", f"the detector finds at least {target_recall:.0%} of animal media (95 %)"
    elif high < target_recall:
        status = "misses_animals"
        note = (f"the detector finds about {recall:.0%} of animal media ({low:.0%}-{high:.0%}): counts, detection "
                f"rates and occupancy from this camera are lower bounds (about {missed:.0f} animal media unboxed)")
    else:
        status, note = "uncertain", (f"recall {recall:.0%} ({low:.0%}-{high:.0%}) may be below {target_recall:.0%}: "
                                     "review more of its negatives")
    return {**row, **empty, **precision, "est_animal_media": found + missed, "est_missed_media": missed,
            "recall": recall, "recall_low": low, "recall_high": high, "status": status, "note": note}
