"""Fusion: the detector's boxes and the burst's motion proposals, per frame, in one list.

Stage 1 calls :func:`detect_burst` once per burst, after the detector has run on its frames::

    fused = detect_burst(frames, detections, detector, config=profile_bursts_config)

- ``frames``: the burst's images in time order, RGB ``uint8`` arrays as :func:`gpu_ops.media.load_image`
  returns them (full size or reduced; all the same aspect). The crops for verification are cut from
  them, so the larger they are, the better the verification sees a small animal.
- ``detections``: the detector's result for those frames (``detector.detect(frames)``), one list per
  frame, in the same order.
- ``detector``: the loaded detector (``gpu_ops.detector_loader.load_detector``), used again on crops.
- ``config``: :class:`BurstConfig`.
- Returns, per frame, a list of :class:`FusedDetection` (the fields of ``Detection`` plus ``source``):
  every detector box (``source="detector"``, or ``detector+motion`` where a motion proposal agrees
  with it), followed by the boxes that only motion found, ``source="motion"``.

How a proposal that no detector box explains becomes a detection:

1. **Verification**: the detector runs again on an enlarged square crop around the proposal (the
   crop is resized to the detector's input, so a small animal gets many more pixels). A crop
   detection of any category, at or above ``verify_conf``, lying on the proposal verifies it; the
   detection keeps that category and label (``bird``, ``dog``...). To keep the cost small only the
   best ``verify_per_track`` proposals of each track are cropped, at most ``max_verify`` per burst, and
   a verified track lends its label to its other proposals. A track that a detector box already
   explains in one of its frames needs no crop: that detection verifies the whole track (a detector
   that finds the animal in 1 frame of 10 names it wherever motion follows it).
2. **Temporal consistency**: proposals linked across frames into a track (similar size, near each
   other in consecutive frames) that is at least ``track_frames`` long and travels at least
   ``track_min_travel`` of its box size. A walking animal does; a waving branch stays where it is.
   Consistent proposals without a verification are kept as category ``animal``, label ``motion``.

Confidence, so that ``min_confidence`` keeps its meaning. Scores stay on the detector's scale, and
two independent witnesses are combined as ``1 - (1 - a) * (1 - b)``:

- a verified proposal: the detector's own score on the crop, or of the detector box that explains
  its track;
- consistency alone: ``track_conf`` (0.3), a prior deliberately below the precision measured for
  such boxes (0.88 on the semi-real set, 0.99 on the constructed one; ``python -m bench.evaluate``
  prints precision per source, to check it on one's own labelled bursts). At the default events
  threshold (0.3) they count; at any stricter threshold they need a verification too;
- verified and consistent: the two combined;
- a detector box keeps its score, unless a consistent track agrees with it closely (IoU >=
  ``explain_iou``): then it is combined with ``track_conf`` like a verified proposal. Only the best
  such box per proposal is raised, so the detector's duplicate boxes stay where they were; a box
  motion does not see (an animal standing still) is untouched.

Proposals with neither a verification nor a consistent track are dropped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

import numpy as np

from gpu_ops.boxes import Box, intersection, iou
from gpu_ops.motion import MotionConfig, MotionResult, Proposal, config_from_mapping, propose

class _DetectionLike(Protocol):
    category: str
    label: str
    conf: float
    bbox: Box


class _DetectorLike(Protocol):
    def detect(self, images: Sequence[np.ndarray]) -> list[list[_DetectionLike]]: ...


@dataclass(frozen=True)
class FusedDetection:
    category: str  # animal | person | vehicle
    label: str  # the model's label; "motion" for a box that only motion supports
    conf: float
    bbox: Box  # normalized x, y, w, h, origin top-left
    source: str  # detector | motion | detector+motion


@dataclass(frozen=True)
class BurstConfig:
    """The ``bursts:`` section of a profile. ``enabled: false`` switches burst-aware detection off."""

    enabled: bool = True
    min_frames: int = 3  # shorter bursts get the detector alone: a median needs three frames
    max_gap_s: float = 3.0  # frames further apart start a new burst (gpu_ops.bursts)
    max_frames: int = 30  # longest burst; a time-lapse run is cut into bursts of this size
    explain_iou: float = 0.3  # a detector box with this IoU explains a proposal...
    explain_cover: float = 0.6  # ...or covering this much of the smaller, at most 4 times its area
    verify: bool = True  # run the detector on crops of unexplained proposals
    verify_conf: float = 0.1  # lowest crop detection score that verifies a proposal
    verify_expand: float = 0.75  # crop side = box's longer side * (1 + 2 * this)
    verify_min_px: int = 96  # smallest crop side, frame pixels
    verify_per_track: int = 1  # crops per track (its best-scoring proposals)
    max_verify: int = 12  # crops per burst at most: bounds the extra cost
    track_frames: int = 3  # proposals in this many frames make a track consistent...
    track_min_travel: float = 0.5  # ...if it moves this many box sizes over the burst
    track_conf: float = 0.3  # confidence of a box supported by consistency alone
    motion: MotionConfig = field(default_factory=MotionConfig)

    @classmethod
    def from_mapping(cls, values: dict | None) -> "BurstConfig":
        """From a profile's ``bursts:`` mapping; unknown or mistyped keys are errors."""
        values = dict(values or {})
        motion = MotionConfig.from_mapping(values.pop("motion", None))
        config = config_from_mapping(cls, values, "bursts")
        return replace(config, motion=motion)

    def applies_to(self, n_frames: int) -> bool:
        return self.enabled and n_frames >= self.min_frames


