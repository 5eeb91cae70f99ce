"""Stage 1 detectors from ultralytics model files (``.pt``, ``.onnx``, ``.engine``), whose file type
decides the runtime; also the MegaDetector v6 / v1000 checkpoints, which were trained through it.

A COCO model's labels map to categories by name (``detector.category_for_label``); a model without a
single label that maps detects nothing, and says so once when loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from gpu_ops.detector import (
    MAX_DETECTIONS_PER_IMAGE,
    Detection,
    Detector,
    Letterbox,
    category_for_label,
    configure_torch_threads,
    to_detections,
)
from gpu_ops.fileio import sha256_file
from gpu_ops.weights import default_model_dir

log = logging.getLogger("gpu_ops")


def prepare_ultralytics_environment() -> None:
    """Keep ultralytics offline and quiet; must run before ``import ultralytics``.

    Its font check downloads Arial even when offline, so a TTF that matplotlib ships is copied
    under the names it looks for. Values already set by the caller are kept.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(default_model_dir() / "ultralytics-config")))
    fonts = config_dir / "Ultralytics"
    if not (fonts / "Arial.Unicode.ttf").is_file():
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        fonts.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            shutil.copyfile(source, fonts / name)


def import_ultralytics():
    """The ``ultralytics`` package, imported offline and quiet, with torch's CPU threads put back."""
    prepare_ultralytics_environment()
    import ultralytics
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update({"sync": False})
    configure_torch_threads()
    return ultralytics


class UltralyticsDetector(Detector):
    """Any ultralytics model file; ``class_categories`` overrides the label-based mapping (MegaDetector)."""

    def __init__(self, path: Path, *, device: str, image_size: int, conf_threshold: float, iou_threshold: float,
                 name: str | None = None, class_categories: dict[int, str] | None = None):
        super().__init__()
        ultralytics = import_ultralytics()
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        self.backend = f"ultralytics-{path.suffix.lstrip('.') or 'model'}"
        self.model = ultralytics.YOLO(str(path), task="detect")
        names = self.model.names or {}
        self.labels = {int(i): str(n) for i, n in (names.items() if isinstance(names, dict) else enumerate(names))}
        if class_categories is not None:
            self.categories = {i: c for i, c in class_categories.items()}
            for i, category in class_categories.items():
                self.labels.setdefault(i, category)
        else:
            self.categories = {i: c for i, n in self.labels.items() if (c := category_for_label(n))}
        if not self.categories:
            log.warning("%s: none of its labels (%s...) maps to animal/person/vehicle; it will detect nothing",
                        path.name, ", ".join(list(self.labels.values())[:5]))
        self.name = name or path.stem
        digest = sha256_file(path)[:16] if path.is_file() else hashlib.sha256(str(path).encode()).hexdigest()[:16]
        self.signature = f"{self.name}:{digest}:{image_size}:conf={conf_threshold}:iou={iou_threshold}"

    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        # ultralytics takes BGR arrays; the canvases are already image_size square, so its own
        # letterbox is a no-op and our Letterbox maps the boxes back.
        results = self.model.predict(
            [np.ascontiguousarray(canvas[..., ::-1]) for canvas in canvases], imgsz=self.image_size,
            conf=self.conf_threshold, iou=self.iou_threshold, device=self.device, half=self.device.startswith("cuda"),
            max_det=MAX_DETECTIONS_PER_IMAGE, verbose=False, batch=len(canvases),
        )
        found = []
        for result, box in zip(results, boxes):
            data = result.boxes
            found.append(to_detections(
                data.xyxy.cpu().numpy(), data.conf.cpu().numpy(), data.cls.cpu().numpy(), box, self.labels, self.categories
            ))
        return found
