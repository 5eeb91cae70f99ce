"""A camera-level background: the empty scene from the same camera's other triggers, so an animal
that stands still through its whole burst still differs from it (issue 13, direction 1).

Stage 1 keeps a small grey :func:`thumbnail` of each image, cut from the pixels the engine decoded
for the detector. Per camera and mode (infrared or daylight, and the thumbnail's shape: a night
frame compared with a day scene differs everywhere), each trigger is reduced to one frame
(:func:`reduce`: the median of its thumbnails, smoothed, normalized by its median brightness, since
infrared exposure varies from trigger to trigger). Its background is made of the ``neighbours``
triggers of its mode nearest in time (at least ``min_triggers``): the scene as it was
around then, so a camera that was moved, or a season that changed the vegetation, is compared with
itself; per pixel, the median of those triggers' single frames, each without what the detector boxed
on it (:func:`_background`; a neighbour of another scene does not vote). A trigger whose median
difference to it is above ``max_noise`` is another scene and gets nothing. Each of its frames is then
compared with that background on its own (an animal that walks through a burst is where it is in
each frame). A region that lies more than ``k_sigma`` robust noise units outside the background's
range within ``jitter`` pixels (a camera shifted by a pixel differs along every edge, an animal in
its whole body), between ``min_area`` and
``max_area`` of the frame, is a proposal; one that recurs (IoU >= ``repeat_iou``) among the proposals
of ``repeat_triggers`` of its neighbours is part of the scene (a shadow line, a plant that moves).
:func:`missed_boxes` turns the proposals into one box per image the detector found nothing on.

Where it runs: ``odins_ravne_assets.munin.publish.background_detections``, when the ``detections``
table is published (it needs the whole camera, so it cannot be part of Stage 1's per-media work,
and it needs no GPU). Decided there: one box per image, the strongest region, only on images with no
Stage 1 box at or above the events' threshold, at ``prior_conf``.

Measured (``python -m bench.realdata_background``): verifying the regions with the detector on a
crop confirmed none of them on the realdata tune split (the same detector missed those animals in
the whole frame), so there is no verification: a region that passes the scene and repeat guards is
kept at ``prior_conf`` (0.3, the events threshold, as a consistent burst track is). Tune: animal
frames boxed 0.45 -> 0.58 (infrared 0.39 -> 0.57), boxed on the animal (IoU >= 0.3) 0.30 -> 0.42, box
recall 0.28 -> 0.38, precision 0.44 -> 0.52, 0 of 3 empty frames boxed. Held out: nothing added
(boxed 0.56, infrared 0.57, on the animal 0.33, precision 0.54, 0 of 3 empty infrared frames boxed);
before the detector's boxes were left out of the background and neighbours of another scene kept
from voting, it added two boxes there, both off the animal. A folder of mixed cameras (ENA24) gets
nothing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from gpu_ops.boxes import Box, iou
from gpu_ops.motion import Proposal


@dataclass(frozen=True)
class BackgroundConfig:
    side: int = 192  # width of the grey thumbnails Stage 1 keeps of each image
    neighbours: int = 24  # a trigger's background: this many triggers of its mode nearest in time...
    min_triggers: int = 3  # ...and at least this many
    block: int = 8  # consecutive triggers sharing one background in a camera of many (_blocks)
    k_sigma: float = 3.0  # a pixel differs when it is this many robust noise units off
    min_area: float = 0.005  # smallest region, fraction of the frame
    max_area: float = 0.4  # a larger region is a lighting change, not an animal
    max_proposals: int = 4  # per frame, the strongest
    box_margin: float = 0.1  # a detector box, grown by this much of its size, is no part of a background
    jitter: int = 1  # pixels of camera shift a difference must exceed (propose)
    grey_tolerance: float = 4.0  # mean channel difference (0..255) under which a frame is infrared
    repeat_iou: float = 0.5  # a proposal with this IoU to proposals of...
    repeat_triggers: int = 2  # ...this many of its neighbours is part of the scene
    max_noise: float = 0.15  # median difference to the background above which it is another scene
    prior_conf: float = 0.3  # confidence of a proposal the detector does not verify (0: dropped)


@dataclass(frozen=True)
class Trigger:
    """One trigger of a camera (a burst, or a single photo) as the background sees it."""

    key: str  # the burst id, or the photo's sha256
    time: float | None  # capture time in seconds (any epoch); None: unknown
    infrared: bool
    frames: tuple[np.ndarray, ...]  # the grey thumbnails of its images, in burst order
    images: tuple[str, ...] = ()  # the images' ids, one per frame
    boxes: tuple[tuple[Box, ...], ...] = ()  # per frame, the detector's boxes (none given: none)

    @classmethod
    def of(cls, key: str, images: list[str], thumbs: dict[str, tuple[np.ndarray, bool]],
           times: list[float | None], boxes: dict[str, list[Box]] | None = None) -> "Trigger":
        """A trigger from its images' ids (burst order), their ``thumbnail`` results, capture times
        and the detector's boxes on them (image id -> normalized xywh boxes): timed by its first
        known time, infrared when most of its frames are."""
        known = [t for t in times if t is not None]
        infrared = sum(thumbs[i][1] for i in images) * 2 > len(images)
        found = tuple(tuple((boxes or {}).get(i, ())) for i in images)
        return cls(key, min(known) if known else None, infrared, tuple(thumbs[i][0] for i in images), tuple(images), found)


def is_infrared(image: np.ndarray) -> bool:
    """Grey frames (the channels equal up to ``grey_tolerance``) are infrared."""
    if image.ndim == 2:
        return True
    step = max(1, image.shape[0] // 64)
    sample = image[::step, ::step].astype(np.int16)
    spread = np.abs(sample[..., 0] - sample[..., 1]).mean() + np.abs(sample[..., 1] - sample[..., 2]).mean()
    return float(spread) / 2 < BackgroundConfig.grey_tolerance


def thumbnail(image: Image.Image | np.ndarray, side: int = BackgroundConfig.side) -> tuple[np.ndarray, bool]:
    """What Stage 1 keeps of an image for the background: ``side`` pixels wide, grey ``uint8``, and
    whether it is infrared (judged on the small colour frame, before it is turned grey)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    height = max(1, round(picture.height * side / picture.width))
    small = picture.convert("RGB").resize((side, height), Image.BILINEAR)
    return np.asarray(small.convert("L"), dtype=np.uint8), is_infrared(np.asarray(small))