@dataclass
class BurstResult:
    detections: list[list[FusedDetection]]
    motion: MotionResult | None
    verified_crops: int = 0  # detector runs on crops
    motion_s: float = 0.0  # time in the motion model
    verify_s: float = 0.0  # time in the detector on crops


def _agree(a: Box, b: Box, min_iou: float, min_cover: float, max_area_ratio: float = 4.0) -> bool:
    """Two boxes show the same thing: they overlap enough, or one mostly covers the other and they
    are of a size. The size condition matters: a large animal's box must not swallow the small
    one walking in front of it."""
    inter = intersection(a, b)
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    smaller, larger = min(area_a, area_b), max(area_a, area_b)
    if iou(a, b) >= min_iou:
        return True
    return smaller > 0 and inter / smaller >= min_cover and larger / smaller <= max_area_ratio


def detect_burst(frames: list[np.ndarray], detections: list[list[_DetectionLike]], detector: _DetectorLike,
                 *, config: BurstConfig) -> list[list[FusedDetection]]:
    """Fused detections per frame of one burst (see the module doc for every rule)."""
    return fuse_burst(frames, detections, detector, config=config).detections


def fuse_burst(frames: list[np.ndarray], detections: list[list[_DetectionLike]], detector: _DetectorLike | None,
               *, config: BurstConfig) -> BurstResult:
    """:func:`detect_burst` with what it did: the motion result, crops verified, time spent."""
    if len(detections) != len(frames):
        raise ValueError(f"got {len(frames)} frames but {len(detections)} detection lists: pass one list per frame")
    fused = [[FusedDetection(d.category, d.label, float(d.conf), tuple(d.bbox), getattr(d, "source", "detector"))
              for d in frame_dets] for frame_dets in detections]
    if not config.applies_to(len(frames)):
        return BurstResult(fused, None)

    started = time.perf_counter()
    motion = propose(frames, config.motion)
    motion_s = time.perf_counter() - started

    unexplained: list[Proposal] = []
    supported: dict[int, tuple[str, str, float]] = {}  # id(proposal) -> the detection that explains it
    explains: dict[int, tuple[int, list[int]]] = {}  # id(proposal) -> (frame, detections it agrees with)
    for t, proposals in enumerate(motion.proposals):
        for p in proposals:
            hits = [j for j, d in enumerate(fused[t]) if _agree(p.bbox, d.bbox, config.explain_iou, config.explain_cover)]
            if hits:
                best = max((fused[t][j] for j in hits), key=lambda d: d.conf)
                supported[id(p)] = (best.category, best.label, best.conf)
                explains[id(p)] = (t, hits)
            else:
                unexplained.append(p)

    tracks = link_tracks(motion.proposals)
    track_of = {id(p): k for k, track in enumerate(tracks) for p in track}
    consistent = {k for k, track in enumerate(tracks) if _consistent(track, config)}

    # Detector boxes that motion agrees with: source detector+motion; a consistent track is
    # independent evidence and raises the score as it does for motion boxes (a zebra at 0.14 that
    # walks across the burst is more likely a zebra than one at 0.14 in a single photograph).
    # Only one box per proposal is raised, the best that matches it closely: one moving thing is one
    # animal, and the detector's duplicate or loose boxes around it must not all gain from it.
    raised: set[tuple[int, int]] = set()
    for pid, (t, hits) in explains.items():
        for j in hits:
            if fused[t][j].source == "detector":
                fused[t][j] = replace(fused[t][j], source="detector+motion")
        if track_of[pid] not in consistent:
            continue
        proposal_box = next(p.bbox for p in motion.proposals[t] if id(p) == pid)
        close = [j for j in hits if (t, j) not in raised and iou(proposal_box, fused[t][j].bbox) >= config.explain_iou]
        if close:
            j = max(close, key=lambda k: fused[t][k].conf)
            det = fused[t][j]
            conf = round(min(1.0 - (1.0 - det.conf) * (1.0 - config.track_conf), 0.99), 4)
            fused[t][j] = replace(det, conf=max(conf, det.conf))
            raised.add((t, j))

    # A track the detector already found in one of its frames needs no crop: the detection is the
    # verification (the detector that sees the heron in 1 frame of 10 names it in all of them).
    detected_tracks = {track_of[pid] for pid in supported}
    verified, crops_run, verify_s = {}, 0, 0.0
    to_verify = [p for p in unexplained if track_of[id(p)] not in detected_tracks]
    if config.verify and detector is not None and to_verify:
        started = time.perf_counter()
        verified, crops_run = _verify(frames, to_verify, tracks, track_of, detector, config)
        verify_s = time.perf_counter() - started

    # Each track's best evidence (a detector box on one of its proposals, or a verified crop) is
    # lent to its other proposals.
    best_of_track: dict[int, tuple[str, str, float]] = {}
    for p in (p for ps in motion.proposals for p in ps):
        hit = supported.get(id(p)) or verified.get(id(p))
        k = track_of[id(p)]
        if hit is not None and (k not in best_of_track or hit[2] > best_of_track[k][2]):
            best_of_track[k] = hit[:3]

    additions: list[list[FusedDetection]] = [[] for _ in frames]
    for p in unexplained:
        k = track_of[id(p)]
        own = verified.get(id(p))
        lent = best_of_track.get(k)
        c_track = config.track_conf if k in consistent else 0.0
        if own is None and lent is None and c_track == 0.0:
            continue
        category, label, c_verify = own[:3] if own is not None else (lent if lent is not None else ("animal", "motion", 0.0))
        box = own[3] if own is not None else p.bbox
        conf = 1.0 - (1.0 - c_verify) * (1.0 - c_track)
        additions[p.frame].append(FusedDetection(category, label, round(min(conf, 0.99), 4), box, "motion"))

    for t, extra in enumerate(additions):
        kept: list[FusedDetection] = []
        for det in sorted(extra, key=lambda d: -d.conf):
            # A verifier's box may land on a detector box the proposal itself only grazed.
            if any(iou(det.bbox, other.bbox) >= 0.5 for other in fused[t] + kept):
                continue
            kept.append(det)
        fused[t].extend(kept)
    return BurstResult(fused, motion, verified_crops=crops_run, motion_s=motion_s, verify_s=verify_s)


