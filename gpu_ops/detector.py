"""Stage 1 detectors behind one small interface: RGB arrays in, normalized boxes out.

``load_detector`` picks the model, and with it the adapter module that runs it:

* ``"default"`` - the embedded Darknet YOLOv3-tiny COCO weights on the ``torch``, ``onnx`` or
  ``tensorrt`` backend (``detector_darknet.py``); ``"default-camtrap"`` the same with its heads
  fine-tuned on camera-trap frames (:mod:`gpu_ops.finetune`, shipped in the package).
* a path to an ultralytics model file - run by ultralytics: a ``.pt`` checkpoint on the ``torch``
  backend or through its ``onnx`` / ``tensorrt`` export, an ``.onnx`` / ``.engine`` file as it is
  (``detector_ultralytics.py``).
* ``"megadetector:<path>"`` or a release's name (``"megadetector-v5a"``, see
  :mod:`gpu_ops.model_registry`) - MegaDetector: YOLOv5 checkpoints (v5a/v5b, v1000 redwood and
  spruce) through our YOLOv5 adapter, ultralytics checkpoints (v1000 larch/sorrel, v6) through
  ultralytics (``detector_megadetector.py``).

This module holds what they share: the ``Detection`` they return, the ``Detector`` base class
(batching, halving the batch on out-of-memory errors, the decode-size hook the engine asks),
letterboxing, the label -> category map, YOLO-style NMS, the uint8 input wrapper every ONNX export
uses, the torch backend's runner, ONNX Runtime's providers and the TensorRT engine built from an export.

Categories. Every detection carries one of ``schemas.DETECTION_CATEGORIES`` and the model's own label.
A COCO model's labels map as: person -> person; bicycle, car, motorcycle, airplane, bus, train, truck,
boat -> vehicle; bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe -> animal. Every
other COCO class (chairs, bottles, traffic lights, ...) is dropped: Stage 1 keeps only what a camera
trap is for. A model whose labels are ``animal``/``person``/``vehicle`` keeps them as they are.

Geometry. Images are letterboxed to ``image_size`` (aspect kept, centred, padded), inferred in
batches and mapped back to the original image as MegaDetector-style ``(x, y, w, h)`` normalized to
[0, 1], origin top-left.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torchvision

from gpu_ops.schemas import DETECTION_CATEGORIES

log = logging.getLogger("gpu_ops")

TORCH_THREADS_ENV = "ODINS_RAVNE_TORCH_THREADS"
MAX_DETECTIONS_PER_IMAGE = 300
ULTRALYTICS_PAD_VALUE = 114  # the default letterbox grey; Darknet's own is 128
BACKENDS = ("auto", "torch", "onnx", "tensorrt")
_MAX_NMS_INPUT = 30_000  # YOLOv5's max_nms: the best boxes NMS sees

_VEHICLES = ("bicycle", "car", "motorcycle", "motorbike", "airplane", "aeroplane", "bus", "train", "truck", "boat")
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
# Darknet's coco.names spells two vehicles the VOC way (motorbike, aeroplane); both spellings map.
COCO_CATEGORY = {"person": "person", **{name: "vehicle" for name in _VEHICLES}, **{name: "animal" for name in _ANIMALS}}


def category_for_label(label: str) -> str | None:
    """The Stage 1 category of a model label, or None when the label is not one Stage 1 keeps."""
    name = label.strip().lower()
    if name in DETECTION_CATEGORIES:
        return name
    return COCO_CATEGORY.get(name)


@dataclass(frozen=True)
class Detection:
    category: str  # animal | person | vehicle (schemas.DETECTION_CATEGORIES)
    label: str  # the model's own label, e.g. "dog"
    conf: float
    bbox: tuple[float, float, float, float]  # normalized x, y, w, h, origin top-left, clipped to [0, 1]


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``width`` x ``height`` was placed on the square model input."""

    width: int
    height: int
    scale: float
    pad_x: float
    pad_y: float

    def to_normalized(self, xyxy: np.ndarray) -> np.ndarray:
        """Model-input pixel boxes ``(N, 4)`` x1 y1 x2 y2 -> normalized, clipped ``(N, 4)`` x y w h."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        x1 = np.clip((boxes[:, 0] - self.pad_x) / self.scale / self.width, 0.0, 1.0)
        y1 = np.clip((boxes[:, 1] - self.pad_y) / self.scale / self.height, 0.0, 1.0)
        x2 = np.clip((boxes[:, 2] - self.pad_x) / self.scale / self.width, 0.0, 1.0)
        y2 = np.clip((boxes[:, 3] - self.pad_y) / self.scale / self.height, 0.0, 1.0)
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def reduction_factor(width: int, height: int, size: int) -> int:
    """The power-of-two shrink (1, 2, 4 or 8) that keeps an image at least ``size`` on its long side.

    Letterboxing first box-reduces by this factor, then area-resizes the rest of the way. A JPEG's
    reduced-size decode (Pillow's draft mode, 1/2 to 1/8) produces nearly the same pixels as the box
    reduction, so the engine can decode at this factor and land on the same model input as a full
    decode (measured mean difference 0.2-0.4 grey levels). A one-step area resize from a different
    starting size differs 3-5x more, enough to move YOLOv3-tiny's confidences by 0.2.
    """
    factor = 1
    while factor < 8 and max(width, height) / (2 * factor) >= size:
        factor *= 2
    return factor


def letterbox(image: np.ndarray, size: int, pad_value: int = ULTRALYTICS_PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Fit an RGB ``uint8`` HWC array into a ``size`` x ``size`` canvas, aspect kept, centred.

    Downscaling is a power-of-two box reduction (see ``reduction_factor``) followed by area
    averaging; upscaling is bilinear.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = min(size / width, size / height)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    resized = image
    factor = reduction_factor(width, height, size)
    if factor > 1:
        resized = cv2.resize(resized, (math.ceil(width / factor), math.ceil(height / factor)), interpolation=cv2.INTER_AREA)
    if resized.shape[1] != new_w or resized.shape[0] != new_h:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(resized, (new_w, new_h), interpolation=interpolation)
    pad_x = (size - new_w) // 2
    pad_y = (size - new_h) // 2
    canvas = np.full((size, size, 3), pad_value, dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    # Scale per axis can differ by rounding; the mean is within half a pixel on both.
    effective = (new_w / width + new_h / height) / 2
    return canvas, Letterbox(width, height, effective, float(pad_x), float(pad_y))


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate memory" in text


def configure_torch_threads() -> int:
    """Set torch's CPU threads explicitly: ultralytics lowers them at import (to cores - 1)."""
    configured = os.environ.get(TORCH_THREADS_ENV)
    threads = int(configured) if configured else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but torch sees no CUDA GPU: use device='cpu' or 'auto'")
    return device


class Detector(abc.ABC):
    """Base class: subclasses implement ``_infer`` on letterboxed canvases."""

    name: str
    signature: str
    image_size: int
    backend: str
    device: str
    pad_value: int = ULTRALYTICS_PAD_VALUE
    cold_start_s: float = 0.0

    def __init__(self) -> None:
        # Lowered for good after a CUDA out-of-memory error; None = whole request in one batch.
        self.max_batch: int | None = None
        self._lock = threading.Lock()

    # --- the public interface -------------------------------------------------------------
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect on RGB ``uint8`` HWC arrays of any sizes, as one batch (split only on OOM)."""
        prepared = [self.prepare(image) for image in images]
        return self.detect_prepared([canvas for canvas, _ in prepared], [box for _, box in prepared])

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The model input for one image. Safe to call from worker threads (the engine does)."""
        return letterbox(image, self.image_size, self.pad_value)

    def decode_reduction(self, width: int, height: int) -> int:
        """The power-of-two reduction the engine may decode a ``width`` x ``height`` JPEG at: the one
        ``letterbox`` applies first, so a reduced decode lands on the same model input."""
        return reduction_factor(width, height, self.image_size)

    def detect_prepared(self, canvases: Sequence[np.ndarray], boxes: Sequence[Letterbox]) -> list[list[Detection]]:
        """Run prepared inputs through the model, halving the batch on out-of-memory errors."""
        results: list[list[Detection]] = []
        start = 0
        with self._lock:
            while start < len(canvases):
                size = self.max_batch or len(canvases)
                chunk = slice(start, start + size)
                try:
                    results.extend(self._infer(list(canvases[chunk]), list(boxes[chunk])))
                except Exception as exc:  # noqa: BLE001 - re-raised unless it is an OOM we can split
                    if not _is_out_of_memory(exc) or size == 1:
                        raise
                    self.max_batch = max(1, min(size, len(canvases) - start) // 2)
                    log.warning("%s: out of memory at batch size %d, retrying with %d", self.name, size, self.max_batch)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                start += size
        return results

    # --- for subclasses -------------------------------------------------------------------
    @abc.abstractmethod
    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        """Detections for a batch of letterboxed canvases, mapped back through their boxes."""

    def warm_up(self) -> None:
        self.detect([np.full((self.image_size, self.image_size, 3), 100, dtype=np.uint8)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature!r}, backend={self.backend!r}, device={self.device!r})"


def to_detections(
    xyxy: np.ndarray, conf: np.ndarray, class_ids: np.ndarray, box: Letterbox, labels: dict[int, str], categories: dict[int, str]
) -> list[Detection]:
    """Model-input pixel boxes with scores and class ids -> detections of the classes in ``categories``
    (the others, and boxes of no size, are dropped)."""
    normalized = box.to_normalized(xyxy)
    found = []
    for (x, y, w, h), score, class_id in zip(normalized, conf, class_ids):
        class_id = int(class_id)
        category = categories.get(class_id)
        if category is None or w <= 0 or h <= 0:
            continue
        found.append(Detection(category, labels[class_id], float(score), (float(x), float(y), float(w), float(h))))
    return found


def yolo_nms(prediction: torch.Tensor, conf_threshold: float, iou_threshold: float,
             wanted: Sequence[int] | None = None, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's raw YOLO predictions ``(anchors, 5 + classes)`` (centre x, y, w, h, objectness,
    class probabilities) -> ``xyxy``, ``scores``, ``class_ids`` after per-class NMS.

    As YOLOv5's ``non_max_suppression`` does it (MegaDetector's and SpeciesNet's path): one label per
    box, the best class, scored objectness x class probability; boxes above ``conf_threshold``; at
    most 30,000 of the best into NMS and ``MAX_DETECTIONS_PER_IMAGE`` out. Unlike YOLOv5's it has no
    wall-clock limit, which on a busy CPU silently drops the rest of a batch. ``wanted`` keeps only
    those class ids (before NMS). ``groups`` (one id per class) makes NMS per group instead: classes
    of one group suppress each other, as a COCO model's animal classes must (a "bird" box and a
    "sheep" box on one animal are one animal, not two).
    """
    scores, class_ids = (prediction[:, 5:] * prediction[:, 4:5]).max(dim=1)
    keep = scores > conf_threshold
    if wanted is not None:
        mask = torch.zeros(prediction.shape[1] - 5, dtype=torch.bool, device=prediction.device)
        mask[list(wanted)] = True
        keep &= mask[class_ids]
    prediction, scores, class_ids = prediction[keep], scores[keep], class_ids[keep]
    order = scores.argsort(descending=True)[:_MAX_NMS_INPUT]
    prediction, scores, class_ids = prediction[order], scores[order], class_ids[order]
    cx, cy, w, h = prediction[:, 0], prediction[:, 1], prediction[:, 2], prediction[:, 3]
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    by = class_ids if groups is None else groups.to(class_ids.device)[class_ids]
    kept = torchvision.ops.batched_nms(xyxy, scores, by, iou_threshold)[:MAX_DETECTIONS_PER_IMAGE]
    return xyxy[kept], scores[kept], class_ids[kept]


class UInt8Input(torch.nn.Module):
    """Wraps a model so it takes the letterboxed canvases as they are: uint8, N x H x W x 3; a model
    returning a tuple (YOLOv5's predictions and feature maps) gives its first element."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images.permute(0, 3, 1, 2).float() / 255.0)
        return out[0] if isinstance(out, (tuple, list)) else out


def torch_runner(model: torch.nn.Module, device: str):
    """The torch backend: a function from a uint8 NHWC batch of canvases (numpy) to float predictions.

    CUDA runs under fp16 autocast. channels_last pays on the CPU too (oneDNN: YOLOv3-tiny at 416
    went from 35 to 20 ms an image here), and the NHWC input permuted to NCHW already is
    channels_last in memory, so it costs no copy.
    """
    wrapped = UInt8Input(model).to(device).to(memory_format=torch.channels_last)
    use_cuda = device.startswith("cuda")

    def run(batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch).to(device, non_blocking=True)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=use_cuda):
            return wrapped(tensor).float()

    return run


def build_runner(backend: str, device: str, runners: dict[str, Any]) -> tuple[str, Any]:
    """``(backend, runner)`` for a model whose ``runners`` maps torch / onnx / tensorrt to a factory.

    ``auto`` is TensorRT on a GPU and torch on the CPU. Where TensorRT cannot run (no ``tensorrt``
    package, no GPU), its factory raises :class:`TensorRTUnavailable` and this falls back to torch
    with one log line, so a GPU image without the extra still runs.
    """
    if backend == "auto":
        backend = "tensorrt" if device.startswith("cuda") else "torch"
    if backend == "tensorrt":
        try:
            return backend, runners[backend]()
        except TensorRTUnavailable as exc:
            backend = "torch"
            log.warning("TensorRT backend unavailable (%s): falling back to the torch backend on %s", exc, device)
    if backend not in runners:
        raise ValueError(f"unknown backend {backend!r}: use {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}")
    return backend, runners[backend]()


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime's providers for ``device``: CUDA first where the installed onnxruntime has it;
    on a GPU without it, the CPU with one warning (the caller then runs on the CPU)."""
    import onnxruntime as ort

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    log.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu): running ONNX on the CPU")
    return ["CPUExecutionProvider"]


class TensorRTUnavailable(RuntimeError):
    pass


def import_tensorrt(device: str):
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` saying why not (the caller falls back)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(f"'import tensorrt' failed: {exc}; install the 'tensorrt' extra on the GPU image") from exc
    if not device.startswith("cuda"):
        raise TensorRTUnavailable("it needs a CUDA GPU and this process has none")
    return trt


class TensorRTEngine:
    """An FP16 TensorRT engine built from an ONNX export (input ``images`` uint8 NHWC, output
    ``predictions``) and cached per GPU, precision, input shape and batch size.

    Exercised only on GPU machines with the ``tensorrt`` extra; CI tests its selection and fallback.
    """

    def __init__(self, trt: Any, onnx_path: Path, cache_dir: Path, shape: tuple[int, int], device: str, max_batch: int):
        self.trt = trt
        self.device = torch.device(device)
        self.max_batch = max_batch
        gpu = torch.cuda.get_device_name(self.device).replace(" ", "_").replace("/", "_")
        precision = "fp16"
        height, width = shape
        size = f"{height}" if height == width else f"{height}x{width}"
        path = cache_dir / f"{onnx_path.stem}-{gpu}-{precision}-{size}-b{max_batch}-trt{trt.__version__}.engine"
        logger = trt.Logger(trt.Logger.WARNING)
        if not path.is_file():
            log.info("building TensorRT engine %s (one-off, a minute or two)", path.name)
            builder = trt.Builder(logger)
            network = builder.create_network(0)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse(onnx_path.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
            config = builder.create_builder_config()
            config.set_flag(trt.BuilderFlag.FP16)
            profile = builder.create_optimization_profile()
            dims = (height, width, 3)
            profile.set_shape("images", (1, *dims), (max_batch, *dims), (max_batch, *dims))
            config.add_optimization_profile(profile)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
            staged = path.with_suffix(".partial")
            staged.write_bytes(bytes(serialized))
            staged.replace(path)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)

    def run(self, batch: np.ndarray) -> torch.Tensor:
        outputs = []
        for start in range(0, len(batch), self.max_batch):
            images = torch.from_numpy(batch[start : start + self.max_batch]).to(self.device)
            self.context.set_input_shape("images", tuple(images.shape))
            out_shape = tuple(self.context.get_tensor_shape("predictions"))
            predictions = torch.empty(out_shape, dtype=torch.float32, device=self.device)
            self.context.set_tensor_address("images", images.data_ptr())
            self.context.set_tensor_address("predictions", predictions.data_ptr())
            self.context.execute_async_v3(self.stream.cuda_stream)
            self.stream.synchronize()
            outputs.append(predictions)
        return torch.cat(outputs)
