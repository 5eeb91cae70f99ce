"""A small PyTorch re-implementation of the Darknet layers YOLOv3(-tiny) uses.

Reading the ``.cfg``/``.weights`` pair ourselves keeps one model for every backend: the same module
runs in PyTorch, exports to ONNX and from there to TensorRT. Supported sections: ``net``,
``convolutional`` (with or without ``batch_normalize``; ``leaky``, ``linear`` or ``relu``),
``maxpool`` (including the size-2 stride-1 one of YOLOv3-tiny), ``route``, ``shortcut``,
``upsample`` and ``yolo``. Anything else is refused with the section's name.

``forward`` returns decoded predictions in network-input pixels, one row per anchor and cell:
``[cx, cy, w, h, objectness, class scores...]`` (all probabilities already through the sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class Section:
    kind: str
    options: dict[str, str]
    line: int

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.options:
            if default is None:
                raise ValueError(f"[{self.kind}] section at line {self.line} has no '{key}'")
            return default
        return int(self.options[key])

    def ints(self, key: str) -> list[int]:
        return [int(part) for part in self.options[key].split(",") if part.strip()]


def parse_cfg(path: Path | str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError(f"{path}:{number}: malformed section header {raw!r}")
            sections.append(Section(line[1:-1].strip(), {}, number))
        elif "=" in line:
            if not sections:
                raise ValueError(f"{path}:{number}: option outside any section")
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ValueError(f"{path}:{number}: cannot read {raw!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ValueError(f"{path}: a Darknet cfg starts with a [net] section")
    return sections


class MaxPoolSame(nn.Module):
    """Darknet's stride-1 max pool: the window hangs over the right/bottom edge and ignores it.

    Replicating the edge before pooling gives exactly that (a max over the valid pixels), and
    exports to ONNX as an ``edge`` pad.
    """

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, self.size - 1, 0, self.size - 1), mode="replicate")
        return F.max_pool2d(x, self.size, 1)


class YoloHead(nn.Module):
    def __init__(self, anchors: list[tuple[float, float]], num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        batch, _, rows, cols = x.shape
        count = self.anchors.shape[0]
        x = x.view(batch, count, 5 + self.num_classes, rows, cols).permute(0, 1, 3, 4, 2)
        stride_y = input_size[0] / rows
        stride_x = input_size[1] / cols
        ys, xs = torch.meshgrid(
            torch.arange(rows, device=x.device, dtype=x.dtype),
            torch.arange(cols, device=x.device, dtype=x.dtype),
            indexing="ij",
        )
        cx = (x[..., 0].sigmoid() + xs) * stride_x
        cy = (x[..., 1].sigmoid() + ys) * stride_y
        anchors = self.anchors.to(x.dtype).view(1, count, 1, 1, 2)
        w = x[..., 2].exp() * anchors[..., 0]
        h = x[..., 3].exp() * anchors[..., 1]
        rest = x[..., 4:].sigmoid()
        out = torch.cat([cx.unsqueeze(-1), cy.unsqueeze(-1), w.unsqueeze(-1), h.unsqueeze(-1), rest], dim=-1)
        return out.reshape(batch, -1, 5 + self.num_classes)


class Darknet(nn.Module):
    def __init__(self, cfg_path: Path | str):
        super().__init__()
        sections = parse_cfg(cfg_path)
        net = sections[0]
        self.cfg_size = (net.int("height", 416), net.int("width", 416))
        self.layer_kinds: list[str] = []
        self.layer_args: list[list[int]] = []
        self.layers = nn.ModuleList()
        self.conv_layers: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
        self.num_classes = 0
        input_channels = net.int("channels", 3)
        out_channels: list[int] = []  # channels each layer produces, for routes
        for index, section in enumerate(sections[1:]):
            kind = section.kind
            args: list[int] = []
            current = out_channels[-1] if out_channels else input_channels
            if kind == "convolutional":
                filters = section.int("filters")
                size = section.int("size")
                stride = section.int("stride", 1)
                padding = size // 2 if section.int("pad", 0) else section.int("padding", 0)
                use_bn = bool(section.int("batch_normalize", 0))
                block = nn.Sequential()
                conv = nn.Conv2d(current, filters, size, stride, padding, bias=not use_bn)
                block.add_module("conv", conv)
                bn = None
                if use_bn:
                    bn = nn.BatchNorm2d(filters, momentum=0.01, eps=1e-5)
                    block.add_module("bn", bn)
                activation = section.options.get("activation", "linear")
                if activation == "leaky":
                    block.add_module("act", nn.LeakyReLU(0.1, inplace=True))
                elif activation == "relu":
                    block.add_module("act", nn.ReLU(inplace=True))
                elif activation != "linear":
                    raise ValueError(f"[convolutional] at line {section.line}: activation {activation!r} is not supported")
                self.conv_layers.append((conv, bn))
                module: nn.Module = block
                produced = filters
            elif kind == "maxpool":
                size = section.int("size")
                stride = section.int("stride", size)
                module = MaxPoolSame(size) if stride == 1 else nn.MaxPool2d(size, stride)
                produced = current
            elif kind == "upsample":
                module = nn.Upsample(scale_factor=section.int("stride", 2), mode="nearest")
                produced = current
            elif kind == "route":
                args = [layer if layer >= 0 else index + layer for layer in section.ints("layers")]
                module = nn.Identity()
                produced = sum(out_channels[layer] for layer in args)
            elif kind == "shortcut":
                args = [index + section.int("from") if section.int("from") < 0 else section.int("from")]
                if section.options.get("activation", "linear") != "linear":
                    raise ValueError(f"[shortcut] at line {section.line}: only linear activation is supported")
                module = nn.Identity()
                produced = current
            elif kind == "yolo":
                every = section.ints("anchors")
                pairs = [(float(every[i]), float(every[i + 1])) for i in range(0, len(every), 2)]
                mask = section.ints("mask") if "mask" in section.options else list(range(len(pairs)))
                self.num_classes = section.int("classes")
                module = YoloHead([pairs[i] for i in mask], self.num_classes)
                produced = current
            else:
                raise ValueError(f"Darknet section [{kind}] at line {section.line} is not supported")
            self.layers.append(module)
            self.layer_kinds.append(kind)
            self.layer_args.append(args)
            out_channels.append(produced)
        if not self.num_classes:
            raise ValueError(f"{cfg_path}: no [yolo] section, so this is not a detector")
        # Only outputs that a later route/shortcut reads need to be kept during forward.
        self._keep = {layer for args in self.layer_args for layer in args}

    def load_darknet_weights(self, path: Path | str) -> None:
        """Read Darknet's ``.weights``: a header, then per conv layer, in cfg order, either
        (bn bias, bn weight, running mean, running var, conv weights) or (conv bias, conv weights)."""
        with open(path, "rb") as handle:
            major, minor, _revision = np.fromfile(handle, dtype=np.int32, count=3)
            # Newer files store the "images seen" counter as int64.
            seen_dtype = np.int64 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else np.int32
            np.fromfile(handle, dtype=seen_dtype, count=1)
            data = np.fromfile(handle, dtype=np.float32)
        offset = 0

        def take(tensor: torch.Tensor) -> None:
            nonlocal offset
            count = tensor.numel()
            if offset + count > data.size:
                raise ValueError(f"{path} is too short for this cfg (needs more than {data.size} floats)")
            tensor.data.copy_(torch.from_numpy(data[offset : offset + count]).view_as(tensor))
            offset += count

        for conv, bn in self.conv_layers:
            if bn is not None:
                take(bn.bias)
                take(bn.weight)
                take(bn.running_mean)
                take(bn.running_var)
            else:
                take(conv.bias)
            take(conv.weight)
        if offset != data.size:
            raise ValueError(f"{path} holds {data.size - offset} floats more than the cfg uses: wrong cfg for these weights?")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_size = (x.shape[2], x.shape[3])
        yolo = [i for i, kind in enumerate(self.layer_kinds) if kind == "yolo"]
        return torch.cat([self.layers[i](raw, input_size) for i, raw in zip(yolo, self.head_inputs(x))], dim=1)

    def head_inputs(self, x: torch.Tensor, start: int = 0, kept: dict[int, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """What each ``yolo`` layer reads, running the layers from ``start`` on: ``x`` is the output
        of layer ``start - 1`` (the network's input for 0) and ``kept`` the earlier layers' outputs
        that later ones route to or add (gpu_ops.finetune starts at the neck from cached features)."""
        kept = dict(kept or {})
        inputs = []
        for index in range(start, len(self.layers)):
            kind, args = self.layer_kinds[index], self.layer_args[index]
            if kind == "route":
                x = kept[args[0]] if len(args) == 1 else torch.cat([kept[layer] for layer in args], dim=1)
            elif kind == "shortcut":
                x = x + kept[args[0]]
            elif kind == "yolo":
                inputs.append(x)
            else:
                x = self.layers[index](x)
            if index in self._keep:
                kept[index] = x
        return inputs


    @torch.no_grad()
    def fuse_batch_norm(self) -> "Darknet":
        """Fold each batch norm into its convolution (inference only): one op instead of two,
        about 15% of the CPU time, and a smaller ONNX graph."""
        for block in self.layers:
            if not isinstance(block, nn.Sequential) or not hasattr(block, "bn"):
                continue
            conv, bn = block.conv, block.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            fused.bias.copy_(bn.bias - bn.running_mean * scale)
            block.conv = fused
            del block.bn
        self.conv_layers = []  # the Darknet weight layout no longer applies
        return self


def load_darknet(cfg_path: Path | str, weights_path: Path | str, *, fuse: bool = True) -> Darknet:
    model = Darknet(cfg_path)
    model.load_darknet_weights(weights_path)
    model.eval()
    return model.fuse_batch_norm() if fuse else model
