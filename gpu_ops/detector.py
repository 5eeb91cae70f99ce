"""Stage 1 detectors behind one small interface: RGB arrays in, normalized boxes out.

``load_detector`` picks the model and the runtime:

* ``"default"`` - the embedded Darknet YOLOv3-tiny COCO weights (see ``weights.py``) run by our own
  PyTorch module (``darknet.py``) on the ``torch``, ``onnx`` or ``tensorrt`` backend.
* a path to an ultralytics model file (``.pt``, ``.onnx``, ``.engine``) - run by ultralytics, whose
  file type decides the runtime.
* ``"megadetector:<path>"`` - MegaDetector. v5 (``md_v5*.pt``, a YOLOv5 checkpoint) runs through the
  ``megadetector`` package when it is installed; v6 / v1000 checkpoints (trained through ultralytics)
  run through ultralytics. MegaDetector class ids 0, 1, 2 are animal, person, vehicle.

Categories. Every detection carries one of ``schemas.DETECTION_CATEGORIES`` and the model's own label.
A COCO model's labels map as: person -> person; bicycle, car, motorcycle, airplane, bus, train, truck,
boat -> vehicle; bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe -> animal. Every
other COCO class (chairs, bottles, traffic lights, ...) is dropped: Stage 1 keeps only what a camera
trap is for. A model whose labels are ``animal``/``person``/``vehicle`` keeps them as they are.

Backends (default model). ``torch``: CPU, or CUDA with fp16 autocast and channels_last. ``onnx``:
the module exported once per image size next to the weights (uint8 NHWC input, scaling inside the
graph), run by ONNX Runtime; on a CPU a batch is split across cores, one single-threaded run each.
``tensorrt``: an FP16 engine built from that export, cached per GPU name, precision and batch
size. ``auto``: TensorRT on a GPU, else ONNX Runtime on the CPU (1.3-3x faster than torch here);
a missing ``tensorrt`` package falls back with one log line. YOLOv3-tiny was trained at 416: at
640 it is 2.3x slower on a CPU and scores frame-filling subjects lower (bus.jpg's bus 0.65 -> 0.13).

Geometry. Images are letterboxed to ``image_size`` (aspect kept, centred, padded), inferred in
batches, boxes go through per-class NMS (``torchvision.ops.batched_nms``) and are mapped back to the
original image as MegaDetector-style ``(x, y, w, h)`` normalized to [0, 1], origin top-left.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torchvision

from gpu_ops.schemas import DETECTION_CATEGORIES
from gpu_ops.fileio import sha256_file
from gpu_ops.weights import cache_lock, default_model_dir, fetch_default_weights

log = logging.getLogger("gpu_ops")

TORCH_THREADS_ENV = "ODINS_RAVNE_TORCH_THREADS"
MAX_DETECTIONS_PER_IMAGE = 300
# Part of the cached ONNX / TensorRT file names: bump it whenever the exported graph changes
# (2: batch norm folded, uint8 NHWC input), so no stale export is ever picked up.
ONNX_EXPORT_VERSION = 2
DARKNET_PAD_VALUE = 128  # Darknet letterboxes with grey 0.5
ULTRALYTICS_PAD_VALUE = 114

_VEHICLES = ("bicycle", "car", "motorcycle", "motorbike", "airplane", "aeroplane", "bus", "train", "truck", "boat")
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
# Darknet's coco.names spells two vehicles the VOC way (motorbike, aeroplane); both spellings map.
COCO_CATEGORY = {"person": "person", **{name: "vehicle" for name in _VEHICLES}, **{name: "animal" for name in _ANIMALS}}
MEGADETECTOR_CLASSES = {0: "animal", 1: "person", 2: "vehicle"}


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


def _to_detections(
    xyxy: np.ndarray, conf: np.ndarray, class_ids: np.ndarray, box: Letterbox, labels: dict[int, str], categories: dict[int, str]
) -> list[Detection]:
    normalized = box.to_normalized(xyxy)
    found = []
    for (x, y, w, h), score, class_id in zip(normalized, conf, class_ids):
        class_id = int(class_id)
        category = categories.get(class_id)
        if category is None or w <= 0 or h <= 0:
            continue
        found.append(Detection(category, labels[class_id], float(score), (float(x), float(y), float(w), float(h))))
    return found


class DarknetDetector(Detector):
    """The default YOLOv3-tiny COCO model on the torch, onnx or tensorrt backend."""

    pad_value = DARKNET_PAD_VALUE

    def __init__(self, weights_dir: Path, *, backend: str, device: str, image_size: int, conf_threshold: float, iou_threshold: float):
        super().__init__()
        if image_size % 32:
            raise ValueError(f"image_size {image_size} is not a multiple of 32, which YOLOv3-tiny needs (e.g. 416, 640)")
        from gpu_ops.darknet import load_darknet

        self.weights_dir = weights_dir
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        names = (weights_dir / "coco.names").read_text().splitlines()
        self.labels = {i: name.strip() for i, name in enumerate(names) if name.strip()}
        self.categories = {i: c for i, name in self.labels.items() if (c := category_for_label(name))}
        self.name = "yolov3-tiny-coco"
        digest = sha256_file(weights_dir / "yolov3-tiny.weights")[:16]
        self.signature = f"{self.name}:{digest}:{image_size}:conf={conf_threshold}:iou={iou_threshold}"
        self.model = load_darknet(weights_dir / "yolov3-tiny.cfg", weights_dir / "yolov3-tiny.weights")
        self._runner = self._make_runner(backend)

    # Each runner takes the uint8 NHWC batch of canvases as numpy and returns (N, anchors, 85)
    # predictions. Scaling to 0..1 and the NHWC -> NCHW view live inside the model (UInt8Input), so
    # the host does no float conversion and a GPU receives a quarter of the bytes.
    def _make_runner(self, backend: str):
        if backend == "tensorrt":
            try:
                return self._tensorrt_runner()
            except _TensorRTUnavailable as exc:
                backend = _untensorrt_backend(self.device)
                log.warning("TensorRT backend unavailable (%s): falling back to the %s backend on %s", exc, backend, self.device)
        if backend == "onnx":
            self.backend = "onnx"
            return self._onnx_runner()
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r}: use auto, torch, onnx or tensorrt")
        self.backend = "torch"
        return self._torch_runner()

    def _torch_runner(self):
        # channels_last pays on the CPU too (oneDNN): measured 35 -> 20 ms an image at 416 here.
        # The NHWC uint8 input permuted to NCHW is already channels_last in memory: no copy.
        model = UInt8Input(self.model).to(self.device).to(memory_format=torch.channels_last)
        use_cuda = self.device.startswith("cuda")

        def run(batch: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=use_cuda):
                return model(tensor).float()

        return run

    def onnx_path(self) -> Path:
        """Exported once per image size, cached next to the weights; batch size stays dynamic."""
        path = self.weights_dir / f"yolov3-tiny-{self.image_size}-export{ONNX_EXPORT_VERSION}.onnx"
        if path.is_file():
            return path
        with cache_lock(self.weights_dir):  # processes starting together export once
            if not path.is_file():
                self._export_onnx(path)
        return path

    def _export_onnx(self, path: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".onnx-", dir=self.weights_dir) as staging:
            staged = Path(staging) / path.name
            dummy = torch.zeros(1, self.image_size, self.image_size, 3, dtype=torch.uint8)
            cpu_model = UInt8Input(self.model).to("cpu").eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's shape-inference chatter
                torch.onnx.export(
                    cpu_model, (dummy,), str(staged), input_names=["images"], output_names=["predictions"],
                    dynamic_axes={"images": {0: "batch"}, "predictions": {0: "batch"}}, opset_version=17, dynamo=False,
                )
            staged.replace(path)
        log.info("exported %s", path)

    def _onnx_runner(self):
        import onnxruntime as ort

        threads = torch.get_num_threads()
        on_gpu = False
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
                on_gpu = True
            else:
                log.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu): running ONNX on the CPU")
                self.device = "cpu"
        options = ort.SessionOptions()
        # On the CPU the batch is split across cores, one single-threaded run per core, instead of
        # each layer being split across threads: a small model's many short layers then never wait
        # at a thread barrier for a core that a decode thread holds (this halved the engine's model
        # time on 2 busy cores). Spinning is off so idle threads leave the cores to the decoders.
        options.intra_op_num_threads = threads if on_gpu else 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = ort.InferenceSession(str(self.onnx_path()), options, providers=providers)
        shards = 1 if on_gpu else threads
        pool = ThreadPoolExecutor(max_workers=shards, thread_name_prefix="onnx") if shards > 1 else None

        def run_one(batch: np.ndarray) -> np.ndarray:
            return session.run(["predictions"], {"images": batch})[0]

        def run(batch: np.ndarray) -> torch.Tensor:
            if pool is None or len(batch) == 1:
                return torch.from_numpy(run_one(batch))
            parts = np.array_split(batch, min(shards, len(batch)))
            return torch.from_numpy(np.concatenate(list(pool.map(run_one, parts))))

        return run

    def _tensorrt_runner(self):
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise _TensorRTUnavailable(f"'import tensorrt' failed: {exc}; install the 'tensorrt' extra on the GPU image") from exc
        if not self.device.startswith("cuda"):
            raise _TensorRTUnavailable("it needs a CUDA GPU and this process has none")
        engine = _TensorRTEngine(trt, self.onnx_path(), self.weights_dir, self.image_size, self.device, max_batch=32)
        self.backend = "tensorrt"
        return engine.run

    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        predictions = self._runner(np.stack(canvases))
        return [self._postprocess(p, box) for p, box in zip(predictions, boxes)]

    def _postprocess(self, prediction: torch.Tensor, box: Letterbox) -> list[Detection]:
        # One label per box (the best class), scored objectness x class probability, as ultralytics does.
        scores, class_ids = (prediction[:, 5:] * prediction[:, 4:5]).max(dim=1)
        keep = scores > self.conf_threshold
        if self.categories:
            wanted = torch.zeros(prediction.shape[1] - 5, dtype=torch.bool, device=prediction.device)
            wanted[list(self.categories)] = True
            keep &= wanted[class_ids]
        prediction, scores, class_ids = prediction[keep], scores[keep], class_ids[keep]
        if not len(scores):
            return []
        cx, cy, w, h = prediction[:, 0], prediction[:, 1], prediction[:, 2], prediction[:, 3]
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
        kept = torchvision.ops.batched_nms(xyxy, scores, class_ids, self.iou_threshold)[:MAX_DETECTIONS_PER_IMAGE]
        return _to_detections(
            xyxy[kept].cpu().numpy(), scores[kept].cpu().numpy(), class_ids[kept].cpu().numpy(), box, self.labels, self.categories
        )


class UInt8Input(torch.nn.Module):
    """Wraps a model so it takes the letterboxed canvases as they are: uint8, N x H x W x 3."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.permute(0, 3, 1, 2).float() / 255.0)


