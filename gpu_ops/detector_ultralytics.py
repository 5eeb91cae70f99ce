"""Stage 1 detectors from ultralytics model files (``.pt``, ``.onnx``, ``.engine``), whose file type
decides the runtime; also the MegaDetector v6 / v1000 checkpoints, which were trained through it.

A COCO model's labels map to categories by name (``detector.category_for_label``); a model without a
single label that maps detects nothing, and says so once when loaded.

Backends, for a ``.pt`` checkpoint (an ``.onnx`` or ``.engine`` file named directly runs as it is):
``torch`` (ultralytics' own PyTorch inference), ``onnx`` and ``tensorrt``. The last two are
ultralytics' own exports (its exporter knows every head it trains, YOLOv10's NMS-free one included,
and its runtime reads the class names back from the export), made once per checkpoint digest, input
size and (TensorRT) GPU, precision and version, and cached next to the checkpoint under names that
say so; processes starting together export once (``weights.cache_lock``). The ONNX export has a
dynamic batch; the TensorRT one is FP16 with a dynamic batch of up to ``TENSORRT_MAX_BATCH``.
``auto``: TensorRT on a GPU, falling back to torch with one log line where the ``tensorrt``
package is missing (``detector.build_runner``), torch on the CPU (as for MegaDetector's YOLOv5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from gpu_ops.detector import (
    MAX_DETECTIONS_PER_IMAGE,
    Detection,
    Detector,
    Letterbox,
    build_runner,
    category_for_label,
    configure_torch_threads,
    import_tensorrt,
    to_detections,
)
from gpu_ops.fileio import sha256_file
from gpu_ops.weights import cache_lock, default_model_dir

log = logging.getLogger("gpu_ops")

# Part of the cached export names: bump it whenever the export's options change.
EXPORT_VERSION = 1
TENSORRT_MAX_BATCH = 16


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
                 backend: str = "auto", name: str | None = None, class_categories: dict[int, str] | None = None):
        super().__init__()
        ultralytics = import_ultralytics()
        self.path = path
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        runtime_file = path
        if path.suffix.lower() == ".pt":
            _, runtime_file = build_runner(backend, device, {
                "torch": lambda: path, "onnx": self.onnx_path, "tensorrt": self._tensorrt_path,
            })
        self.backend = f"ultralytics-{runtime_file.suffix.lstrip('.') or 'model'}"
        self.model = ultralytics.YOLO(str(runtime_file), task="detect")
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

    # --- exports: made once, cached next to the checkpoint ---------------------------------------
    def onnx_path(self) -> Path:
        return self._export("onnx", f"{self.image_size}", dynamic=True)

    def _tensorrt_path(self) -> Path:
        trt = import_tensorrt(self.device)
        gpu = torch.cuda.get_device_name(torch.device(self.device)).replace(" ", "_").replace("/", "_")
        tag = f"{self.image_size}-{gpu}-fp16-b{TENSORRT_MAX_BATCH}-trt{trt.__version__}"
        return self._export("engine", tag, dynamic=True, quantize=16, batch=TENSORRT_MAX_BATCH)

    def _export(self, fmt: str, tag: str, **options) -> Path:
        digest = sha256_file(self.path)[:12]
        suffix = ".onnx" if fmt == "onnx" else ".engine"
        target = self.path.with_name(f"{self.path.stem}-{digest}-{tag}-export{EXPORT_VERSION}{suffix}")
        if target.is_file():
            return target
        with cache_lock(self.path.parent):
            if target.is_file():
                return target
            # ultralytics writes its export beside the file it loaded: a link in a staging folder
            # keeps that (and the intermediate ONNX of a TensorRT build) out of the cache.
            with tempfile.TemporaryDirectory(prefix=".export-", dir=self.path.parent) as staging:
                link = Path(staging) / self.path.name
                link.symlink_to(self.path.resolve())
                log.info("exporting %s to %s (one-off)", self.path.name, fmt)
                exported = import_ultralytics().YOLO(str(link), task="detect").export(
                    format=fmt, imgsz=self.image_size, device=self.device, verbose=False, **options
                )
                Path(exported).replace(target)
        log.info("exported %s", target)
        return target

    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        # ultralytics takes BGR arrays; the canvases are already image_size square, so its own
        # letterbox is a no-op and our Letterbox maps the boxes back.
        results = self.model.predict(
            [np.ascontiguousarray(canvas[..., ::-1]) for canvas in canvases], imgsz=self.image_size,
            conf=self.conf_threshold, iou=self.iou_threshold, device=self.device,
            quantize=16 if self.device.startswith("cuda") else None,
            max_det=MAX_DETECTIONS_PER_IMAGE, verbose=False, batch=len(canvases),
        )
        found = []
        for result, box in zip(results, boxes):
            data = result.boxes
            found.append(to_detections(
                data.xyxy.cpu().numpy(), data.conf.cpu().numpy(), data.cls.cpu().numpy(), box, self.labels, self.categories
            ))
        return found
