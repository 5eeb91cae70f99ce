"""MegaDetector's own inference, the reference the engine's boxes are compared with, and the comparison.

The random checkpoints it runs on are built by ``bench.random_checkpoints`` (the bench uses them too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.random_checkpoints import MD_NAMES
from gpu_ops.boxes import iou


def reference_detections(checkpoint: Path, image_path: Path, *, image_size: int = 1280, conf: float = 0.1,
                         iou: float = 0.45) -> list[tuple[int, float, tuple[float, float, float, float]]]:
    """MegaDetector's inference as its PTDetector runs it: the checkpoint's model in fp32 with each
    Conv's batch norm fused into it (``.float().fuse().eval()``), YOLOv5's letterbox (auto, stride of
    the model) + model + non_max_suppression + scale_boxes. Returns ``(class, conf, normalized x, y,
    w, h)`` per box.

    The fusion is done here, per module, with YOLOv5's own ``fuse_conv_and_bn`` and ``forward_fuse``:
    the pickle's classes come from the top-level ``models`` package the yolov5 wheel puts on
    sys.path, while ``Model.fuse`` tests ``isinstance`` against ``yolov5.models.common.Conv``, so it
    silently fuses nothing.

    The model runs in channels_last memory, as the engine's torch backend runs it on the CPU. The
    fused and unfused model, and NCHW and channels_last memory, are the same function, but oneDNN
    sums in another order for each, and a random YOLOv5x6 amplifies that: on the 12 MP test photo at
    1280 their scores differ by up to 0.013 and their boxes by 3.8 pixels, enough for NMS to keep
    another of two near-equal boxes (it did on one CI machine and not on the ones before it). Run
    like this, the reference and the engine give the same predictions to the last bit, so what the
    comparison tests is the engine's own part: decode, letterbox, batching by canvas shape, NMS and
    the scaling back."""
    import yolov5.models.yolo  # noqa: F401 - puts the package folder on sys.path, so 'models.yolo' unpickles
    from yolov5.utils.augmentations import letterbox
    from yolov5.utils.general import non_max_suppression, scale_boxes
    from yolov5.utils.torch_utils import fuse_conv_and_bn

    model = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"].float().eval()
    for module in model.modules():
        if type(module).__name__ in ("Conv", "DWConv") and hasattr(module, "bn"):
            module.conv = fuse_conv_and_bn(module.conv, module.bn)
            delattr(module, "bn")
            module.forward = module.forward_fuse
        if isinstance(module, torch.nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
            module.recompute_scale_factor = None
    image = Image.open(image_path).convert("RGB")
    stride = int(max(model.stride))
    canvas = letterbox(np.asarray(image), new_shape=image_size, stride=stride, auto=True)[0]
    tensor = torch.from_numpy(canvas / 255).permute(2, 0, 1).unsqueeze(0).float()
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        prediction = model(tensor.contiguous(memory_format=torch.channels_last), augment=False)[0]
    boxes = non_max_suppression(prediction, conf_thres=conf, iou_thres=iou)[0]
    boxes[:, :4] = scale_boxes(tensor.shape[2:], boxes[:, :4], (image.height, image.width))
    out = []
    for x1, y1, x2, y2, score, cls in boxes.tolist():
        out.append((int(cls), score, (x1 / image.width, y1 / image.height, (x2 - x1) / image.width, (y2 - y1) / image.height)))
    return out


def assert_boxes_match(found, reference, *, min_boxes: int, conf: float) -> int:
    """Every box above ``conf`` (+ the tolerance, so a score right at it may fall either side) has a
    partner of the same class at IoU >= 0.9 and conf within 0.02, both ways; returns how many were
    compared, at least ``min_boxes``. ``found``: detections (``.label``, ``.conf``, ``.bbox``) or such
    rows as dicts; ``reference``: ``(class id, conf, bbox)`` as ``reference_detections`` returns. Boxes
    of no size (under a pixel, clipped to an edge) are left out: Stage 1 drops them."""
    compared = 0
    ours = [(d["label"], d["conf"], d["bbox"]) if isinstance(d, dict) else (d.label, d.conf, d.bbox) for d in found]
    theirs = [(MD_NAMES[c], score, box) for c, score, box in reference]
    for first, second in ((theirs, ours), (ours, theirs)):
        for label, score, box in first:
            if score < conf + 0.02 or min(box[2], box[3]) < 1e-3:
                continue
            partners = [(iou(box, other), other_conf) for other_label, other_conf, other in second if other_label == label]
            best = max(partners, default=(0.0, 0.0))
            assert best[0] >= 0.9 and abs(best[1] - score) <= 0.02, (label, score, box, best)
            compared += 1
    assert compared >= min_boxes, f"only {compared} boxes above {conf} to compare"
    return compared