class _TensorRTUnavailable(RuntimeError):
    pass


class _TensorRTEngine:
    """A TensorRT engine built from our ONNX export and cached per GPU, precision and batch size.

    Exercised only on GPU machines with the ``tensorrt`` extra; CI tests its selection and fallback.
    """

    def __init__(self, trt: Any, onnx_path: Path, cache_dir: Path, image_size: int, device: str, max_batch: int):
        self.trt = trt
        self.device = torch.device(device)
        self.max_batch = max_batch
        gpu = torch.cuda.get_device_name(self.device).replace(" ", "_").replace("/", "_")
        precision = "fp16"
        path = cache_dir / f"{onnx_path.stem}-{gpu}-{precision}-b{max_batch}-trt{trt.__version__}.engine"
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
            shape = (image_size, image_size, 3)
            profile.set_shape("images", (1, *shape), (max_batch, *shape), (max_batch, *shape))
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


def _import_ultralytics():
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
        ultralytics = _import_ultralytics()
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
            found.append(_to_detections(
                data.xyxy.cpu().numpy(), data.conf.cpu().numpy(), data.cls.cpu().numpy(), box, self.labels, self.categories
            ))
        return found


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
            detections = []
            # The package reports 1-based string categories: "1" animal, "2" person, "3" vehicle.
            for item in result.get("detections") or []:
                category = MEGADETECTOR_CLASSES.get(int(item["category"]) - 1)
                if category is None:
                    continue
                x, y, w, h = (float(np.clip(v, 0.0, 1.0)) for v in item["bbox"])
                w, h = min(w, 1.0 - x), min(h, 1.0 - y)
                detections.append(Detection(category, category, float(item["conf"]), (x, y, w, h)))
            found.append(detections)
        return found


