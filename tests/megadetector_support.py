"""Randomly initialised MegaDetector-format checkpoints, and MegaDetector's own inference as the reference.

A published MegaDetector v5 file is a YOLOv5 training checkpoint: a dict whose ``model`` is the
pickled fp16 ``DetectionModel``, its classes pickled under YOLOv5's repository layout (``models.yolo``,
``models.common``). ``save_megadetector_checkpoint`` writes the same: the yolov5 package's classes,
named as the repository names them while pickling. The architecture is the real one (``yolov5x6.yaml``
for v5a/v5b and v1000 redwood), so it costs what the trained model costs; only the weights are random.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MD_NAMES = {0: "animal", 1: "person", 2: "vehicle"}


@contextlib.contextmanager
def _repository_module_names():
    """While pickling, the yolov5 package's model classes are named ``models.<module>`` (as in the repository)."""
    import yolov5.models
    import yolov5.models.common
    import yolov5.models.experimental
    import yolov5.models.yolo

    modules = {"models.common": yolov5.models.common, "models.experimental": yolov5.models.experimental,
               "models.yolo": yolov5.models.yolo}
    renamed = []
    # The names may already be taken by a copy that yolov5's own loader imported through sys.path.
    previous = {alias: sys.modules.get(alias) for alias in ("models", *modules)}
    sys.modules.update({"models": yolov5.models, **modules})
    for alias, module in modules.items():
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                value.__module__ = alias
                renamed.append((value, module.__name__))
    try:
        yield
    finally:
        for value, name in renamed:
            value.__module__ = name
        for alias, module in previous.items():
            if module is None:
                del sys.modules[alias]
            else:
                sys.modules[alias] = module


def build_yolov5(cfg: str = "yolov5x6.yaml", *, seed: int = 0, objectness_boost: float = 3.0,
                 head_scale: float = 1.0) -> torch.nn.Module:
    """A random YOLOv5 detection model of MegaDetector's classes. ``objectness_boost`` raises the
    detection head's objectness bias so that a random model puts boxes above a test threshold;
    ``head_scale`` scales the head's weights, so that its outputs are not saturated and the boxes
    and scores depend on the image (a random deep net's raw features are large)."""
    from yolov5.models.yolo import Detect, DetectionModel

    torch.manual_seed(seed)
    hub = Path(sys.modules["yolov5"].__file__).parent / "models"
    path = next(p for p in (hub / cfg, hub / "hub" / cfg) if p.is_file())
    model = DetectionModel(str(path), ch=3, nc=len(MD_NAMES))
    model.names = dict(MD_NAMES)
    # Batch-norm statistics from a few random images: at their defaults the activations vanish
    # through the ~100 random layers and every box is the head's bias alone, the same on any image.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):  # smooth noise: closer to a photograph's statistics than white noise
            model(torch.nn.functional.interpolate(torch.rand(2, 3, 8, 10), size=(256, 320), mode="bilinear"))
    model.eval()
    detect = next(m for m in model.modules() if isinstance(m, Detect))
    with torch.no_grad():
        for conv in detect.m:
            conv.weight *= head_scale
            # Box offsets and sizes a tenth as sensitive again: anchor-sized boxes that move with the
            # image, instead of sigmoids pinned at 0 or 1 (zero-height boxes across the frame).
            conv.weight.view(detect.na, -1, *conv.weight.shape[1:])[:, :4] *= 0.1
            bias = conv.bias.view(detect.na, -1)
            bias[:, 4] += objectness_boost
    return model.eval()


def save_megadetector_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save as MegaDetector's release files are: a YOLOv5 checkpoint dict with the fp16 model pickled."""
    import copy

    checkpoint = {"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None,
                  "updates": None, "optimizer": None, "wandb_id": None, "date": "2022-06-15"}
    with _repository_module_names():
        torch.save(checkpoint, path)
    return path


def reference_detections(checkpoint: Path, image_path: Path, *, image_size: int = 1280, conf: float = 0.1,
                         iou: float = 0.45) -> list[tuple[int, float, tuple[float, float, float, float]]]:
    """MegaDetector's inference as SpeciesNet's detector (adapted from MegaDetector) runs it: YOLOv5's
    letterbox (auto, stride of the model) + model + non_max_suppression + scale_boxes. Returns
    ``(class, conf, normalized x, y, w, h)`` per box."""
    import yolov5.models.yolo  # noqa: F401 - puts the package folder on sys.path, so 'models.yolo' unpickles
    from yolov5.utils.augmentations import letterbox
    from yolov5.utils.general import non_max_suppression, scale_boxes

    model = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"].float().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
            module.recompute_scale_factor = None
    image = Image.open(image_path).convert("RGB")
    stride = int(max(model.stride))
    canvas = letterbox(np.asarray(image), new_shape=image_size, stride=stride, auto=True)[0]
    tensor = torch.from_numpy(canvas / 255).permute(2, 0, 1).unsqueeze(0).float()
    with torch.no_grad():
        prediction = model(tensor, augment=False)[0]
    boxes = non_max_suppression(prediction, conf_thres=conf, iou_thres=iou)[0]
    boxes[:, :4] = scale_boxes(tensor.shape[2:], boxes[:, :4], (image.height, image.width))
    out = []
    for x1, y1, x2, y2, score, cls in boxes.tolist():
        out.append((int(cls), score, (x1 / image.width, y1 / image.height, (x2 - x1) / image.width, (y2 - y1) / image.height)))
    return out