def link_tracks(proposals: list[list[Proposal]]) -> list[list[Proposal]]:
    """Chain proposals across frames into tracks: each proposal joins the best-matching track that
    ended in one of the two previous frames (one missed frame is bridged), or starts its own."""
    tracks: list[list[Proposal]] = []
    for t, frame_props in enumerate(proposals):
        open_tracks = [k for k, track in enumerate(tracks) if 1 <= t - track[-1].frame <= 2]
        pairs = []
        for i, p in enumerate(frame_props):
            for k in open_tracks:
                q = tracks[k][-1]
                cost = _link_cost(q, p, t - q.frame)
                if cost is not None:
                    pairs.append((cost, i, k))
        taken_p, taken_k = set(), set()
        for cost, i, k in sorted(pairs):
            if i in taken_p or k in taken_k:
                continue
            tracks[k].append(frame_props[i])
            taken_p.add(i)
            taken_k.add(k)
        for i, p in enumerate(frame_props):
            if i not in taken_p:
                tracks.append([p])
    return tracks


def _size(b: Box) -> float:
    return max(b[2], b[3])


def _centre(b: Box) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


def _link_cost(q: Proposal, p: Proposal, frames_apart: int) -> float | None:
    area_q, area_p = q.bbox[2] * q.bbox[3], p.bbox[2] * p.bbox[3]
    if min(area_q, area_p) <= 0 or max(area_q, area_p) / min(area_q, area_p) > 3.0:
        return None
    (qx, qy), (px, py) = _centre(q.bbox), _centre(p.bbox)
    distance = math.hypot(px - qx, py - qy)
    # An animal covers a few body lengths between two frames of a burst at most.
    reach = 3.0 * max(_size(q.bbox), _size(p.bbox)) * frames_apart
    if distance > reach:
        return None
    return distance / reach + abs(math.log(area_p / area_q)) / 3.0


