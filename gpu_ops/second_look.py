"""A second look at infrared frames the detector found nothing on, with their contrast stretched.

An infrared night frame is grey, often flat: the flash lights the near ground and leaves an animal
a few grey levels off its background. COCO-trained features were learnt on colour daylight photos.
So Stage 1 looks twice at an infrared frame on which the first look has no box at or above
``BELOW`` (the default events threshold; a constant, so that tuning events never re-runs Stage 1):
the same model on the same model input (the letterboxed canvas, no decode of its
own) with its lightness equalized in 8 x 8 tiles (CLAHE, clip ``CLIP``), and keeps the boxes of the
second look that no box of the first covers (same category, IoU > 0.45), marked ``source =
contrast``. Frames with a box, and daylight frames, are not looked at again, so the cost is one
more inference on the infrared frames that came back empty, nothing on the rest.

Measured on the realdata tune part (``python -m bench.realdata_second_look``, README "Detection on
real frames"); the held-out part was scored once, for the setting kept. Infrared is judged as
:func:`gpu_ops.background.is_infrared` judges it, on the picture inside the canvas's padding.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from gpu_ops.background import is_infrared
from gpu_ops.boxes import iou
from gpu_ops.detector import Detection, Detector, Letterbox
from gpu_ops.fusion import FusedDetection

CLIP = 4.0  # CLAHE clip limit: of 2 and 4, 4 found more on the tune part (README)
GRID = 8
COVERED_IOU = 0.45  # a second-look box overlapping a first-look box of its category this much is that box
SOURCE = "contrast"
BELOW = 0.3  # frames with a box at or above this are not looked at again
AUTO_MODEL = "default-camtrap"  # the model ``auto`` looks again with (applies)


def applies(setting: str, model: str) -> bool:
    """``pipeline.stage1.infrared_second_look`` for ``pipeline.stage1.model``. ``auto`` looks again
    where it was measured to find more: with ``default-camtrap`` (cross-validated on the tune part,
    animal frames boxed 16 -> 19 of 33, all three on the animal, precision 0.60 -> 0.64). With the COCO
    default and ``default-camtrap-neck`` it found nothing more there, so ``auto`` spares them the cost;
    ``always`` asks for it with any model (MegaDetector at 1280 px costs far more an inference)."""
    return setting == "always" or (setting == "auto" and model == AUTO_MODEL)


def stretched(canvas: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """``canvas`` (RGB uint8) with its lightness equalized per tile (CLAHE on L of L*a*b*)."""
    lab = cv2.cvtColor(canvas, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(GRID, GRID)).apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def picture(canvas: np.ndarray, box: Letterbox) -> np.ndarray:
    """The part of a letterboxed canvas that holds the image (the padding left out)."""
    height, width = canvas.shape[:2]
    x, y = int(round(box.pad_x)), int(round(box.pad_y))
    return canvas[y:max(y + 1, height - y), x:max(x + 1, width - x)]


def needs_second_look(canvas: np.ndarray, box: Letterbox, found: Sequence[Detection], min_conf: float) -> bool:
    return not any(d.conf >= min_conf for d in found) and is_infrared(picture(canvas, box))


def merged(first: Sequence[Detection], second: Sequence[Detection], source: str = SOURCE) -> list[Detection]:
    """``first`` and, after it, the boxes of ``second`` that no box of the same category covers."""
    out = list(first)
    for d in sorted(second, key=lambda d: -d.conf):
        if not any(o.category == d.category and iou(o.bbox, d.bbox) > COVERED_IOU for o in out):
            out.append(FusedDetection(d.category, d.label, float(d.conf), tuple(d.bbox), source))
    return out


def look_again(detector: Detector, canvases: Sequence[np.ndarray], boxes: Sequence[Letterbox],
               found: Sequence[list[Detection]], min_conf: float, clip: float = CLIP) -> tuple[list[list[Detection]], int]:
    """``found`` (the first look's detections per canvas) with the second look's boxes added, and how
    many canvases were looked at again (one batch through ``detector``)."""
    again = [i for i, (canvas, box, dets) in enumerate(zip(canvases, boxes, found)) if needs_second_look(canvas, box, dets, min_conf)]
    out = [list(dets) for dets in found]
    if again:
        second = detector.detect_prepared([stretched(canvases[i], clip) for i in again], [boxes[i] for i in again])
        for i, dets in zip(again, second):
            out[i] = merged(found[i], dets)
    return out, len(again)


def detect(detector: Detector, images: Sequence[np.ndarray], min_conf: float, clip: float = CLIP) -> tuple[list[list[Detection]], int]:
    """``detector.detect`` and the second look, for arrays of any size (video frames, benchmarks)."""
    prepared = [detector.prepare(image) for image in images]
    canvases, boxes = [c for c, _ in prepared], [b for _, b in prepared]
    return look_again(detector, canvases, boxes, detector.detect_prepared(canvases, boxes), min_conf, clip)
