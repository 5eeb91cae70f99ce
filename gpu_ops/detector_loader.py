"""Load any detector by what the profile names: the default model, a known release by name
(:mod:`gpu_ops.model_registry`, fetched on first use), an ultralytics file, MegaDetector.

Kept apart from :mod:`gpu_ops.detector` (the base class and the shared geometry) because it knows
every adapter, and every adapter builds on that base class: one module importing both ways would
be a cycle. A loaded detector is cached per process and warmed up once, so a Batch job pays the
cold start once for all its batches.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from gpu_ops.detector import BACKENDS, Detector, configure_torch_threads, resolve_device
from gpu_ops.model_registry import KNOWN_MODELS, resolve_model
from gpu_ops.weights import FINE_TUNED, builtin_models, fetch_default_weights, fine_tuned_file

log = logging.getLogger("gpu_ops")

# The sizes models named by path were trained at: MegaDetector v5 at 1280, ultralytics' models at 640.
MEGADETECTOR_V5_INPUT_SIZE = 1280
ULTRALYTICS_INPUT_SIZE = 640

_CACHE: dict[tuple, Detector] = {}
_CACHE_LOCK = threading.Lock()


def load_detector(model: str = "default", *, backend: str = "auto", device: str = "auto", image_size: int | None = None,
                  conf_threshold: float = 0.05, iou_threshold: float = 0.45, animal_score: str = "best") -> Detector:
    """Load (once per process) and warm up a detector; see the module docstring for ``model``.

    ``image_size`` None (decided): the model's own input size, the one it was trained at: 416 for
    the default YOLOv3-tiny, a named release's ``input_size``, 1280 for a MegaDetector v5 file, 640
    for an ultralytics file. It is a property of the model, not of where it runs, so the local and
    the cloud profiles give the same answer on the same photo; a profile that sets
    ``pipeline.stage1.image_size`` chooses another (not for a named release, which always runs at
    its own).

    ``backend``: auto (on a GPU TensorRT, falling back to torch when the tensorrt package is
    missing; on the CPU ONNX Runtime for the default model, torch for the others), torch, onnx or
    tensorrt; it applies to the default model and to YOLOv5 and ultralytics ``.pt`` checkpoints (an
    ultralytics ``.onnx`` or ``.engine`` file named directly runs as it is).

    ``animal_score`` (``best`` | ``sum``, :mod:`gpu_ops.animalness`) applies to the default COCO
    model only: the others have one animal class. ``cold_start_s`` on the result is the load +
    warm-up time of the first call.
    """
    key = (model, backend, device, image_size, conf_threshold, iou_threshold, animal_score)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        configure_torch_threads()
        resolved_device = resolve_device(device)
        detector = _build(model, backend, resolved_device, image_size, conf_threshold, iou_threshold, animal_score)
        detector.warm_up()
        detector.cold_start_s = time.perf_counter() - started
        log.info("loaded %r in %.2f s", detector, detector.cold_start_s)
        _CACHE[key] = detector
        return detector


def _build(model: str, backend: str, device: str, image_size: int, conf: float, iou: float, animal_score: str) -> Detector:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}")
    options = dict(device=device, image_size=image_size, conf_threshold=conf, iou_threshold=iou)
    # Imported here: the adapters build on this module's base class, and only the chosen one loads.
    if model == "default" or model in FINE_TUNED:
        from gpu_ops.detector_darknet import DarknetDetector

        options["image_size"] = image_size or DarknetDetector.input_size
        if model in FINE_TUNED:
            options.update(heads=fine_tuned_file(model), name=FINE_TUNED[model].detector_name)
        return DarknetDetector(fetch_default_weights(), backend=backend, animal_score=animal_score, **options)
    release = KNOWN_MODELS.get(model)
    if release is not None:
        from gpu_ops.detector_megadetector import load_megadetector

        # A named release runs at the size it was trained at (model_registry's docstring says why).
        options["image_size"] = release.input_size
        return load_megadetector(resolve_model(model), backend=backend, name=release.name, **options)
    if model.startswith("megadetector:"):
        from gpu_ops.detector_megadetector import load_megadetector

        options["image_size"] = image_size or MEGADETECTOR_V5_INPUT_SIZE
        return load_megadetector(_existing(model.split(":", 1)[1], model), backend=backend, **options)
    path = _existing(model, model)
    if path.suffix.lower() not in (".pt", ".onnx", ".engine"):
        raise ValueError(
            f"model {model!r}: expected {builtin_models()}, a known model name (odins-ravne models list), "
            "'megadetector:<path>' or an ultralytics .pt/.onnx/.engine file"
        )
    from gpu_ops.detector_ultralytics import UltralyticsDetector

    options["image_size"] = image_size or ULTRALYTICS_INPUT_SIZE
    return UltralyticsDetector(path, backend=backend, **options)


def _existing(path_text: str, model: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r}: no file at {path}")
    return path
