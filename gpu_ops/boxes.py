"""Box geometry, once: boxes are MegaDetector-style normalized ``(x, y, w, h)`` with the origin at
the top-left corner (see :mod:`gpu_ops.schemas`)."""

from __future__ import annotations

Box = tuple[float, float, float, float]


def intersection(a: Box, b: Box) -> float:
    """Area shared by two boxes."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, ix) * max(0.0, iy)


def iou(a: Box, b: Box) -> float:
    """Intersection over union; 0 for two empty boxes."""
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def share_inside(box: Box, outer: Box) -> float:
    """The share of ``box``'s area that lies inside ``outer``."""
    area = box[2] * box[3]
    return intersection(box, outer) / area if area > 0 else 0.0
