"""MegaDetector as a Stage 1 detector, batched through the engine like the default model.

``model: megadetector-v5a`` (a release name, :mod:`gpu_ops.model_registry`) or
``model: megadetector:<path>``. The checkpoint's own format decides the adapter:

* YOLOv5 checkpoints (v5a/v5b, v1000 redwood and spruce) run in :class:`YOLOv5Detector`: the model
  classes of the ``yolov5`` package, with MegaDetector's preprocessing. That is YOLOv5's
  ``letterbox`` with ``auto=True``: the long side scaled to ``image_size`` (1280 for v5) with a
  bilinear resize of the full image, the short side padded (grey 114) to a multiple of the model's
  stride (64 for the P6 models), so a 4:3 photo is 1280 x 960, a quarter less work than a square.
  Boxes come back through YOLOv5's ``scale_boxes`` geometry and its NMS rules (``detector.yolo_nms``).
  A batch is grouped by canvas shape (one camera's frames share one), so batching changes nothing.
  The engine decodes these images at full size: a reduced JPEG decode followed by the bilinear resize
  would not be the pixels MegaDetector sees (see ``decode_reduction``).
* ultralytics checkpoints (v1000 larch/sorrel, v6) run in ``UltralyticsDetector`` with
  MegaDetector's class map, on the same four backends (ultralytics' own exports, cached next to
  the checkpoint; see ``detector_ultralytics``).

Backends for YOLOv5: ``torch`` (CUDA: fp16 autocast, channels_last), ``onnx`` (exported once per
checkpoint next to it, uint8 NHWC input with dynamic batch, height and width; ONNX Runtime) and
``tensorrt`` (an FP16 engine built from that export; it needs one fixed input shape, so on this
backend canvases are padded to the full ``image_size`` square: the only backend whose boxes can move,
by the padding's small effect, against the reference). ``auto``: TensorRT on a GPU (falling back to
torch with one log line where the ``tensorrt`` package is missing), torch on the CPU.

MegaDetector checkpoints are pickles whose module path is ``models.yolo`` (YOLOv5's repository
layout). The ``yolov5`` package's own loader puts its folder on ``sys.path`` so that name resolves;
we map ``models.*`` and ``utils.*`` to ``yolov5.models.*`` / ``yolov5.utils.*`` while unpickling
instead, which loads the same classes without a second copy of them under a top-level ``models``
name. Unpickling runs code: load only checkpoints you trust (the registry checks their hashes).
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from gpu_ops.detector import (
    Detection,
    Detector,
    Letterbox,
    TensorRTEngine,
    UInt8Input,
    build_runner,
    import_tensorrt,
    onnx_providers,
    to_detections,
    torch_runner,
    yolo_nms,
)
from gpu_ops.detector_ultralytics import UltralyticsDetector
from gpu_ops.fileio import sha256_file
from gpu_ops.megadetector_format import CLASS_CATEGORIES
from gpu_ops.weights import cache_lock

log = logging.getLogger("gpu_ops")

YOLOV5_PAD_VALUE = 114
# Part of the cached export names: bump it whenever the exported graph changes.
ONNX_EXPORT_VERSION = 1


def checkpoint_format(path: Path) -> str:
    """``yolov5`` or ``ultralytics``, read from the pickle's module names without unpickling it;
    ONNX and TensorRT files are ultralytics exports (its file type decides the runtime)."""
    if path.suffix.lower() != ".pt":
        return "ultralytics"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickled = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            data = archive.read(pickled) if pickled else b""
    else:
        data = path.read_bytes()[: 1 << 20]
    if b"ultralytics.nn" in data:
        return "ultralytics"
    if b"models.yolo" in data:
        return "yolov5"
    raise RuntimeError(f"{path.name} is not a YOLOv5 or ultralytics checkpoint (MegaDetector v5, v1000 or v6): "
                       "check the file, or name a release (odins-ravne models list)")


def load_megadetector(path: Path, *, backend: str, device: str, image_size: int, conf_threshold: float,
                      iou_threshold: float, name: str | None = None) -> Detector:
    """The adapter for this checkpoint: YOLOv5 checkpoints batched here, the others through ultralytics."""
    options = dict(device=device, image_size=image_size, conf_threshold=conf_threshold, iou_threshold=iou_threshold)
    if checkpoint_format(path) == "yolov5":
        return YOLOv5Detector(path, backend=backend, name=name, **options)
    return UltralyticsDetector(path, backend=backend, name=name or path.stem, class_categories=CLASS_CATEGORIES, **options)


class _YOLOv5Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] in ("models", "utils"):
            module = f"yolov5.{module}"
        return super().find_class(module, name)


_YOLOV5_PICKLE = types.SimpleNamespace(Unpickler=_YOLOv5Unpickler, load=pickle.load, __name__="yolov5_pickle")


def load_yolov5_model(path: Path) -> torch.nn.Module:
    """The checkpoint's model in fp32, fused and in eval mode, with the compatibility fixes of YOLOv5's
    ``attempt_load`` (anchor grids as lists, Upsample's recompute_scale_factor)."""
    try:
        import yolov5.models.yolo as yolo  # noqa: F401 - registers the classes the pickle names
    except ImportError as exc:
        raise RuntimeError(f"{path.name} is a YOLOv5 checkpoint: install the 'models' extra (yolov5). {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's FutureWarnings about pickles
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_YOLOV5_PICKLE)
    # MegaDetector and SpeciesNet run ``model``, not the EMA copy YOLOv5's attempt_load prefers.
    model = (checkpoint["model"] if isinstance(checkpoint, dict) else checkpoint).float()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model = model.fuse().eval() if hasattr(model, "fuse") else model.eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
            module.recompute_scale_factor = None
        if isinstance(module, yolo.Detect):
            if not isinstance(module.anchor_grid, list):
                delattr(module, "anchor_grid")
                setattr(module, "anchor_grid", [torch.zeros(1)] * module.nl)
            module.inplace = False  # the in-place box decode does not export
    return model


def yolov5_letterbox(image: np.ndarray, size: int, stride: int, square: bool) -> tuple[np.ndarray, Letterbox]:
    """YOLOv5's ``letterbox`` (``auto=True``, or ``square`` for a fixed ``size`` x ``size`` canvas)
    and the geometry YOLOv5's ``scale_boxes`` maps boxes back with."""
    import cv2

    height, width = image.shape[:2]
    ratio = min(size / height, size / width)
    new_w, new_h = int(round(width * ratio)), int(round(height * ratio))
    pad_w, pad_h = size - new_w, size - new_h
    if not square:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = int(round(pad_h / 2 - 0.1)), int(round(pad_w / 2 - 0.1))
    canvas = np.full((new_h + pad_h, new_w + pad_w, 3), YOLOV5_PAD_VALUE, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = image
    gain = min(canvas.shape[0] / height, canvas.shape[1] / width)
    return canvas, Letterbox(width, height, gain, (canvas.shape[1] - width * gain) / 2, (canvas.shape[0] - height * gain) / 2)


class YOLOv5Detector(Detector):
    """A YOLOv5 checkpoint (MegaDetector v5 and v1000 redwood/spruce); see the module docstring."""

    pad_value = YOLOV5_PAD_VALUE

    def __init__(self, path: Path, *, backend: str, device: str, image_size: int, conf_threshold: float,
                 iou_threshold: float, name: str | None = None):
        super().__init__()
        self.path = path
        self.model = load_yolov5_model(path)
        self.stride = int(max(self.model.stride))
        if image_size % self.stride:
            raise ValueError(f"image_size {image_size} is not a multiple of {path.name}'s stride {self.stride} (e.g. 1280, 640)")
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        names = self.model.names
        self.labels = {int(i): str(n) for i, n in (names.items() if isinstance(names, dict) else enumerate(names))}
        self.categories = {i: c for i, c in CLASS_CATEGORIES.items() if i in self.labels}
        self.name = name or path.stem
        digest = sha256_file(path)[:16]
        self.signature = f"{self.name}:{digest}:{image_size}:conf={conf_threshold}:iou={iou_threshold}"
        self._square = False
        self._runner = self._make_runner(backend)

    # --- preprocessing: MegaDetector's -------------------------------------------------------
    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return yolov5_letterbox(image, self.image_size, self.stride, self._square)

    def decode_reduction(self, width: int, height: int) -> int:
        """Always a full decode: YOLOv5 resizes the full image bilinearly, which a DCT-reduced decode
        does not reproduce (at 1280 a 12 MP photo would decode at 1/2 and land on other pixels)."""
        return 1

    # --- backends -----------------------------------------------------------------------------
    def _make_runner(self, backend: str):
        self.backend, runner = build_runner(backend, self.device, {
            "torch": lambda: torch_runner(self.model, self.device), "onnx": self._onnx_runner,
            "tensorrt": self._tensorrt_runner,
        })
        return runner

    def onnx_path(self) -> Path:
        """Exported once per checkpoint, cached next to it (batch, height and width stay dynamic)."""
        digest = sha256_file(self.path)[:12]
        path = self.path.with_name(f"{self.path.stem}-{digest}-export{ONNX_EXPORT_VERSION}.onnx")
        if path.is_file():
            return path
        with cache_lock(self.path.parent):  # processes starting together export once
            if not path.is_file():
                self._export_onnx(path)
        return path

    def _export_onnx(self, path: Path) -> None:
        from yolov5.models.yolo import Detect

        for module in self.model.modules():
            if isinstance(module, Detect):
                module.dynamic = True  # the grid follows the input's shape in the graph
                module.export = True  # predictions only, no feature maps
        dummy = torch.zeros(1, self.image_size, self.image_size, 3, dtype=torch.uint8)
        try:
            with tempfile.TemporaryDirectory(prefix=".onnx-", dir=path.parent) as staging, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's tracer chatter
                staged = Path(staging) / path.name
                torch.onnx.export(
                    UInt8Input(self.model).to("cpu").eval(), (dummy,), str(staged), input_names=["images"],
                    output_names=["predictions"], opset_version=17, dynamo=False,
                    dynamic_axes={"images": {0: "batch", 1: "height", 2: "width"}, "predictions": {0: "batch", 1: "anchors"}},
                )
                staged.replace(path)
        finally:
            for module in self.model.modules():
                if isinstance(module, Detect):
                    module.dynamic, module.export = False, False
        log.info("exported %s", path)

    def _onnx_runner(self):
        import onnxruntime as ort

        providers = onnx_providers(self.device)
        if "CUDAExecutionProvider" not in providers:
            self.device = "cpu"
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(self.onnx_path()), options, providers=providers)

        def run(batch: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(session.run(["predictions"], {"images": batch})[0])

        return run

    def _tensorrt_runner(self):
        trt = import_tensorrt(self.device)
        shape = (self.image_size, self.image_size)
        engine = TensorRTEngine(trt, self.onnx_path(), self.path.parent, shape, self.device, max_batch=16)
        self._square = True  # one engine shape: every canvas padded to the full square
        return engine.run

    # --- inference ------------------------------------------------------------------------------
    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        found: list[list[Detection] | None] = [None] * len(canvases)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, canvas in enumerate(canvases):
            groups.setdefault(canvas.shape, []).append(index)
        for indices in groups.values():
            predictions = self._runner(np.stack([canvases[i] for i in indices]))
            for i, prediction in zip(indices, predictions):
                xyxy, scores, class_ids = yolo_nms(prediction, self.conf_threshold, self.iou_threshold, list(self.categories))
                found[i] = to_detections(xyxy.cpu().numpy(), scores.cpu().numpy(), class_ids.cpu().numpy(), boxes[i],
                                         self.labels, self.categories)
        return found
