"""Randomly initialised MegaDetector checkpoints in the published file formats, for the bench and the tests.

No weights can be downloaded here; a random model of the real architecture costs what the trained
one costs, and a file in the published format exercises the same loading path.

* YOLOv5 (v5a/v5b, v1000 redwood/spruce): a YOLOv5 training checkpoint, a dict whose ``model`` is the
  pickled fp16 ``DetectionModel``, its classes pickled under YOLOv5's repository layout
  (``models.yolo``, ``models.common``). ``save_megadetector_checkpoint`` writes the same: the yolov5
  package's classes, named as the repository names them while pickling.
* ultralytics (v1000 larch/sorrel, v6): an ultralytics checkpoint (``ultralytics.nn.tasks``
  classes), as ``YOLO.save`` writes it; ``build_ultralytics`` builds one from a packaged yaml.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

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

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None,
                  "updates": None, "optimizer": None, "wandb_id": None, "date": "2022-06-15"}
    with _repository_module_names():
        torch.save(checkpoint, path)
    return path


def build_ultralytics(cfg: str = "yolo11n.yaml", *, seed: int = 0, class_scale: float = 0.01, class_bias: float = -2.5):
    """A random ultralytics ``YOLO`` of MegaDetector's classes (v1000 larch is ``yolo11l.yaml``, sorrel
    ``yolo11s.yaml``). Batch-norm statistics are calibrated as in ``build_yolov5``; the class head's
    weights are scaled by ``class_scale`` and its bias set to ``class_bias``, so that scores sit near
    a test threshold and move with the image instead of saturating at 0 or 1; box offsets are a tenth
    as sensitive, so boxes are anchor-sized rather than spanning the frame."""
    from gpu_ops.detector_ultralytics import import_ultralytics

    ultralytics = import_ultralytics()
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    yolo = ultralytics.YOLO(cfg)  # an offline build from the packaged yaml; gives the default train args
    model = DetectionModel(cfg, nc=len(MD_NAMES), verbose=False)
    model.names = dict(MD_NAMES)
    model.args = yolo.model.args
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.nn.functional.interpolate(torch.rand(2, 3, 8, 10), size=(256, 320), mode="bilinear"))
    model.eval()
    detect = next(m for m in model.modules() if isinstance(m, Detect))
    with torch.no_grad():
        for branch in detect.cv3:
            branch[-1].weight *= class_scale
            branch[-1].bias.fill_(class_bias)
        for branch in detect.cv2:
            branch[-1].weight *= 0.1
    yolo.model = model
    return yolo


def save_ultralytics_checkpoint(yolo, path: Path) -> Path:
    """Save as the v1000 / v6 release files are: an ultralytics checkpoint (``YOLO.save``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(path)
    return path