_CACHE: dict[tuple, Detector] = {}
_CACHE_LOCK = threading.Lock()


def load_detector(model: str = "default", *, backend: str = "auto", device: str = "auto", image_size: int = 640,
                  conf_threshold: float = 0.05, iou_threshold: float = 0.45) -> Detector:
    """Load (once per process) and warm up a detector; see the module docstring for ``model``.

    ``backend``: auto (on a GPU TensorRT, falling back to torch when the tensorrt package is
    missing; on the CPU ONNX Runtime), torch, onnx or tensorrt; it applies to the default model (an ultralytics file's own type decides its
    runtime). ``cold_start_s`` on the result is the load + warm-up time of the first call.
    """
    key = (model, backend, device, image_size, conf_threshold, iou_threshold)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        configure_torch_threads()
        resolved_device = resolve_device(device)
        detector = _build(model, backend, resolved_device, image_size, conf_threshold, iou_threshold)
        detector.warm_up()
        detector.cold_start_s = time.perf_counter() - started
        log.info("loaded %r in %.2f s", detector, detector.cold_start_s)
        _CACHE[key] = detector
        return detector


def _build(model: str, backend: str, device: str, image_size: int, conf: float, iou: float) -> Detector:
    if backend not in ("auto", "torch", "onnx", "tensorrt"):
        raise ValueError(f"unknown backend {backend!r}: use auto, torch, onnx or tensorrt")
    options = dict(device=device, image_size=image_size, conf_threshold=conf, iou_threshold=iou)
    if model == "default":
        if backend == "auto":
            # On a GPU, TensorRT is tried first and falls back with one log line.
            backend = "tensorrt" if device.startswith("cuda") else _untensorrt_backend(device)
        return DarknetDetector(fetch_default_weights(), backend=backend, **options)
    if model.startswith("megadetector:"):
        path = _existing(model.split(":", 1)[1], model)
        if path.name.lower().startswith("md_v5"):
            return MegaDetectorV5(path, **options)
        return UltralyticsDetector(path, name=path.stem, class_categories=MEGADETECTOR_CLASSES, **options)
    path = _existing(model, model)
    if path.suffix.lower() not in (".pt", ".onnx", ".engine"):
        raise ValueError(f"model {model!r}: expected 'default', 'megadetector:<path>' or an ultralytics .pt/.onnx/.engine file")
    return UltralyticsDetector(path, **options)


def _untensorrt_backend(device: str) -> str:
    """The best backend without TensorRT: torch on a GPU (fp16 autocast, channels_last); ONNX
    Runtime on the CPU, measured 1.3-3x faster than torch there for YOLOv3-tiny (more at batch 1)."""
    return "torch" if device.startswith("cuda") else "onnx"


def _existing(path_text: str, model: str) -> Path:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model {model!r}: no file at {path}")
    return path