def _consistent(track: list[Proposal], config: BurstConfig) -> bool:
    if len(track) < config.track_frames:
        return False
    size = float(np.median([_size(p.bbox) for p in track]))
    centres = [_centre(p.bbox) for p in track]
    travel = max(math.hypot(a[0] - b[0], a[1] - b[1]) for a in centres for b in centres)
    return size > 0 and travel / size >= config.track_min_travel


def _crop_window(box: Box, width: int, height: int, config: BurstConfig) -> tuple[int, int, int, int]:
    """A square crop (x0, y0, x1, y1) in pixels around a normalized box, kept inside the frame."""
    cx, cy = (box[0] + box[2] / 2) * width, (box[1] + box[3] / 2) * height
    side = max(box[2] * width, box[3] * height) * (1 + 2 * config.verify_expand)
    side = int(min(max(side, config.verify_min_px), width, height))
    x0 = int(min(max(cx - side / 2, 0), width - side))
    y0 = int(min(max(cy - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side


def _verify(frames, unexplained, tracks, track_of, detector, config):
    """Run the detector on crops of the best unexplained proposals; {id(proposal): (cat, label,
    conf, box)} for those a crop detection confirms, and the number of crops run."""
    unexplained_ids = {id(p) for p in unexplained}
    chosen: list[Proposal] = []
    for track in tracks:
        members = sorted((p for p in track if id(p) in unexplained_ids), key=lambda p: -p.score)
        chosen.extend(members[: config.verify_per_track])
    chosen.sort(key=lambda p: -p.score)
    chosen = chosen[: config.max_verify]
    if not chosen:
        return {}, 0
    crops, windows = [], []
    for p in chosen:
        frame = frames[p.frame]
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = _crop_window(p.bbox, width, height, config)
        crop = frame[y0:y1, x0:x1]
        if crop.ndim == 2:
            crop = np.repeat(crop[..., None], 3, axis=2)
        crops.append(np.ascontiguousarray(crop))
        windows.append((x0, y0, x1 - x0, y1 - y0, width, height))
    results = detector.detect(crops)
    verified = {}
    for p, dets, (x0, y0, cw, ch, width, height) in zip(chosen, results, windows):
        best = None
        for d in dets:
            if d.conf < config.verify_conf:
                continue
            bx, by, bw, bh = d.bbox
            box = ((x0 + bx * cw) / width, (y0 + by * ch) / height, bw * cw / width, bh * ch / height)
            if _agree(box, p.bbox, 0.2, 0.5) and (best is None or d.conf > best[2]):
                best = (d.category, d.label, float(d.conf), box)
        if best is not None:
            verified[id(p)] = best
    return verified, len(chosen)
