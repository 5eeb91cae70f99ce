"""The default Stage 1 detector: Darknet YOLOv3-tiny COCO weights (see ``weights.py``) run by our own
PyTorch module (``darknet.py``) on the ``torch``, ``onnx`` or ``tensorrt`` backend.

``torch``: CPU, or CUDA with fp16 autocast and channels_last. ``onnx``: the module exported once per
image size next to the weights (uint8 NHWC input, scaling inside the graph), run by ONNX Runtime; on
a CPU a batch is split across cores, one single-threaded run each. ``tensorrt``: an FP16 engine built
from that export, cached per GPU name, precision and batch size. ``auto``: TensorRT on a GPU, else
ONNX Runtime on the CPU (1.3-3x faster than torch here); a missing ``tensorrt`` package falls back
with one log line. YOLOv3-tiny was trained at 416: at 640 it is 2.3x slower on a CPU and scores
frame-filling subjects lower (bus.jpg's bus 0.65 -> 0.13).

Boxes go through NMS per category (animal, person, vehicle: ``torchvision.ops.batched_nms`` over the
category, not the COCO class), one label per box (the best class, scored objectness x class
probability, as ultralytics does). Per COCO class, as ultralytics does it, a blurred night animal
seen as both "bird" and "sheep" kept two boxes, two animals in the count (held-out realdata frames
of ENA24 and zamba showed it); within a category the better box suppresses the other.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from gpu_ops.animalness import ANIMAL_SCORES, pool_animal_classes
from gpu_ops.darknet import load_darknet
from gpu_ops.detector import (
    Detection,
    Detector,
    Letterbox,
    TensorRTEngine,
    TensorRTUnavailable,
    UInt8Input,
    category_for_label,
    import_tensorrt,
    onnx_providers,
    to_detections,
    torch_runner,
    yolo_nms,
)
from gpu_ops.fileio import sha256_file
from gpu_ops.weights import cache_lock

log = logging.getLogger("gpu_ops")

# Part of the cached ONNX / TensorRT file names: bump it whenever the exported graph changes
# (2: batch norm folded, uint8 NHWC input), so no stale export is ever picked up.
ONNX_EXPORT_VERSION = 2
DARKNET_PAD_VALUE = 128  # Darknet letterboxes with grey 0.5


class DarknetDetector(Detector):
    """The default YOLOv3-tiny COCO model on the torch, onnx or tensorrt backend."""

    pad_value = DARKNET_PAD_VALUE
    input_size = 416  # what YOLOv3-tiny was trained at: the size it runs at unless the profile names another

    def __init__(self, weights_dir: Path, *, backend: str, device: str, image_size: int, conf_threshold: float, iou_threshold: float,
                 animal_score: str = "best", heads: Path | None = None, name: str | None = None):
        """``heads``: a :func:`gpu_ops.finetune.save_heads` file put over the COCO layers it holds (the
        ``default-camtrap`` models, :data:`gpu_ops.weights.FINE_TUNED`); its digest is part of the
        signature and of the export's name. ``name``: the detections' model name (by default
        ``yolov3-tiny-coco``, or ``yolov3-tiny-camtrap`` with ``heads``)."""
        super().__init__()
        if animal_score not in ANIMAL_SCORES:
            raise ValueError(f"unknown animal_score {animal_score!r}: use {' or '.join(ANIMAL_SCORES)}")
        # gpu_ops.animalness: 'sum' scores an anchor by all its animal classes together.
        self.animal_score = animal_score
        if image_size % 32:
            raise ValueError(f"image_size {image_size} is not a multiple of 32, which YOLOv3-tiny needs (e.g. 416, 640)")
        self.weights_dir = weights_dir
        self.image_size = image_size
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.device = device
        names = (weights_dir / "coco.names").read_text().splitlines()
        self.labels = {i: name.strip() for i, name in enumerate(names) if name.strip()}
        self.categories = {i: c for i, name in self.labels.items() if (c := category_for_label(name))}
        self.name = name or ("yolov3-tiny-coco" if heads is None else "yolov3-tiny-camtrap")
        digest = sha256_file(weights_dir / "yolov3-tiny.weights")[:16]
        heads_digest = sha256_file(heads)[:12] if heads is not None else None
        self._export_tag = f"-heads-{heads_digest}" if heads_digest else ""
        if heads_digest:
            digest += f"+{heads_digest}"
        self.signature = f"{self.name}:{digest}:{image_size}:conf={conf_threshold}:iou={iou_threshold}:nms=category"
        if animal_score != "best":
            self.signature += f":animal={animal_score}"
        self._animal_ids = [i for i, c in self.categories.items() if c == "animal"]
        kinds = sorted(set(self.categories.values()))
        self._nms_groups = torch.tensor([kinds.index(self.categories[i]) if i in self.categories else len(kinds) + i
                                         for i in range(max(self.labels) + 1)])
        self.model = load_darknet(weights_dir / "yolov3-tiny.cfg", weights_dir / "yolov3-tiny.weights")
        if heads is not None:
            from gpu_ops.finetune import apply_heads, load_heads

            apply_heads(self, load_heads(heads, self))
        self._runner = self._make_runner(backend)

    # Each runner takes the uint8 NHWC batch of canvases as numpy and returns (N, anchors, 85)
    # predictions. Scaling to 0..1 and the NHWC -> NCHW view live inside the model (UInt8Input), so
    # the host does no float conversion and a GPU receives a quarter of the bytes.
    def _make_runner(self, backend: str):
        if backend == "auto":
            # On a GPU, TensorRT is tried first and falls back with one log line.
            backend = "tensorrt" if self.device.startswith("cuda") else _without_tensorrt(self.device)
        if backend == "tensorrt":
            try:
                return self._tensorrt_runner()
            except TensorRTUnavailable as exc:
                backend = _without_tensorrt(self.device)
                log.warning("TensorRT backend unavailable (%s): falling back to the %s backend on %s", exc, backend, self.device)
        if backend == "onnx":
            self.backend = "onnx"
            return self._onnx_runner()
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r}: use auto, torch, onnx or tensorrt")
        self.backend = "torch"
        return self._torch_runner()

    def _torch_runner(self):
        return torch_runner(self.model, self.device)

    def onnx_path(self) -> Path:
        """Exported once per image size, cached next to the weights; batch size stays dynamic."""
        path = self.weights_dir / f"yolov3-tiny{self._export_tag}-{self.image_size}-export{ONNX_EXPORT_VERSION}.onnx"
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
        providers = onnx_providers(self.device)
        on_gpu = "CUDAExecutionProvider" in providers
        if not on_gpu:
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
        trt = import_tensorrt(self.device)
        shape = (self.image_size, self.image_size)
        engine = TensorRTEngine(trt, self.onnx_path(), self.weights_dir, shape, self.device, max_batch=32)
        self.backend = "tensorrt"
        return engine.run

    def _infer(self, canvases: list[np.ndarray], boxes: list[Letterbox]) -> list[list[Detection]]:
        predictions = self._runner(np.stack(canvases))
        return [self._postprocess(p, box) for p, box in zip(predictions, boxes)]

    def _postprocess(self, prediction: torch.Tensor, box: Letterbox) -> list[Detection]:
        if self.animal_score == "sum":
            prediction = pool_animal_classes(prediction, self._animal_ids, self.conf_threshold)
        xyxy, scores, class_ids = yolo_nms(prediction, self.conf_threshold, self.iou_threshold, list(self.categories) or None,
                                             self._nms_groups)
        return to_detections(xyxy.cpu().numpy(), scores.cpu().numpy(), class_ids.cpu().numpy(), box, self.labels, self.categories)


def _without_tensorrt(device: str) -> str:
    """The best backend without TensorRT: torch on a GPU (fp16 autocast, channels_last); ONNX
    Runtime on the CPU, measured 1.3-3x faster than torch there for YOLOv3-tiny (more at batch 1)."""
    return "torch" if device.startswith("cuda") else "onnx"
