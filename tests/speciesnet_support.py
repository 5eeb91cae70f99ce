"""A SpeciesNet model folder in the released layout, with a random classifier whose outputs a test sets.

The folder holds what a Kaggle release holds: ``info.json`` (its detector named by URL, as released),
the classifier as a whole pickled torch module (``torch.load(weights_only=False)``, NHWC input in
[0, 1] as SpeciesNet feeds it), its labels file, a taxonomy and a geofence. The classifier is the
channel means of the crop through one linear layer, so a crop of one pure colour (red, green, blue,
or black) scores exactly the distribution the test wrote for that colour. Built only from torch and
torchvision classes, so any process (the Stage 2 subprocess too) can unpickle it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# uuid;class;order;family;genus;species;common name, as SpeciesNet spells its labels.
LABELS = {
    "blank": "f1856211-cfb7-4a5b-9158-c0f72fd09ee6;;;;;;blank",
    "animal": "1f689929-883d-4dae-958c-3d57ab5b6c16;;;;;;animal",
    "human": "990ae9dd-7a59-4344-afcb-1b7b21368000;mammalia;primates;hominidae;homo;sapiens;human",
    "vehicle": "e2895ed5-780b-48f6-8a11-9e27cb594511;;;;;;vehicle",
    "lion": "ddf59264-185a-4d35-b647-2785792bdf54;mammalia;carnivora;felidae;panthera;leo;lion",
    "leopard": "3a2f1e4b-8c6d-4f5e-9a7b-0c1d2e3f4a5b;mammalia;carnivora;felidae;panthera;pardus;leopard",
    "wildcat": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e;mammalia;carnivora;felidae;felis;silvestris;wildcat",
    "red fox": "6c7d8e9f-0a1b-4c2d-9e3f-4a5b6c7d8e9f;mammalia;carnivora;canidae;vulpes;vulpes;red fox",
    "moose": "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a;mammalia;cetartiodactyla;cervidae;alces;alces;moose",
}
# Higher taxa: in the taxonomy (rollup targets), not classifier outputs.
ANCESTORS = {
    "panthera": "8e9f0a1b-2c3d-4e4f-9a5b-6c7d8e9f0a1b;mammalia;carnivora;felidae;panthera;;panthera species",
    "felis": "9f0a1b2c-3d4e-4f5a-8b6c-7d8e9f0a1b2c;mammalia;carnivora;felidae;felis;;felis species",
    "felidae": "0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d;mammalia;carnivora;felidae;;;cat family",
    "canidae": "1b2c3d4e-5f6a-4b7c-8d8e-9f0a1b2c3d4e;mammalia;carnivora;canidae;;;dog family",
    "vulpes": "2c3d4e5f-6a7b-4c8d-9e9f-0a1b2c3d4e5f;mammalia;carnivora;canidae;vulpes;;vulpes species",
    "carnivora": "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a;mammalia;carnivora;;;;carnivorous mammal",
    "mammalia": "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b;mammalia;;;;;mammal",
}
# Lions only in Kenya and Tanzania; red foxes anywhere but Australia's Tasmania (TAS is not 2 letters,
# so the test region is "TA").
GEOFENCE = {
    "mammalia;carnivora;felidae;panthera;leo": {"allow": {"KEN": [], "TZA": []}},
    "mammalia;carnivora;canidae;vulpes;vulpes": {"block": {"AUS": ["TA"]}},
}
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "black": (0, 0, 0)}
CLASSES = list(LABELS)
VERSION = "4.0.1a-random"
# Released info.json names MegaDetector by URL; a closed loopback port makes any fetch fail at once.
DETECTOR_URL = "http://127.0.0.1:9/md_v5a.0.0.pt"


def _logits(probs: dict[str, float]) -> list[float]:
    rest = [c for c in CLASSES if c not in probs]
    left = 1.0 - sum(probs.values())
    full = {**{c: left / len(rest) for c in rest}, **probs}
    return [math.log(full[c]) for c in CLASSES]


def write_model_folder(folder: Path, outputs: dict[str, dict[str, float]]) -> Path:
    """A model folder whose classifier scores a crop of colour ``c`` as ``outputs[c]`` (class -> probability;
    what is left is spread evenly over the other classes). ``outputs`` keys: red, green, blue, black."""
    import torch
    from torch import nn
    from torchvision.ops import Permute

    folder.mkdir(parents=True, exist_ok=True)
    linear = nn.Linear(3, len(CLASSES))
    uniform = {}
    with torch.no_grad():
        bias = torch.tensor(_logits(outputs.get("black", uniform)))
        linear.bias.copy_(bias)
        for channel, colour in enumerate(("red", "green", "blue")):
            linear.weight[:, channel] = torch.tensor(_logits(outputs.get(colour, uniform))) - bias
    model = nn.Sequential(Permute([0, 3, 1, 2]), nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()
    torch.save(model, folder / "always_crop_random.pt")
    (folder / "always_crop_random.labels.txt").write_text("".join(f"{LABELS[c]}\n" for c in CLASSES))
    (folder / "taxonomy_release.txt").write_text("".join(f"{label}\n" for label in [*LABELS.values(), *ANCESTORS.values()]))
    (folder / "geofence_release.json").write_text(json.dumps(GEOFENCE))
    (folder / "info.json").write_text(json.dumps({
        "version": VERSION,
        "type": "always_crop",
        "classifier": "always_crop_random.pt",
        "classifier_labels": "always_crop_random.labels.txt",
        "detector": DETECTOR_URL,
        "taxonomy": "taxonomy_release.txt",
        "geofence": "geofence_release.json",
    }))
    return folder


def crop(colour: str, size: tuple[int, int] = (60, 80)) -> np.ndarray:
    return np.full((size[0], size[1], 3), COLOURS[colour], np.uint8)
