"""Fine-tuning the default detector's output layers on camera-trap frames (issue 13, direction 4).

YOLOv3-tiny's two detection heads end in a 1x1 convolution each (255 outputs per cell: 3 anchors x
[x, y, w, h, objectness, 80 COCO classes]). :func:`fine_tune_heads` trains those two convolutions
alone on labelled frames and keeps the rest of the network (the COCO features) frozen: the features
each frame gives them are computed once (and once more mirrored), so an epoch costs a few 1x1
convolutions per frame, seconds on a CPU. The loss is YOLOv3's: each box by eye is given to the
anchor of its shape at the cell of its centre (offsets through the sigmoid, sizes in log space,
weighted ``2 - area``); objectness is pushed up there and down everywhere else, except where a
prediction already overlaps a box (IoU > ``ignore_iou``); a person's class target is COCO's
``person``, an animal's the COCO animal class the original model ranks highest there (the manifest
names species COCO does not have; ``animal_score: sum`` pools them all anyway). An L2 pull towards
the COCO weights (``l2``) keeps what the heads knew. Seeded: the same frames and config give the
same weights.

``train_from`` (``FineTuneConfig``) trains more of the network: every convolution from that layer
on (13: the neck and both heads, 2.6 M weights), from the outputs of the layers before it that they
read (for YOLOv3-tiny layers 12 and 8), again computed once per frame; an epoch then costs the
neck's convolutions per frame, tens of seconds on this CPU for 800 frames.

The result is a state of the trained convolutions (:func:`save_heads` / :func:`load_heads` /
:func:`apply_heads`): the heads 0.8 MB, the neck and heads 10 MB, next to the 35 MB Darknet file.
``python -m bench.realdata_finetune`` trains on the realdata tune part (and on composites of it,
:mod:`gpu_ops.composites`) and scores against the COCO weights on both parts; measured there (README,
"Detection on real frames"): the heads alone (``default-camtrap``) box the same held-out frames as
COCO with fewer false boxes; the neck on 400 composites (``default-camtrap-neck``) boxes more of
them (0.39 -> 0.50) with more false boxes (precision 0.70 -> 0.56). Both ship as opt-in models
(:data:`gpu_ops.weights.FINE_TUNED`), neither as the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.ops import box_convert, box_iou

from gpu_ops.darknet import Darknet
from gpu_ops.detector import UInt8Input


@dataclass(frozen=True)
class Sample:
    """One training frame: RGB ``uint8`` HWC, its boxes (normalized x, y, w, h) and their kinds."""

    image: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    kinds: tuple[str, ...] = ()  # one per box: "animal" or "person"


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 10
    lr: float = 5e-4
    l2: float = 1.0  # pull towards the COCO weights (sum of squared differences)
    negative_weight: float = 4.0  # objectness loss of a cell with no box, next to 5 for a box (bench.realdata_finetune chooses it)
    ignore_iou: float = 0.5
    mirror: bool = True  # each frame mirrored as well
    seed: int = 0
    train_from: int | None = None  # None: the two head convolutions alone; k: every layer from k on (the neck)


@dataclass
class _Prepared:
    features: list[torch.Tensor]  # per head, (1, C, rows, cols)
    positives: list[tuple[int, int, int, int, torch.Tensor, float, int]] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4)))  # input pixels x1 y1 x2 y2


def head_layers(model: Darknet) -> list[int]:
    """Indices of the 1x1 convolutions that feed the ``yolo`` layers."""
    return [i - 1 for i, kind in enumerate(model.layer_kinds) if kind == "yolo"]


def trained_layers(model: Darknet, train_from: int | None) -> list[int]:
    """The convolutions a fine-tune trains: the heads, or every one from ``train_from`` on."""
    if train_from is None:
        return head_layers(model)
    if not 0 < train_from < len(model.layers):
        raise ValueError(f"train_from {train_from} is outside the model's {len(model.layers)} layers")
    return [i for i in range(train_from, len(model.layers)) if model.layer_kinds[i] == "convolutional"]


def _cached_layers(model: Darknet, train_from: int | None) -> list[int]:
    """The layers whose outputs a fine-tune computes once per frame: the heads' inputs, or what the
    layers from ``train_from`` on read from before it."""
    if train_from is None:
        return [i - 1 for i in head_layers(model)]
    return sorted({train_from - 1} | {i for i in model._keep if i < train_from})


def _features(model: Darknet, canvas: np.ndarray, train_from: int | None) -> list[torch.Tensor]:
    caught: dict[int, torch.Tensor] = {}
    wanted = _cached_layers(model, train_from)
    hooks = [model.layers[i].register_forward_hook(lambda _m, _args, out, i=i: caught.__setitem__(i, out.detach().clone()))
             for i in wanted]
    try:
        with torch.no_grad():
            UInt8Input(model)(torch.from_numpy(np.ascontiguousarray(canvas)).unsqueeze(0))  # as the detector feeds it
    finally:
        for hook in hooks:
            hook.remove()
    return [caught[i] for i in wanted]


def _head_outputs(model: Darknet, features: list[torch.Tensor], train_from: int | None) -> list[torch.Tensor]:
    """What each ``yolo`` layer reads (its head convolution's output), from the cached features."""
    if train_from is None:
        return [model.layers[i].conv(x) for i, x in zip(head_layers(model), features)]
    kept = dict(zip(_cached_layers(model, train_from), features))
    return model.head_inputs(kept[train_from - 1], train_from, kept)


def _raw(out: torch.Tensor, classes: int) -> torch.Tensor:
    """A head convolution's output as (anchors, rows, cols, 5 + classes) logits."""
    _, _, rows, cols = out.shape
    return out.view(-1, 5 + classes, rows, cols).permute(0, 2, 3, 1)


def _prepare(detector, sample: Sample, mirror: bool, person_id: int, animal_ids: list[int],
             train_from: int | None) -> _Prepared:
    model: Darknet = detector.model
    heads = head_layers(model)
    anchors = [model.layers[i + 1].anchors for i in heads]
    every = torch.cat(anchors)
    image = sample.image[:, ::-1] if mirror else sample.image
    canvas, box = detector.prepare(np.ascontiguousarray(image))
    prepared = _Prepared(_features(model, canvas, train_from))
    with torch.no_grad():
        outputs = _head_outputs(model, prepared.features, train_from)
    size = canvas.shape[0]
    pixels = []
    for (x, y, w, h), kind in zip(sample.boxes, sample.kinds):
        if w <= 0 or h <= 0:
            continue
        if mirror:
            x = 1.0 - x - w
        bw, bh = w * box.width * box.scale, h * box.height * box.scale
        cx, cy = (x + w / 2) * box.width * box.scale + box.pad_x, (y + h / 2) * box.height * box.scale + box.pad_y
        pixels.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        inter = torch.minimum(every[:, 0], torch.tensor(bw)) * torch.minimum(every[:, 1], torch.tensor(bh))
        k = int((inter / (bw * bh + every[:, 0] * every[:, 1] - inter)).argmax())
        head = next(h for h in range(len(anchors)) if k < sum(len(a) for a in anchors[:h + 1]))
        a = k - sum(len(a) for a in anchors[:head])
        rows, cols = outputs[head].shape[2:]
        stride = size / cols
        col, row = min(cols - 1, int(cx / stride)), min(rows - 1, int(cy / stride))
        target = torch.tensor([cx / stride - col, cy / stride - row,
                               float(np.log(bw / float(anchors[head][a, 0]))), float(np.log(bh / float(anchors[head][a, 1])))])
        logits = _raw(outputs[head], detector.model.num_classes)[a, row, col, 5:]
        label = person_id if kind == "person" else animal_ids[int(logits[animal_ids].argmax())]
        prepared.positives.append((head, a, row, col, target, 2.0 - bw * bh / size**2, label))
    if pixels:
        prepared.boxes = torch.tensor(pixels, dtype=torch.float32)
    return prepared


def _loss(detector, prepared: _Prepared, config: FineTuneConfig) -> torch.Tensor:
    model: Darknet = detector.model
    heads = head_layers(model)
    size = detector.image_size
    loss = torch.zeros(())
    for h, (index, out) in enumerate(zip(heads, _head_outputs(model, prepared.features, config.train_from))):
        raw = _raw(out, detector.model.num_classes)
        count, rows, cols = raw.shape[:3]
        objectness = torch.zeros((count, rows, cols))
        weight = torch.full((count, rows, cols), config.negative_weight)
        if len(prepared.boxes):
            with torch.no_grad():  # the head's own decode (its yolo layer), in input pixels
                decoded = model.layers[index + 1](out, (size, size))[0, :, :4]
                predicted = box_convert(decoded, "cxcywh", "xyxy")
                overlap = box_iou(predicted, prepared.boxes).max(1).values.view(count, rows, cols)
                weight[overlap > config.ignore_iou] = 0.0
        for head, a, row, col, target, scale, label in prepared.positives:
            if head != h:
                continue
            objectness[a, row, col], weight[a, row, col] = 1.0, 5.0
            cell = raw[a, row, col]
            loss = loss + scale * 2 * (F.binary_cross_entropy_with_logits(cell[0:2], target[0:2]) + F.mse_loss(cell[2:4], target[2:4]))
            classes = torch.zeros(detector.model.num_classes)
            classes[label] = 1.0
            loss = loss + 5 * F.binary_cross_entropy_with_logits(cell[5:], classes)
        loss = loss + (F.binary_cross_entropy_with_logits(raw[..., 4], objectness, reduction="none") * weight).sum() / 10
    return loss


def _parameters(model: Darknet, layers: list[int]) -> list[torch.nn.Parameter]:
    """What a fine-tune trains in ``layers``: each convolution's weights and bias. The detector's
    model has its batch norms folded into the convolutions (``load_darknet(fuse=True)``); in a model
    without, a batch norm's scale and shift train and its running statistics stay the COCO ones."""
    params = []
    for i in layers:
        block = model.layers[i]
        params.append(block.conv.weight)
        if block.conv.bias is not None:
            params.append(block.conv.bias)
        if hasattr(block, "bn"):
            params += [block.bn.weight, block.bn.bias]
    return params


def fine_tune_heads(detector, samples: list[Sample], config: FineTuneConfig = FineTuneConfig(), *,
                    progress=None) -> dict[str, torch.Tensor]:
    """Train ``detector``'s (a :class:`gpu_ops.detector_darknet.DarknetDetector`, torch backend) two
    head convolutions (or, with ``config.train_from``, every layer from there on) in place on
    ``samples`` and return their state (module doc). ``progress`` is called with (epoch, mean loss)
    after each epoch."""
    model: Darknet = detector.model
    model.eval()
    layers = trained_layers(model, config.train_from)
    labels = detector.labels
    person_id = next(i for i, name in labels.items() if name == "person")
    animal_ids = [i for i, c in detector.categories.items() if c == "animal"]
    torch.manual_seed(config.seed)
    prepared = [_prepare(detector, s, False, person_id, animal_ids, config.train_from) for s in samples]
    if config.mirror:
        prepared += [_prepare(detector, s, True, person_id, animal_ids, config.train_from) for s in samples]
    params = _parameters(model, layers)
    start = [p.detach().clone() for p in params]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    order = np.random.default_rng(config.seed)
    try:
        for epoch in range(config.epochs):
            total = 0.0
            for k in order.permutation(len(prepared)):
                pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))
                loss = _loss(detector, prepared[k], config) + config.l2 * pull
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            if progress is not None:
                progress(epoch, total / max(len(prepared), 1))
    finally:
        for p in params:
            p.requires_grad_(False)
    return heads_state(detector, config.train_from)


