"""Crops of detections for Stage 2 (species classification) and for people to look at.

Geometry choice: the box is padded by ``pad_fraction`` of its larger side on every side, then the
shorter side is grown towards the longer one so the crop is square where the image allows it.
Species classifiers are trained on square-ish context crops (MegaDetector's crop tooling does the
same), and a square crop survives their resize without distorting the animal. The crop is clipped to
the image, never padded with invented pixels, so near the edges it may stay rectangular. Tiny boxes
grow to at least ``min_side`` pixels (or the image, if smaller). An optional ``max_side`` caps big
crops (downscaled); by default crops keep the full resolution.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image


def crop_box(width: int, height: int, bbox: Sequence[float], pad_fraction: float = 0.1, min_side: int = 32) -> tuple[int, int, int, int]:
    """Pixel ``(left, top, right, bottom)`` of the crop for a normalized ``(x, y, w, h)`` box."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise ValueError(f"bbox {tuple(bbox)} has a negative width or height")
    cx = (x + w / 2) * width
    cy = (y + h / 2) * height
    side = max(w * width, h * height)
    side = max(side * (1 + 2 * pad_fraction), float(min_side))
    crop_w = min(side, width)
    crop_h = min(side, height)
    # Shift the window inside the image rather than cut it, so edge boxes keep their context.
    left = min(max(cx - crop_w / 2, 0.0), width - crop_w)
    top = min(max(cy - crop_h / 2, 0.0), height - crop_h)
    left_px, top_px = int(round(left)), int(round(top))
    right_px = min(width, max(left_px + 1, int(round(left + crop_w))))
    bottom_px = min(height, max(top_px + 1, int(round(top + crop_h))))
    return left_px, top_px, right_px, bottom_px


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (never upscale) so the longer side is at most ``max_side``; None keeps the size."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Area averaging: the right filter for shrinking, and half the time of bicubic on big crops.
    return image.resize(size, Image.Resampling.BOX)


def crop_detection(image: np.ndarray, bbox: Sequence[float], pad_fraction: float = 0.1, min_side: int = 32,
                   max_side: int | None = None) -> np.ndarray:
    """Cut the padded, square-ish crop of a detection out of an HWC array (a copy, not a view).

    ``max_side`` caps the crop's longer side (downscaled, aspect kept): classifiers look at 224-518
    pixels, so a frame-filling animal needs no 12-megapixel crop. None keeps full resolution.
    """
    height, width = image.shape[:2]
    left, top, right, bottom = crop_box(width, height, bbox, pad_fraction, min_side)
    crop = np.ascontiguousarray(image[top:bottom, left:right])
    if max_side is not None and max(crop.shape[:2]) > max_side:
        crop = np.asarray(fit_within(Image.fromarray(crop), max_side))
    return crop


def encode_jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB (or greyscale) uint8 array or Pillow image."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
