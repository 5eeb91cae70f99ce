"""How many of a camera's animals the detector finds, estimated from the user's own reviews.

The detector's recall on real camera-trap frames depends on the camera, its scene and the light: the
offline default boxes about half of the real animal frames it was measured on (README, Detection
on real frames), MegaDetector far more, and no benchmark says what either does on *this* project's cameras.
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
- the 95 % interval takes the exact interval of ``p`` and of ``q`` in each stratum
  (:func:`share_interval`: hypergeometric, the reviews drawn without replacement from the
  stratum's media, so reviewing all of a stratum's negatives leaves no doubt about them) and
  combines their extremes (recall is lowest with ``p`` at its low end and ``q`` at its high
  end): conservative. On real frames (``python -m bench.realdata_audit``, the labels by eye as the
  reviewer) it held the true recall in 98-100 % of 500 seeded review samples of 10, 20 and 40 media.

``status`` (the detector): ``ok`` where the interval's low end reaches ``target_recall``
(``pipeline.events``), ``misses_animals`` where its high end is below it, ``uncertain`` in between
(review more), ``not_audited`` where a stratum that needs reviews has none or the reviews show no
animal at all.

A review adds what it saw to the events, so the counts hold more than the detector found: the
``m`` reviewed negatives with an animal. ``completeness = (N+ p + m) / A`` is the share of animal
media the counts hold (interval as for recall), ``est_unrecorded_media = N- q - m`` the animal media
in no count. ``counts_status``: ``complete`` (its low end reaches the target), ``lower_bounds`` (its
high end is below it: event counts, detection rates and occupancy of the camera are lower bounds,
and the reports say so), ``uncertain``, ``not_audited``. A camera whose every negative was reviewed
has complete counts whatever its detector. The estimate assumes the reviewed media are a random sample of
each camera's positives and of its negatives (as ``review sample`` draws them), or all of them.

Only media-level reviews count (a Timelapse row, a MegaDetector ``manually_checked`` image, a Camtrap
DP media-level observation): a review of one box says nothing of the animals no box was put on.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any, Mapping

import pyarrow as pa

from gpu_ops import schemas

LIGHTINGS = ("infrared", "daylight", "unknown")


def share_interval(successes: int, n: int, population: int, alpha: float = 1 - 0.95) -> tuple[float, float] | None:
    """The exact 95 % interval of the share of a population of ``population`` media that holds
    what ``successes`` of ``n`` of them, drawn without replacement, hold; None without observations.

    The hypergeometric counterpart of Clopper-Pearson: the population counts ``K`` under which
    ``successes`` is not in either tail of probability below ``alpha / 2``. It covers the true
    share at least 95 % of the time for every population and sample size (a test sums it over
    the draws), and it closes on the exact share when all of the population was reviewed. (Wilson's
    interval ignores that the population is finite; narrowed by the finite-population correction
    it held the truth only 87 % of the time for some cameras.)
    """
    if n <= 0:
        return None
    if population <= n:
        return successes / n, successes / n
    lo_k, hi_k = successes, population - (n - successes)  # what the unreviewed could hold
    low = lo_k if successes == 0 else _first(lo_k, hi_k, lambda k: _tail(successes, population, k, n, upper=True) > alpha / 2)
    high = hi_k if successes == n else _last(lo_k, hi_k, lambda k: _tail(successes, population, k, n, upper=False) > alpha / 2)
    return low / population, high / population


def _tail(k: int, population: int, holding: int, n: int, *, upper: bool) -> float:
    """P(X >= k) (``upper``) or P(X <= k) for X ~ Hypergeometric(population, holding, n)."""
    def log_comb(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
    first, last = max(0, n - (population - holding)), min(n, holding)
    js = range(max(k, first), last + 1) if upper else range(first, min(k, last) + 1)
    total = log_comb(population, n)
    return sum(math.exp(log_comb(holding, j) + log_comb(population - holding, n - j) - total) for j in js)


def _first(lo: int, hi: int, ok) -> int:
    """The least value in [lo, hi] where ``ok`` holds (``ok`` false, then true; ``hi`` where never)."""
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def _last(lo: int, hi: int, ok) -> int:
    """The greatest value in [lo, hi] where ``ok`` holds (``ok`` true, then false; ``lo`` where never)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def is_positive(detection: Mapping[str, Any], min_confidence: float) -> bool:
    """Whether a detection makes its media positive: an animal box at or above the events' threshold
    (what the events count, what ``review sample`` draws as positive and what the audit estimates from)."""
    return detection["category"] == "animal" and detection["conf"] is not None and detection["conf"] >= min_confidence


