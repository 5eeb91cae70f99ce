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

# Class, order, family, genus, species of the taxa above, as SpeciesNet spells them: the lineage
# Timelapse searches (a search for "canidae" finds the dogs) and the MegaDetector export describes.
HIGHER_TAXA = {
    "Aves": "aves;;;;",
    "Felis catus": "mammalia;carnivora;felidae;felis;catus",
    "Canis familiaris": "mammalia;carnivora;canidae;canis;familiaris",
    "Equus caballus": "mammalia;perissodactyla;equidae;equus;caballus",
    "Ovis aries": "mammalia;cetartiodactyla;bovidae;ovis;aries",
    "Bos taurus": "mammalia;cetartiodactyla;bovidae;bos;taurus",
    "Elephantidae": "mammalia;proboscidea;elephantidae;;",
    "Ursidae": "mammalia;carnivora;ursidae;;",
    "Equus (Hippotigris)": "mammalia;perissodactyla;equidae;equus;",
    "Giraffa": "mammalia;cetartiodactyla;giraffidae;giraffa;",
    "Animalia": ";;;;",
    "Homo sapiens": "mammalia;primates;hominidae;homo;sapiens",
}
TOP_CLASSES = 5  # a classifier's best classes kept per detection (SpeciesNet's ensemble weighs five)


def lineage(taxon: Taxon) -> str:
    """SpeciesNet's label layout ``uuid;class;order;family;genus;species;common name`` for any taxon.

    The uuid is SpeciesNet's own and stays empty here; ranks the taxon does not name are empty.
    """
    path = HIGHER_TAXA.get(taxon.scientific_name or "")
    if path is None:
        ranks = dict.fromkeys(("class", "order", "family", "genus", "species"), "")
        ranks["class"] = (taxon.taxon_class or "").lower()
        words = (taxon.scientific_name or "").lower().split()
        if taxon.taxon_rank == "species" and len(words) == 2:
            ranks["genus"], ranks["species"] = words
        elif taxon.taxon_rank in ranks and taxon.taxon_rank != "species" and words:
            ranks[taxon.taxon_rank] = words[0]
        path = ";".join(ranks.values())
    return f";{path};{taxon.species.lower()}"


def taxon_of_lineage(label: str) -> Taxon:
    """The taxon a lineage string (the layout of :func:`lineage`) names: its lowest rank filled in."""
    parts = label.split(";")
    if len(parts) != 7:
        return Taxon(label, None, None, None)
    _, klass, order, family, genus, species, common = parts
    ranks = (("species", f"{genus.capitalize()} {species}" if species else ""), ("genus", genus.capitalize()),
             ("family", family.capitalize()), ("order", order.capitalize()), ("class", klass.capitalize()))
    rank, name = next(((r, n) for r, n in ranks if n), (None, None))
    return Taxon(common or name or label, name, rank, klass.capitalize() or None)


def top_classifications(classes: list[tuple[Taxon, float]], lineages: list[str] | None = None) -> list[dict] | None:
    """The ``top_classifications`` column of one detection from its best classes, best first.

    ``lineages``: the classifier's own lineage strings (SpeciesNet's labels, with its uuids), else built.
    """
    if len(classes) < 2:
        return None
    own = lineages or [lineage(t) for t, _ in classes]
    return [{"species": t.species, "lineage": line, "score": float(s)} for (t, s), line in zip(classes[:TOP_CLASSES], own)]


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

    def ranked(self, detections: list[dict], crops: list[np.ndarray | None]) -> list[list[tuple[Taxon, float]]]:
        """Each detection's best classes, best first; a classifier that names one class gives that one."""
        return [[c] for c in self.classify(detections, crops)]

    def label_rows(self, detections: list[dict], crops: list[np.ndarray | None]) -> list[dict]:
        """The Stage 2 result columns of each detection; a classifier that knows more adds columns."""
        return [{**taxon_columns(classes[0][0]), "score": classes[0][1], "classification_source": self.name,
                 "top_classifications": top_classifications(classes)} for classes in self.ranked(detections, crops)]


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
        return [classes[0] for classes in self.ranked(detections, crops)]

    def ranked(self, detections, crops):
        results = self.model.predict(
            [c for c in crops], imgsz=self.image_size, device=self.device, verbose=False
        )
        return [[(self.taxa[int(i)], float(c)) for i, c in zip(r.probs.top5, r.probs.top5conf)][:TOP_CLASSES]
                for r in results]


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
        return [classes[0] for classes in self.ranked(detections, crops)]

    def ranked(self, detections, crops):
        with self.torch.inference_mode():
            logits = self.model(self._tensor(crops))
            probs = self.torch.softmax(logits.float(), dim=1).cpu().numpy()
        if probs.shape[1] != len(self.taxa):
            raise ValueError(
                f"{self.name} outputs {probs.shape[1]} classes but the labels file has {len(self.taxa)} lines"
            )
        best = np.argsort(-probs, axis=1, kind="stable")[:, :TOP_CLASSES]
        return [[(self.taxa[i], float(probs[row, i])) for i in order] for row, order in enumerate(best)]