def _names(block) -> list[str]:
    """A layer's tensors in Darknet's file order, as state keys (``weight`` is the convolution's)."""
    if hasattr(block, "bn"):
        return ["bn.bias", "bn.weight", "bn.running_mean", "bn.running_var", "weight"]
    return ["bias", "weight"]


def _tensor(block, name: str) -> torch.Tensor:
    return getattr(block.bn, name[3:]) if name.startswith("bn.") else getattr(block.conv, name)


def heads_state(detector, train_from: int | None = None) -> dict[str, torch.Tensor]:
    """The trained layers' tensors, keyed ``"<layer>.<name>"`` (:func:`_names`)."""
    state = {}
    for i in trained_layers(detector.model, train_from):
        block = detector.model.layers[i]
        for name in _names(block):
            state[f"{i}.{name}"] = _tensor(block, name).detach().clone()
    return state


def apply_heads(detector, state: dict[str, torch.Tensor]) -> None:
    """Put a :func:`fine_tune_heads` state into ``detector`` (torch backend), checking its shapes."""
    layers = sorted({int(k.split(".")[0]) for k in state})
    for i in layers:
        if i >= len(detector.model.layers) or detector.model.layer_kinds[i] != "convolutional":
            raise ValueError(f"head state has layer {i}, not a convolution of this model: not made for this model")
        block = detector.model.layers[i]
        for name in _names(block):
            target = _tensor(block, name)
            value = state.get(f"{i}.{name}")
            if value is None or value.shape != target.shape:
                raise ValueError(f"head state has no {i}.{name} of shape {tuple(target.shape)}: not made for this model")
            with torch.no_grad():
                target.copy_(value)