def reduce(frames: list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    """One trigger as one frame: the median of its thumbnails, smoothed, divided by its median brightness
    (infrared exposure varies from trigger to trigger)."""
    shape = min(f.shape for f in frames)
    stack = np.stack([f[: shape[0], : shape[1]].astype(np.float32) for f in frames])
    frame = np.median(stack, axis=0) if len(stack) > 1 else stack[0]
    frame = ndimage.gaussian_filter(frame, 1.0)
    return frame / max(float(np.median(frame)), 1.0)


def _nearest(members: list[Trigger], block: range, count: int) -> list[int]:
    """Indices of the ``count`` triggers nearest in time to the ``block`` of consecutive triggers, not
    in it (members sorted by time, unknown times last): a window of ``count`` on each side, the
    nearest of it kept (ties to the earlier)."""
    window = [j for j in range(max(0, block.start - count), min(len(members), block.stop + count)) if j not in block]

    def distance(j: int) -> tuple[float, int]:
        i = block.start if j < block.start else block.stop - 1
        a, b = members[i].time, members[j].time
        return (abs(a - b) if a is not None and b is not None else float("inf"), abs(i - j))

    return sorted(window, key=lambda j: (distance(j), j))[:count]


def _blocks(n: int, config: BackgroundConfig) -> list[range]:
    """Triggers that share one background: each alone in a small camera; in a camera of more than
    twice ``neighbours`` triggers of a mode, ``block`` consecutive ones (a per-pixel median per
    trigger is most of the cost). A trigger is never part of its own background either way."""
    size = 1 if n <= 2 * config.neighbours else config.block
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


def _unboxed(frame: np.ndarray, boxes: tuple[Box, ...], config: BackgroundConfig) -> np.ndarray:
    """``frame`` with the detector's boxes (grown by ``box_margin`` of their size) blanked (NaN):
    what it shows of the empty scene."""
    if not boxes:
        return frame
    out = frame.copy()
    h, w = frame.shape
    for x, y, bw, bh in boxes:
        mx, my = bw * config.box_margin, bh * config.box_margin
        x0, y0 = max(0, int((x - mx) * w)), max(0, int((y - my) * h))
        x1, y1 = min(w, int(np.ceil((x + bw + mx) * w))), min(h, int(np.ceil((y + bh + my) * h)))
        out[y0:y1, x0:x1] = np.nan
    return out


def _background(others: list[int], frames: list[np.ndarray], singles: list[list[np.ndarray]],
                empty: list[list[np.ndarray]], config: BackgroundConfig) -> np.ndarray | None:
    """The background of a block from its neighbouring triggers ``others``: per pixel, the median of
    their frames, each frame on its own (an animal that walks through a burst covers a pixel in few
    of its frames; in the trigger's median it may stay) and without what the detector boxed on it
    (in a small camera, the animals of a few triggers would otherwise stay in it as a ghost). Where
    the detector boxed every neighbour, the median of their frames as they are. A neighbour that
    is another scene than the median of them all (another photo in the folder, a camera moved for a
    day) does not vote; fewer than ``min_triggers`` left: no background."""
    if len(others) < config.min_triggers:
        return None
    first = np.median(np.stack([frames[j] for j in others]), axis=0)
    same = [j for j in others if float(np.median(np.abs(frames[j] - first))) <= config.max_noise]
    if len(same) < config.min_triggers:
        return None
    stack = np.stack([f for j in same for f in empty[j]])
    if not np.isnan(stack).any():
        return np.median(stack, axis=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels, filled below
        median = np.nanmedian(stack, axis=0)
    hidden = np.isnan(median)
    if hidden.any():
        median[hidden] = np.median(np.stack([f for j in same for f in singles[j]]), axis=0)[hidden]
    return median


def camera_proposals(triggers: list[Trigger], config: BackgroundConfig = BackgroundConfig()) -> dict[str, list[list[Proposal]]]:
    """Background proposals of every frame of every trigger of one camera: trigger key -> one list per
    frame, in the trigger's frame order (module doc).

    Each frame is compared on its own with its trigger's background, so an animal that walks through
    a burst is boxed where it is in each frame (the trigger's median would have erased it), and one
    that stands still in each frame too. The scene check is made on the trigger's median, the repeat
    guard against the neighbours' own proposals (of their medians). Deterministic, and a function of
    the camera's triggers alone: the same media give the same proposals however many runs they
    arrived in. A mode is the illumination and the thumbnail's shape (another resolution setting is
    another scene).
    """
    modes: dict[tuple, list[Trigger]] = {}
    for trigger in triggers:
        shape = min(f.shape for f in trigger.frames)
        modes.setdefault((trigger.infrared, shape), []).append(trigger)
    out: dict[str, list[list[Proposal]]] = {}
    for members in modes.values():
        members.sort(key=lambda t: (t.time is None, t.time or 0.0, t.key))
        frames = [reduce(t.frames) for t in members]
        singles = [[reduce(t.frames[k:k + 1]) for k in range(len(t.frames))] if len(t.frames) > 1 else [frames[i]]
                   for i, t in enumerate(members)]
        empty = [[_unboxed(frame, t.boxes[k] if k < len(t.boxes) else (), config) for k, frame in enumerate(singles[i])]
                 for i, t in enumerate(members)]
        near: list[list[int]] = [[] for _ in members]
        shared: list[np.ndarray | None] = [None] * len(members)
        for block in _blocks(len(members), config):
            others = _nearest(members, block, config.neighbours)
            median = _background(others, frames, singles, empty, config)
            for i in block:
                near[i], shared[i] = others, median
        backgrounds: list[np.ndarray | None] = []
        for frame, background in zip(frames, shared):
            if background is not None and float(np.median(np.abs(frame - background))) > config.max_noise:
                background = None  # another scene: the camera moved, or a folder of mixed cameras
            backgrounds.append(background)
        found = [propose(frame, bg, config) if bg is not None else [] for frame, bg in zip(frames, backgrounds)]
        for i, trigger in enumerate(members):
            per_frame = []
            for k in range(len(trigger.frames)):
                if backgrounds[i] is None:
                    per_frame.append([])
                    continue
                own = found[i] if len(trigger.frames) == 1 else propose(singles[i][k], backgrounds[i], config)
                # A region that differs in several neighbours too is the scene's (a shadow line, a plant).
                per_frame.append([p for p in own if sum(
                    any(iou(p.bbox, q.bbox) >= config.repeat_iou for q in found[j]) for j in near[i]) < config.repeat_triggers])
            out[trigger.key] = per_frame
    return out


def propose(frame: np.ndarray, background: np.ndarray, config: BackgroundConfig) -> list[Proposal]:
    """Regions of ``frame`` (reduced) that differ from ``background`` (reduced): boxes, strongest first."""
    h, w = min(frame.shape[0], background.shape[0]), min(frame.shape[1], background.shape[1])
    frame, background = frame[:h, :w], background[:h, :w]
    plain = frame - background
    noise = 1.4826 * float(np.median(np.abs(plain - np.median(plain)))) or 1e-3
    diff = plain
    if config.jitter:
        # How far each pixel lies outside the range of the background around it: a scene shifted by
        # up to ``jitter`` pixels (a camera on a tree in the wind, a strap re-tightened) differs
        # along every edge, an animal in its whole body.
        size = 2 * config.jitter + 1
        low = ndimage.grey_erosion(background, size=size)
        high = ndimage.grey_dilation(background, size=size)
        diff = frame - np.clip(frame, low, high)
    mask = np.abs(diff) > config.k_sigma * noise
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = ndimage.binary_closing(mask, iterations=2)
    labels, n = ndimage.label(mask)
    out = []
    for k, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        region = labels[where] == k
        area = float(region.sum()) / (h * w)
        if not config.min_area <= area <= config.max_area:
            continue
        ys, xs = where
        box: Box = (xs.start / w, ys.start / h, (xs.stop - xs.start) / w, (ys.stop - ys.start) / h)
        strength = float(np.abs(diff[where][region]).mean()) / (config.k_sigma * noise)
        score = 1.0 - 1.0 / (1.0 + strength)
        out.append(Proposal(0, box, score, area, float(region.mean())))
    out.sort(key=lambda p: -p.score)
    return out[: config.max_proposals]


def missed_boxes(triggers: list[Trigger], boxed: set[str], config: BackgroundConfig = BackgroundConfig()) -> dict[str, Proposal]:
    """Image id -> the one background box it gets: the strongest region of that image, for every
    image not in ``boxed`` (those the detector already found something on). The background tells
    that something is there, not how many: one box counts one animal at most."""
    proposals = camera_proposals(triggers, config)
    out = {}
    for trigger in triggers:
        for image, found in zip(trigger.images, proposals.get(trigger.key, ())):
            if found and image not in boxed:
                out[image] = max(found, key=lambda p: p.score)
    return out
