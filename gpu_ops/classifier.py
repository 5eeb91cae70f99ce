"""Stage 2 classifiers: from a detection (and its crop) to a species label with taxonomy.

Three kinds, chosen by ``pipeline.stage2.classifier`` in the profile:

- ``coco-taxonomy`` (the offline default): maps the detector's own COCO label to a taxon. It needs
  no model and no pixels; its score is the detector's confidence. ``dog`` becomes *Canis familiaris*,
  ``bird`` only the class *Aves* (COCO does not tell birds apart).
- a path to an ultralytics classification model (``*-cls.pt`` or its ONNX export).
- ``torchscript:/path/model.pt`` with ``labels: /path/labels.txt``: one label a line, either a
  common name or ``common name;scientific name;rank;class``.
- ``speciesnet``, a SpeciesNet release name or model folder: SpeciesNet's classifier and ensemble
  (:mod:`gpu_ops.classifier_speciesnet`, imported only when chosen).

:func:`gpu_ops.classifier_loader.load_classifier` picks one from the profile's value.

A classifier's ``categories`` are the Stage 1 categories it is given: the species models above see
animals only, people and vehicles map to *Homo sapiens* and ``vehicle``; SpeciesNet's ensemble sees
all three, as it decides human and vehicle itself from the detection and the classifier.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Taxon:
    species: str  # common name
    scientific_name: str | None
    taxon_rank: str | None
    taxon_class: str | None


# COCO's animal classes and MegaDetector's coarse classes, to the most precise taxon they imply.
COCO_TAXONOMY = {
    "bird": Taxon("bird", "Aves", "class", "Aves"),
    "cat": Taxon("domestic cat", "Felis catus", "species", "Mammalia"),
    "dog": Taxon("domestic dog", "Canis familiaris", "species", "Mammalia"),
    "horse": Taxon("horse", "Equus caballus", "species", "Mammalia"),
    "sheep": Taxon("domestic sheep", "Ovis aries", "species", "Mammalia"),
    "cow": Taxon("cattle", "Bos taurus", "species", "Mammalia"),
    "elephant": Taxon("elephant", "Elephantidae", "family", "Mammalia"),
    "bear": Taxon("bear", "Ursidae", "family", "Mammalia"),
    "zebra": Taxon("zebra", "Equus (Hippotigris)", "subgenus", "Mammalia"),
    "giraffe": Taxon("giraffe", "Giraffa", "genus", "Mammalia"),
    "animal": Taxon("animal", "Animalia", "kingdom", None),
    # A box only the burst's motion found: an animal nobody has named yet.
    "motion": Taxon("animal", "Animalia", "kingdom", None),
    "person": Taxon("human", "Homo sapiens", "species", "Mammalia"),
    "vehicle": Taxon("vehicle", None, None, None),
}

VEHICLE = COCO_TAXONOMY["vehicle"]
HUMAN = COCO_TAXONOMY["person"]


def taxon_for_label(label: str, category: str) -> Taxon:
    if category == "person":
        return HUMAN
    if category == "vehicle":
        return VEHICLE
    return COCO_TAXONOMY.get(label.lower(), Taxon(label, None, None, None))


def taxon_columns(taxon: Taxon) -> dict:
    return {"species": taxon.species, "scientific_name": taxon.scientific_name, "taxon_rank": taxon.taxon_rank,
            "taxon_class": taxon.taxon_class}


class Classifier(abc.ABC):
    name: str = "classifier"
    needs_images: bool = True
    categories: tuple[str, ...] = ("animal",)  # the Stage 1 categories this model classifies
    needs_boxes: bool = False  # rows carry ``box`` (the detection inside its crop) and the geography

    @abc.abstractmethod
    def classify(self, detections: list[dict], crops: list[np.ndarray | None]) -> list[tuple[Taxon, float]]:
        """A taxon and a score for each detection (and its crop, when ``needs_images``)."""

    def label_rows(self, detections: list[dict], crops: list[np.ndarray | None]) -> list[dict]:
        """The Stage 2 result columns of each detection; a classifier that knows more adds columns."""
        return [{**taxon_columns(t), "score": s, "classification_source": self.name} for t, s in self.classify(detections, crops)]


class CocoTaxonomyClassifier(Classifier):
    name = "coco-taxonomy-map"
    needs_images = False

    def classify(self, detections, crops):
        return [(taxon_for_label(d["label"], d["category"]), float(d["conf"])) for d in detections]


def _parse_labels(path: Path) -> list[Taxon]:
    taxa = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        parts = [p.strip() or None for p in line.split(";")]
        parts += [None] * (4 - len(parts))
        known = COCO_TAXONOMY.get(parts[0].lower()) if parts[1] is None else None
        taxa.append(known or Taxon(parts[0], parts[1], parts[2], parts[3]))
    return taxa


class UltralyticsClassifier(Classifier):
    def __init__(self, path: str, image_size: int, device: str):
        from gpu_ops.detector_ultralytics import import_ultralytics

        self.model = import_ultralytics().YOLO(path, task="classify")
        self.image_size = image_size
        self.device = device
        self.name = f"ultralytics:{Path(path).name}"
        names = self.model.names
        self.taxa = {i: COCO_TAXONOMY.get(str(n).lower(), Taxon(str(n), None, None, None)) for i, n in names.items()}

    def classify(self, detections, crops):
        results = self.model.predict(
            [c for c in crops], imgsz=self.image_size, device=self.device, verbose=False
        )
        return [(self.taxa[int(r.probs.top1)], float(r.probs.top1conf)) for r in results]


class TorchScriptClassifier(Classifier):
    """A TorchScript image classifier: RGB crops resized to a square, ImageNet-normalized."""

    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, path: str, labels: str | None, image_size: int, device: str):
        import torch

        if not labels:
            raise ValueError(
                f"TorchScript classifier {path} needs a labels file: set pipeline.stage2.labels in the profile"
            )
        self.torch = torch
        self.device = device
        self.model = torch.jit.load(path, map_location=device).eval()
        self.taxa = _parse_labels(Path(labels))
        self.image_size = image_size
        self.name = f"torchscript:{Path(path).name}"

    def _tensor(self, crops):
        from PIL import Image

        batch = []
        for crop in crops:
            img = Image.fromarray(crop).resize((self.image_size, self.image_size), Image.BILINEAR)
            arr = (np.asarray(img, dtype=np.float32) / 255.0 - self.MEAN) / self.STD
            batch.append(arr.transpose(2, 0, 1))
        return self.torch.from_numpy(np.stack(batch)).to(self.device)

    def classify(self, detections, crops):
        with self.torch.inference_mode():
            logits = self.model(self._tensor(crops))
            probs = self.torch.softmax(logits.float(), dim=1).cpu().numpy()
        if probs.shape[1] != len(self.taxa):
            raise ValueError(
                f"{self.name} outputs {probs.shape[1]} classes but the labels file has {len(self.taxa)} lines"
            )
        top = probs.argmax(axis=1)
        return [(self.taxa[i], float(probs[row, i])) for row, i in enumerate(top)]