def save_heads(state: dict[str, torch.Tensor], path: Path | str) -> Path:
    """Write a fine-tuned state as Darknet writes its convolutions: little-endian float32, layer by
    layer in order, each as Darknet's ``.weights`` holds it (batch norm's bias, scale, mean and
    variance then the weights; or the bias then the weights). No container metadata, so the same
    weights give the same bytes (and sha256) on every run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = sorted({int(k.split(".")[0]) for k in state})
    parts = []
    for i in layers:
        names = [n for n in ("bn.bias", "bn.weight", "bn.running_mean", "bn.running_var", "bias", "weight") if f"{i}.{n}" in state]
        parts += [state[f"{i}.{n}"].detach().cpu().numpy().astype("<f4").ravel() for n in names]
    path.write_bytes(np.concatenate(parts).tobytes())
    return path


def load_heads(path: Path | str, detector) -> dict[str, torch.Tensor]:
    """Read a :func:`save_heads` file for ``detector``'s model. Which layers it holds follows from its
    size: the two heads, or every convolution from some layer on."""
    data = np.frombuffer(Path(path).read_bytes(), dtype="<f4")
    model = detector.model
    size = lambda layers: sum(_tensor(model.layers[i], n).numel() for i in layers for n in _names(model.layers[i]))  # noqa: E731
    candidates = [head_layers(model)] + [trained_layers(model, k) for k in range(1, len(model.layers))]
    layers = next((c for c in candidates if c and size(c) == data.size), None)
    if layers is None:
        raise ValueError(f"{path} holds {data.size} floats, neither this model's heads ({size(head_layers(model))}) "
                         "nor its layers from any one on: not made for this model")
    state, offset = {}, 0
    for i in layers:
        for name in _names(model.layers[i]):
            shape = tuple(_tensor(model.layers[i], name).shape)
            count = int(np.prod(shape))
            state[f"{i}.{name}"] = torch.from_numpy(data[offset:offset + count].copy()).view(shape)
            offset += count
    return state
