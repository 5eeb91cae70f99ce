"""MegaDetector as a Stage 1 detector (``model: megadetector:<path>``).

v5 checkpoints (``md_v5*.pt``, YOLOv5) run through the ``megadetector`` package when it is installed;
v6 / v1000 checkpoints were trained through ultralytics and run there. Either way the categories are
the batch output format's (:mod:`gpu_ops.megadetector_format`): animal, person, vehicle.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gpu_ops.detector import Detection, Detector, Letterbox
from gpu_ops.detector_ultralytics import UltralyticsDetector
from gpu_ops.fileio import sha256_file
from gpu_ops.megadetector_format import CATEGORIES, CLASS_CATEGORIES


def load_megadetector(path: Path, *, device: str, image_size: int, conf_threshold: float, iou_threshold: float) -> Detector:
    """The adapter for this checkpoint: the ``megadetector`` package for v5, ultralytics otherwise."""
    options = dict(device=device, image_size=image_size, conf_threshold=conf_threshold, iou_threshold=iou_threshold)
    if path.name.lower().startswith("md_v5"):
        return MegaDetectorV5(path, **options)
    return UltralyticsDetector(path, name=path.stem, class_categories=CLASS_CATEGORIES, **options)


class MegaDetectorV5(Detector):
    """MegaDetector v5 (a YOLOv5 checkpoint) through the ``megadetector`` package, one image at a time.

    The package letterboxes itself (at its own 1280 default unless image_size says otherwise), so
    ``prepare`` hands it the image unchanged.
    """

    def __init__(self, path: Path, *, device: str, image_size: int, conf_threshold: float, iou_threshold: float):
        super().__init__()
        try:
            from megadetector.detection import run_detector
        except ImportError as exc:
            raise RuntimeError(
                f"{path.name} is a MegaDetector v5 checkpoint, which runs through the 'megadetector' package: "
                f"pip install megadetector (it is not a dependency of this project). Import failed: {exc}"
            ) from exc
        if device == "cpu":
            # The package picks the GPU by itself; hiding it is the documented way to force the CPU.
            os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
        self.model = run_detector.load_detector(str(path))
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.device = device
        self.backend = "megadetector"
        self.name = path.stem
        self.signature = f"{self.name}:{sha256_file(path)[:16]}:{image_size}:conf={conf_threshold}:iou={iou_threshold}"

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        height, width = image.shape[:2]
        return image, Letterbox(width, height, 1.0, 0.0, 0.0)

    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        from PIL import Image

        found = []
        for index, image in enumerate(canvases):
            result = self.model.generate_detections_one_image(
                Image.fromarray(image), f"image-{index}", detection_threshold=self.conf_threshold, image_size=self.image_size
            )
            if result.get("failure"):
                # The package records a failed inference instead of raising; raised here, the engine
                # fails this media alone instead of publishing it as empty.
                raise RuntimeError(f"{self.name}: {result['failure']}")
            detections = []
            for item in result.get("detections") or []:
                category = CATEGORIES.get(str(item["category"]))
                if category is None:
                    continue
                x, y, w, h = (float(np.clip(v, 0.0, 1.0)) for v in item["bbox"])
                w, h = min(w, 1.0 - x), min(h, 1.0 - y)
                detections.append(Detection(category, category, float(item["conf"]), (x, y, w, h)))
            found.append(detections)
        return found
