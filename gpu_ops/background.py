"""A camera-level background: the empty scene from the same camera's other triggers, so an animal
that stands still through its whole burst still differs from it (issue 13, direction 1).

Per camera and illumination mode (infrared frames are grey, daylight frames are not: a night frame
compared with a day scene differs everywhere), each trigger is reduced to one small grey frame (the
median of its frames), normalized by its median brightness (infrared exposure varies from trigger
to trigger). The background of a trigger is the per-pixel median of at least ``min_triggers`` other
triggers of its mode. A region of a frame that differs from it by more than ``k_sigma`` robust noise
units is a proposal. Proposals that recur at the same place in other triggers (a shadow line, a
plant that moves between nights) are dropped as repeats (:mod:`gpu_ops.repeat_detections`), and the
rest are verified by the detector on a crop as burst proposals are (:mod:`gpu_ops.fusion`).

Measured (``python -m bench.realdata_background``): the crop verification confirmed none of the
proposals on the realdata tune split (the same detector missed those animals in the whole frame),
so a proposal that passes the scene and repeat guards is kept at ``prior_conf`` (0.3, the events
threshold, as a consistent burst track is): tune image recall 0.45 -> 0.55 (infrared 0.39 -> 0.52),
precision 0.44 -> 0.45, 0 of 3 empty frames boxed; held out 0.56 -> 0.72 (infrared 0.57 -> 0.79),
0 of 3 empty infrared frames boxed, but precision 0.54 -> 0.44 and box recall unchanged (0.33): the
region is found at 192 px from the trigger's median and is looser than the animal. It needs three
other triggers of the camera in the same mode and a matching scene, so a folder of mixed cameras
(ENA24) gets nothing. Cost about half the detector's per image (bench figures, same run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from gpu_ops.boxes import Box
from gpu_ops.motion import Proposal


@dataclass(frozen=True)
class BackgroundConfig:
    side: int = 192  # working width of the reduced frames
    min_triggers: int = 3  # other triggers of the same mode needed for a background
    k_sigma: float = 3.0  # a pixel differs when it is this many robust noise units off
    min_area: float = 0.005  # smallest region, fraction of the frame
    max_area: float = 0.4  # a larger region is a lighting change, not an animal
    max_proposals: int = 4  # per frame, the strongest
    grey_tolerance: float = 4.0  # mean channel difference (0..255) under which a frame is infrared
    repeat_iou: float = 0.5  # a proposal with this IoU to proposals of...
    repeat_triggers: int = 2  # ...this many other triggers is part of the scene
    max_noise: float = 0.15  # median difference to the background above which it is another scene
    prior_conf: float = 0.3  # confidence of a proposal the detector does not verify (0: dropped)


def is_infrared(image: np.ndarray) -> bool:
    """Grey frames (the channels equal up to ``grey_tolerance``) are infrared."""
    if image.ndim == 2:
        return True
    step = max(1, image.shape[0] // 64)
    sample = image[::step, ::step].astype(np.int16)
    spread = np.abs(sample[..., 0] - sample[..., 1]).mean() + np.abs(sample[..., 1] - sample[..., 2]).mean()
    return float(spread) / 2 < BackgroundConfig.grey_tolerance


def reduce(frames: list[np.ndarray], side: int) -> np.ndarray:
    """One trigger as a small grey frame: the median of its frames, divided by its median brightness."""
    small = []
    for image in frames:
        picture = Image.fromarray(image).convert("L")
        height = max(1, round(picture.height * side / picture.width))
        small.append(np.asarray(picture.resize((side, height), Image.BILINEAR), dtype=np.float32))
    shape = min(s.shape for s in small)
    stack = np.stack([s[: shape[0], : shape[1]] for s in small])
    frame = np.median(stack, axis=0) if len(stack) > 1 else stack[0]
    frame = ndimage.gaussian_filter(frame, 1.0)
    return frame / max(float(np.median(frame)), 1.0)


def propose(frame: np.ndarray, background: np.ndarray, config: BackgroundConfig) -> list[Proposal]:
    """Regions of ``frame`` (reduced) that differ from ``background`` (reduced): boxes, strongest first."""
    h, w = min(frame.shape[0], background.shape[0]), min(frame.shape[1], background.shape[1])
    diff = frame[:h, :w] - background[:h, :w]
    noise = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) or 1e-3
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
