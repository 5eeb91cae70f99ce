"""MegaDetector export fidelity (issue 14, part 7): lineage strings in
``classification_category_descriptions`` (what Timelapse searches), ``info.detector_metadata`` with
the thresholds Timelapse takes its defaults from, and the top-k classifications; the file still passes
MegaDetector's own ``validate_batch_results`` (a test-only dependency) and reads back to itself.

The classifiers are real: the default ``coco-taxonomy`` map and a TorchScript model (a fixed-logit
module scripted here, since no trained classifier can be downloaded on this machine).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from megadetector.postprocessing.validate_batch_results import validate_batch_results

from gpu_ops import megadetector_format as md
from gpu_ops.classifier import TOP_CLASSES, CocoTaxonomyClassifier, TorchScriptClassifier
from hugin_tables import Shots
from odins_ravne_assets.hugin.megadetector_export import export_megadetector
from resources.profiles import load_profile

# SpeciesNet's labels (uuid;class;order;family;genus;species;common name), as its ensemble writes them.
RED_DEER = "bf2dc6e4-ba8e-4f2b-9bfb-5f2c0d6bda3b;mammalia;cetartiodactyla;cervidae;cervus;elaphus;red deer"
ROE_DEER = "c2ac3b7c-5d5b-4a4e-9b5a-1c2f8d3e4f50;mammalia;cetartiodactyla;cervidae;capreolus;capreolus;european roe deer"
CERVIDAE = "3a4a6b1e-9a0a-4b5e-8e1a-2f6b7c8d9e01;mammalia;cetartiodactyla;cervidae;;;cervidae family"
ELK = "6c1e2a7b-4d3f-4b8e-a1c2-9d8e7f6a5b43;mammalia;cetartiodactyla;cervidae;alces;alces;moose"
FOX = "5a6b7c8d-1e2f-4a3b-9c4d-5e6f7a8b9c0d;mammalia;carnivora;canidae;vulpes;vulpes;red fox"


def _speciesnet_project():
    """Two detections SpeciesNet classified: one rolled up to Cervidae from two close deer, one confident fox."""
    s = Shots("cam-a")
    s.shot(0, ("animal", 0.91), ("animal", 0.88))
    media, detections, labels = s.tables()
    rows = labels.to_pylist()
    rows[0].update(species="cervidae family", scientific_name="Cervidae", taxon_rank="family", score=0.86,
                   classifier_label=CERVIDAE, classification_source="speciesnet:4.0.1a",
                   top_classifications=[{"species": "red deer", "lineage": RED_DEER, "score": 0.46},
                                        {"species": "european roe deer", "lineage": ROE_DEER, "score": 0.40},
                                        {"species": "moose", "lineage": ELK, "score": 0.05},
                                        {"species": "red fox", "lineage": FOX, "score": 0.01}])
    rows[1].update(species="red fox", scientific_name="Vulpes vulpes", score=0.97, classifier_label=FOX,
                   classification_source="speciesnet:4.0.1a",
                   top_classifications=[{"species": "red fox", "lineage": FOX, "score": 0.97},
                                        {"species": "red deer", "lineage": RED_DEER, "score": 0.02}])
    return media, detections.to_pylist(), rows


def _validated(doc, path):
    md.write_batch_output(doc, path)
    result = validate_batch_results(str(path))["validation_results"]
    assert result["errors"] == [] and result["warnings"] == []


def test_lineages_top_k_and_detector_metadata_of_a_speciesnet_run(tmp_path):
    media, detections, labels = _speciesnet_project()
    for d in detections:
        d["model"] = "md_v5a.0.0"
    doc = md.to_batch_output(media.to_pylist(), detections, labels, camera_id="cam-a")
    _validated(doc, tmp_path / "cam-a.json")
    names = doc["classification_categories"]
    descriptions = doc["classification_category_descriptions"]
    assert sorted(descriptions.values()) == sorted([CERVIDAE, RED_DEER, ROE_DEER, FOX])  # top 3: moose left out
    assert all(descriptions[i].endswith(";" + names[i]) for i in names)  # common name = the lineage's last part
    deer, fox = doc["images"][0]["detections"]
    # The label first, then the classifier's next best, sorted by score; three in all by default.
    assert [(names[c], s) for c, s in deer["classifications"]] == [
        ("cervidae family", 0.86), ("red deer", 0.46), ("european roe deer", 0.4)]
    assert [(names[c], s) for c, s in fox["classifications"]] == [("red fox", 0.97), ("red deer", 0.02)]
    assert doc["info"]["detector_metadata"] == {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2,
                                                "conservative_detection_threshold": 0.05}

    one = md.to_batch_output(media.to_pylist(), detections, labels, camera_id="cam-a", top_k=1)
    assert [len(d["classifications"]) for d in one["images"][0]["detections"]] == [1, 1]
    assert sorted(one["classification_categories"].values()) == ["cervidae family", "red fox"]
    five = md.to_batch_output(media.to_pylist(), detections, labels, camera_id="cam-a", top_k=5)
    assert [len(d["classifications"]) for d in five["images"][0]["detections"]] == [5, 2]
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        md.to_batch_output(media.to_pylist(), detections, labels, camera_id="cam-a", top_k=0)


def test_the_file_reads_back_to_itself_with_lineages_and_alternatives(tmp_path):
    media, detections, labels = _speciesnet_project()
    doc = export_megadetector(tmp_path / "cam-a.json", media=media, detections=pa.Table.from_pylist(detections),
                              species_labels=pa.Table.from_pylist(labels), camera_id="cam-a", top_k=5)
    again = md.read_batch_output(tmp_path / "cam-a.json", camera_id="cam-a", media=media)
    deer = again.species_labels.to_pylist()[0]
    # The lineage gives back the label's taxonomy; the alternatives are kept for the next export.
    assert (deer["species"], deer["scientific_name"], deer["taxon_rank"], deer["taxon_class"], deer["classifier_label"]) == (
        "cervidae family", "Cervidae", "family", "Mammalia", CERVIDAE)
    assert [(c["species"], c["lineage"]) for c in deer["top_classifications"]][:2] == [
        ("cervidae family", CERVIDAE), ("red deer", RED_DEER)]
    redone = export_megadetector(None, media=again.media, detections=again.detections,
                                 species_labels=again.species_labels, camera_id="cam-a", info=again.info, top_k=5)
    assert json.dumps(redone, sort_keys=True) == json.dumps(doc, sort_keys=True)


def test_the_default_classifiers_taxon_path_and_the_pipelines_thresholds(tmp_path):
    """The default detector is no MegaDetector: its file says so, with the thresholds this pipeline uses."""
    s = Shots("cam-d")
    s.shot(0, ("dog", 0.8), ("bird", 0.7), ("person", 0.9, "person"))
    media, detections, _ = s.tables()
    rows = detections.to_pylist()
    for d in rows:
        d["model"] = "yolov3-tiny-coco"
    labels = [{**{k: d[k] for k in ("camera_id", "detection_id", "file_path", "category")}, "detector_label": d["label"],
               **label} for d, label in zip(rows, CocoTaxonomyClassifier().label_rows(rows, [None] * len(rows)))]
    assert all(label["top_classifications"] is None for label in labels)  # the map names one class
    profile = load_profile("local")
    doc = export_megadetector(tmp_path / "cam-d.json", media=media, detections=pa.Table.from_pylist(rows),
                              species_labels=pa.Table.from_pylist(labels), camera_id="cam-d", settings=profile)
    _validated(doc, tmp_path / "cam-d.json")
    assert sorted(doc["classification_category_descriptions"].values()) == [
        ";aves;;;;;bird", ";mammalia;carnivora;canidae;canis;familiaris;domestic dog",
        ";mammalia;primates;hominidae;homo;sapiens;human"]
    assert doc["info"]["detector_metadata"] == {
        "megadetector_version": "unknown",
        "typical_detection_threshold": profile.pipeline.events.min_confidence,
        "conservative_detection_threshold": profile.pipeline.stage1.confidence_threshold,
    }


def test_megadetector_versions_and_their_published_thresholds():
    assert md.megadetector_version("md_v5a.0.0") == "v5a.0.0"
    assert md.megadetector_version("md_v5b.0.0") == "v5b.0.0"
    assert md.megadetector_version("megadetector-v5a") == "v5a.0.0"
    assert md.megadetector_version("megadetector-v1000-redwood") == "v1000.0.0-redwood"
    assert md.megadetector_version("md_v1000.0.0-sorrel") == "v1000.0.0-sorrel"
    assert md.megadetector_version("yolov3-tiny-coco") is None
    # redwood: MegaDetector publishes a typical threshold only, and writes only that.
    assert md.detector_metadata(["megadetector-v1000-redwood"]) == {"megadetector_version": "v1000.0.0-redwood",
                                                                    "typical_detection_threshold": 0.3}
    # sorrel: none published, so the pipeline's own; two different detectors in one file: unknown.
    assert md.detector_metadata(["md_v1000.0.0-sorrel"], (0.4, 0.15)) == {
        "megadetector_version": "v1000.0.0-sorrel", "typical_detection_threshold": 0.4,
        "conservative_detection_threshold": 0.15}
    assert md.detector_metadata(["md_v5a.0.0", "yolov3-tiny-coco"])["megadetector_version"] == "unknown"


def test_a_classification_model_gives_its_top_classes(tmp_path):
    torch = pytest.importorskip("torch")

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0, 0.5, -2.0]]).repeat(x.shape[0], 1)

    model = tmp_path / "model.pt"
    torch.jit.script(Fixed()).save(str(model))
    labels = tmp_path / "labels.txt"
    labels.write_text("wolf;Canis lupus;species;Mammalia\ndog\nred fox;Vulpes vulpes;species;Mammalia\n"
                      "lynx;Lynx lynx;species;Mammalia\nbird\nbadger;Meles meles;species;Mammalia\nmoose\n")
    classifier = TorchScriptClassifier(str(model), str(labels), 32, "cpu")
    (row,) = classifier.label_rows([{"label": "animal", "category": "animal"}], [np.zeros((40, 40, 3), np.uint8)])
    top = row["top_classifications"]
    assert row["species"] == "domestic dog" and len(top) == TOP_CLASSES
    assert [c["species"] for c in top] == ["domestic dog", "lynx", "red fox", "badger", "wolf"]
    assert [c["score"] for c in top] == sorted((c["score"] for c in top), reverse=True) and top[0]["score"] == row["score"]
    assert top[1]["lineage"] == ";mammalia;;;lynx;lynx;lynx"
    assert top[0]["lineage"] == ";mammalia;carnivora;canidae;canis;familiaris;domestic dog"