def lighting_of(sha256: str, infrared: Mapping[str, bool]) -> str:
    """infrared | daylight as Stage 1 judged the image, unknown where it kept no thumbnail of it."""
    return ("infrared" if infrared[sha256] else "daylight") if sha256 in infrared else "unknown"


def draw_review_sample(media: list[dict], positive_files: set[str], infrared: Mapping[str, bool], per_camera: int,
                       rng: random.Random) -> list[tuple[dict, str]]:
    """``(media, "positive" | "negative")`` for ``per_camera`` of one camera's ok media, drawn at random.

    Half positives and half negatives (more of one side where the other has too few), and within
    each side the lightings in proportion to their media but each lighting that has media at least
    one, budget allowing: the audit estimates each lighting apart, and a lighting with no review
    leaves the camera ``not_audited``. A stratified sample of random draws within each stratum
    keeps the estimate unbiased (the audit weighs each stratum by its own media).
    """
    positives = [m for m in media if m["file_path"] in positive_files]
    negatives = [m for m in media if m["file_path"] not in positive_files]
    n_pos = min(len(positives), max(per_camera // 2, per_camera - len(negatives)))
    n_neg = min(len(negatives), per_camera - n_pos)
    picked = []
    for side, members, n in (("positive", positives, n_pos), ("negative", negatives, n_neg)):
        groups = {lighting: [m for m in members if lighting_of(m["sha256"], infrared) == lighting] for lighting in LIGHTINGS}
        for lighting, k in _allocate({g: len(v) for g, v in groups.items() if v}, n).items():
            picked += [(m, side) for m in rng.sample(groups[lighting], k)]
    return picked


def _allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """``n`` draws over groups of ``sizes``: one each first (largest groups first), the rest in
    proportion (largest remainder), never more than a group holds."""
    order = sorted(sizes, key=lambda g: (-sizes[g], g))
    out = {g: 0 for g in order}
    for g in order[:n]:
        out[g] = 1
    left = n - sum(out.values())
    while left > 0:
        room = {g: sizes[g] - out[g] for g in order if sizes[g] > out[g]}
        if not room:
            break
        total = sum(room.values())
        shares = {g: left * room[g] / total for g in room}
        whole = {g: min(room[g], int(shares[g])) for g in room}
        if not any(whole.values()):  # fewer draws left than groups with room: the largest remainders
            for g in sorted(room, key=lambda g: (-(shares[g] - int(shares[g])), -sizes[g], g))[:left]:
                whole[g] = 1
        for g, k in whole.items():
            out[g] += k
        left -= sum(whole.values())
    return {g: k for g, k in out.items() if k}


def audit_detector(media: pa.Table, detections: pa.Table, reviews: pa.Table, *, camera_id: str,
                   min_confidence: float, target_recall: float,
                   infrared: Mapping[str, bool] | None = None) -> pa.Table:
    """The :data:`gpu_ops.schemas.DETECTOR_AUDIT` rows of one camera: one per lighting it has, and ``all``.

    ``detections`` are those the events count (repeat detections already left out); ``infrared``
    maps an image's sha256 to Stage 1's judgement of it.
    """
    infrared = infrared or {}
    positive_files = {d["file_path"] for d in detections.select(["camera_id", "file_path", "category", "conf"]).to_pylist()
                      if d["camera_id"] == camera_id and is_positive(d, min_confidence)}
    verdict: dict[str, bool] = {}  # file -> the reviewer saw an animal
    for r in reviews.select(["camera_id", "file_path", "detection_id", "observation_type"]).to_pylist():
        if r["camera_id"] == camera_id and not r["detection_id"]:
            verdict[r["file_path"]] = verdict.get(r["file_path"], False) or r["observation_type"] == "animal"
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in media.select(["camera_id", "file_path", "sha256", "status"]).to_pylist():
        if m["camera_id"] != camera_id or m["status"] != "ok":
            continue
        c = counts[lighting_of(m["sha256"], infrared)]
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
        p = share_interval(c.get("confirmed_positives", 0), c.get("reviewed_positives", 0), n_pos)
        q = share_interval(c.get("missed_negatives", 0), c.get("reviewed_negatives", 0), n_neg)
        if (n_pos and p is None) or (n_neg and q is None):
            unreviewed.append("positives" if n_pos and p is None else "negatives")
            continue
        if n_pos:
            share = c["confirmed_positives"] / c["reviewed_positives"]
            found, found_lo, found_hi = found + n_pos * share, found_lo + n_pos * p[0], found_hi + n_pos * p[1]
        if n_neg:
            share = c["missed_negatives"] / c["reviewed_negatives"]
            missed, missed_lo, missed_hi = missed + n_neg * share, missed_lo + n_neg * q[0], missed_hi + n_neg * q[1]
    empty = {k: None for k in ("est_animal_media", "est_missed_media", "est_unrecorded_media", "recall", "recall_low",
                               "recall_high", "completeness", "completeness_low", "completeness_high", "precision",
                               "precision_low", "precision_high")}
    if unreviewed:
        what = " and ".join(sorted(set(unreviewed)))
        return {**row, **empty, "status": "not_audited", "counts_status": "not_audited",
                "note": f"no media-level review of its {what}: run `odins-ravne review sample` and import the review"}
    positives = row["positives"]
    precision = {"precision": found / positives, "precision_low": found_lo / positives,
                 "precision_high": found_hi / positives} if positives else {}
    if found + missed == 0:
        return {**row, **empty, **precision, "est_animal_media": 0.0, "est_missed_media": 0.0, "est_unrecorded_media": 0.0,
                "status": "not_audited", "counts_status": "not_audited",
                "note": "the reviewed media show no animal: nothing to estimate recall on"}
    recall = found / (found + missed)
    low = found_lo / (found_lo + missed_hi) if found_lo + missed_hi else 0.0
    high = found_hi / (found_hi + missed_lo) if found_hi + missed_lo else 1.0
    # What the counts hold: the detector's animal media and the reviewed negatives with an animal
    # (a review adds its media to the events); the rest of the missed ones are in no count.
    m = row["missed_negatives"]
    unrecorded = max(0.0, missed - m)
    held = (found + m) / (found + missed)
    held_low = (found_lo + m) / (found_lo + missed_hi) if found_lo + missed_hi else 0.0
    held_high = min(1.0, (found_hi + m) / (found_hi + missed_lo)) if found_hi + missed_lo else 1.0
    if low >= target_recall:
        status, detector = "ok", f"the detector finds at least {target_recall:.0%} of animal media (95 %)"
    elif high < target_recall:
        status, detector = "misses_animals", f"the detector finds about {recall:.0%} of animal media ({low:.0%}-{high:.0%})"
    else:
        status, detector = "uncertain", f"the detector finds about {recall:.0%} of animal media ({low:.0%}-{high:.0%})"
    if held_low >= target_recall:
        counts_status = "complete"
        counts = (f"with the reviews the counts hold at least {target_recall:.0%} of them" if status != "ok" else "")
    elif held_high < target_recall:
        counts_status = "lower_bounds"
        counts = (f"the counts hold about {held:.0%} of them ({held_low:.0%}-{held_high:.0%}): counts, detection rates "
                  f"and occupancy from this camera are lower bounds (about {unrecorded:.0f} animal media neither boxed "
                  "nor reviewed)")
    else:
        counts_status = "uncertain"
        counts = (f"the counts hold about {held:.0%} of them ({held_low:.0%}-{held_high:.0%}), perhaps below "
                  f"{target_recall:.0%}: review more of its negatives")
    return {**row, **empty, **precision, "est_animal_media": found + missed, "est_missed_media": missed,
            "est_unrecorded_media": unrecorded, "recall": recall, "recall_low": low, "recall_high": high,
            "completeness": held, "completeness_low": held_low, "completeness_high": held_high, "status": status,
            "counts_status": counts_status, "note": "; ".join(filter(None, (detector, counts)))}
