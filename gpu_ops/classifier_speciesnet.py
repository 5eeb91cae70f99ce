"""SpeciesNet at Stage 2: Google's camera-trap classifier and its ensemble, on our Stage 1 detections.

``pipeline.stage2.classifier: speciesnet`` (the ``speciesnet`` package's default release), a release
name from :data:`gpu_ops.model_registry.KNOWN_MODELS` (``speciesnet-v4.0.1a``) or the path of a
SpeciesNet model folder as released (``info.json``, the classifier ``.pt``, its labels, the taxonomy
and the geofence) runs every crop through the package's own ``SpeciesNetClassifier`` (preprocessing
and inference) and ``SpeciesNetEnsemble`` (the blank / human / vehicle / species decision, geofence
and rollup). Nothing of the ensemble is reimplemented here: this module only translates our tables
into its inputs and its output into ``species_labels`` columns.

Decisions:

- The detector side of the ensemble is our Stage 1: each crop is one pseudo-image holding one
  MegaDetector-style detection (category, confidence, box), so every detection is classified and
  ensembled on its own, not only the first of a frame. People and vehicles go through the ensemble
  too, as in SpeciesNet: a confident Stage 1 person is ``human`` from the detector; a mid-confidence
  one may be confirmed (or, where the classifier is sure it is an animal, named) by the classifier.
- The classifier sees the detection's own box, cut out of our padded crop, which is what SpeciesNet
  itself crops from the full image (its classifiers are trained on tight boxes).
- Only ``always_crop`` releases (the ``a`` versions) are accepted: the ``full_image`` ones classify
  a whole frame, which our crops are not.
- A released ``info.json`` names the MegaDetector weights by URL, and the package downloads them on
  load. Stage 1 is our detector, so a folder whose detector file is absent is loaded through a
  private ``info.json`` whose paths point into it, and nothing is fetched.
- SpeciesNet's ``no cv result`` is written as species ``unknown``.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np

from gpu_ops.classifier import Classifier, Taxon, taxon_columns, taxon_of_lineage, top_classifications

DEFAULT_RELEASE = "speciesnet-v4.0.3a"  # the speciesnet package's own DEFAULT_MODEL
# MegaDetector categories as the ensemble's detector side names them ("1"/"2"/"3" in its output).
DETECTOR_LABELS = {"animal": ("1", "animal"), "person": ("2", "human"), "vehicle": ("3", "vehicle")}
_COUNTRY = re.compile(r"[A-Z]{3}")
_REGION = re.compile(r"[A-Z0-9]{2}")


def check_geography(country: str | None, admin1_region: str | None, where: str) -> tuple[str | None, str | None]:
    """Country (ISO 3166-1 alpha-3) and admin-1 region (two characters, e.g. ``CA``) as the geofence
    reads them, upper-cased; a clear error for anything it would reject mid-run."""
    country = (country or "").strip().upper() or None
    region = (admin1_region or "").strip().upper() or None
    if country is not None and not _COUNTRY.fullmatch(country):
        raise ValueError(f"{where}: country {country!r} is not an ISO 3166-1 alpha-3 code: use e.g. NOR, KEN, USA")
    if region is not None and not _REGION.fullmatch(region):
        raise ValueError(f"{where}: admin1_region {region!r} is not a two-character region code: use e.g. CA for California")
    if region is not None and country is None:
        raise ValueError(f"{where}: admin1_region {region!r} needs a country as well")
    return country, region


def is_speciesnet(spec: str) -> bool:
    """Whether a ``pipeline.stage2.classifier`` value names SpeciesNet (bare, by release, or by folder)."""
    from gpu_ops.model_registry import KNOWN_MODELS

    release = KNOWN_MODELS.get(spec)
    return spec == "speciesnet" or (release is not None and release.format == "speciesnet") or (Path(spec) / "info.json").is_file()


def taxon_of(label: str) -> Taxon:
    """Our taxon for a SpeciesNet label ``uuid;class;order;family;genus;species;common name``."""
    from speciesnet.constants import Classification

    if label == Classification.ANIMAL:
        return Taxon("animal", "Animalia", "kingdom", None)
    if label == Classification.UNKNOWN:
        return Taxon("unknown", None, None, None)
    return taxon_of_lineage(label)


def _loadable_folder(folder: Path) -> Path:
    """The folder to hand the package: itself, or a private info.json when its detector would be fetched."""
    info_path = folder / "info.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder} is not a SpeciesNet model folder (no info.json): fix pipeline.stage2.classifier")
    info = json.loads(info_path.read_text())
    missing = [key for key in ("version", "type", "classifier", "classifier_labels", "taxonomy", "geofence") if key not in info]
    if missing:
        raise ValueError(f"{info_path} lacks {', '.join(missing)}: is this a SpeciesNet release folder?")
    for key in ("classifier", "classifier_labels", "taxonomy", "geofence"):
        if not (folder / info[key]).is_file():
            raise FileNotFoundError(f"{folder / info[key]} ({key} in info.json) is missing: the model folder is incomplete")
    detector = str(info.get("detector", ""))
    if not detector.startswith(("http://", "https://")):
        return folder
    # Absolute paths survive the package's `base_dir / name` join, so only info.json is new.
    private = Path(tempfile.mkdtemp(prefix="speciesnet-"))
    info = {**info, **{k: str((folder / info[k]).resolve()) for k in ("classifier", "classifier_labels", "taxonomy", "geofence")},
            "detector": str(private / "unused-stage1-is-the-detector.pt")}
    (private / "info.json").write_text(json.dumps(info))
    return private


class SpeciesNetClassifier(Classifier):
    """Every crop through SpeciesNet's classifier and ensemble; rows carry ``box`` (the detection's box
    inside the crop, normalized) and ``country`` / ``admin1_region``."""

    categories = ("animal", "person", "vehicle")
    needs_boxes = True

    def __init__(self, folder: str | Path, *, device: str, geofence: bool = True):
        from speciesnet.classifier import SpeciesNetClassifier as PackageClassifier
        from speciesnet.ensemble import SpeciesNetEnsemble

        loadable = str(_loadable_folder(Path(folder)))
        self.model = PackageClassifier(loadable, device=device)
        if self.model.model_info.type_ != "always_crop":
            raise ValueError(
                f"{folder} is a {self.model.model_info.type_!r} SpeciesNet model, which classifies whole frames: "
                "Stage 2 classifies crops, use an always_crop release (e.g. speciesnet-v4.0.1a)"
            )
        self.ensemble = SpeciesNetEnsemble(loadable, geofence=geofence)
        self.name = f"speciesnet:{self.model.model_info.version}"

    def classify(self, detections, crops):
        return [(row["taxon"], row["score"]) for row in self._predict(detections, crops)]

    def label_rows(self, detections, crops):
        rows = []
        for row in self._predict(detections, crops):
            taxon = row.pop("taxon")
            rows.append({**taxon_columns(taxon), **row})
        return rows

    def _predict(self, detections: list[dict], crops: list[np.ndarray]) -> list[dict]:
        from PIL import Image
        from speciesnet.constants import NUM_CLASSIFICATIONS_FOR_ENSEMBLE
        from speciesnet.utils import BBox

        keys = [d["detection_id"] for d in detections]
        found, prepared = {}, []
        for key, det, crop in zip(keys, detections, crops):
            category, label = DETECTOR_LABELS[det["category"]]
            found[key] = {"category": category, "label": label, "conf": float(det["conf"]), "bbox": list(det["box"])}
            prepared.append(self.model.preprocess(Image.fromarray(crop), bboxes=[BBox(*det["box"])]))
        raw = self.model.batch_predict(keys, prepared, num_classes=NUM_CLASSIFICATIONS_FOR_ENSEMBLE)
        classified = {
            r["filepath"]: {"detections": [{**found[r["filepath"]], "raw_classifications": r["classifications_list"][0]}]}
            for r in raw
        }
        places = {
            key: {k: det[k] for k in ("country", "admin1_region") if det.get(k)} for key, det in zip(keys, detections)
        }
        combined = self.ensemble.combine(keys, classified, {k: {"detections": [v]} for k, v in found.items()}, places)
        out = []
        for key, result in zip(keys, combined):
            det = result["detections"][0]
            processed, top = det["processed_classification"], det["raw_classifications"]
            source = processed["source"]
            rollup = re.search(r"rollup_to_(\w+)", source)
            out.append({
                "taxon": taxon_of(processed["class"]),
                "score": float(processed["score"]),
                "classification_source": self.name,
                "classifier_label": processed["class"],
                "prediction_source": source,
                "rollup_level": rollup.group(1) if rollup else None,
                "geofenced": "geofence" in source,
                "raw_label": top["classes"][0],
                "raw_score": float(top["scores"][0]),
                "top_classifications": top_classifications(
                    [(taxon_of(c), float(v)) for c, v in zip(top["classes"], top["scores"])], lineages=top["classes"]),
                "country": places[key].get("country"),
                "admin1_region": places[key].get("admin1_region"),
            })
        return out


def load_speciesnet(spec: str, *, device: str, geofence: bool = True) -> SpeciesNetClassifier:
    """The SpeciesNet a profile names: ``speciesnet``, a release name, or a model folder."""
    from gpu_ops.model_registry import resolve_model

    return SpeciesNetClassifier(resolve_model(DEFAULT_RELEASE if spec == "speciesnet" else spec), device=device, geofence=geofence)
