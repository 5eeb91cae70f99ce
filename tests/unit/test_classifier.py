"""Stage 2 classifiers: the offline taxonomy map, a TorchScript model with labels, an ultralytics
classification model (randomly initialised: no trained species weights can be had offline here, so
these tests check the plumbing, not the accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu_ops.classifier import taxon_for_label
from gpu_ops.classifier_loader import load_classifier


def test_coco_labels_map_to_taxonomy():
    assert taxon_for_label("dog", "animal").scientific_name == "Canis familiaris"
    bird = taxon_for_label("bird", "animal")
    assert (bird.scientific_name, bird.taxon_rank) == ("Aves", "class")
    assert taxon_for_label("anything", "person").scientific_name == "Homo sapiens"
    assert taxon_for_label("truck", "vehicle").species == "vehicle"
    clf = load_classifier("coco-taxonomy")
    (taxon, score), = clf.classify([{"label": "giraffe", "category": "animal", "conf": 0.8}], [None])
    assert taxon.scientific_name == "Giraffa" and score == pytest.approx(0.8)


class TinyNet(torch.nn.Module):
    def forward(self, x):
        # class 1 when the crop is mostly red, class 0 otherwise: a known answer for each input
        red = x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2))
        return torch.stack([-red, red], dim=1) * 10


def test_torchscript_classifier_with_labels(tmp_path):
    model = tmp_path / "tiny.pt"
    torch.jit.script(TinyNet()).save(str(model))
    labels = tmp_path / "labels.txt"
    labels.write_text("red deer;Cervus elaphus;species;Mammalia\nfox\n")
    clf = load_classifier(f"torchscript:{model}", labels=str(labels), image_size=32, device="cpu")
    red = np.zeros((40, 30, 3), np.uint8); red[..., 0] = 255
    blue = np.zeros((40, 30, 3), np.uint8); blue[..., 2] = 255
    (t_red, p_red), (t_blue, _) = clf.classify([{}, {}], [red, blue])
    assert t_red.species == "fox" and p_red > 0.9
    assert t_blue.scientific_name == "Cervus elaphus"


def test_torchscript_without_labels_is_a_clear_error(tmp_path):
    model = tmp_path / "tiny.pt"
    torch.jit.script(TinyNet()).save(str(model))
    with pytest.raises(ValueError, match="needs a labels file"):
        load_classifier(f"torchscript:{model}", device="cpu", image_size=33)


def test_ultralytics_classification_model_runs(tmp_path):
    from gpu_ops.detector_ultralytics import import_ultralytics

    YOLO = import_ultralytics().YOLO
    model = YOLO("yolo11n-cls.yaml")  # random weights, built offline from the architecture file
    path = tmp_path / "random-cls.pt"
    model.save(str(path))
    clf = load_classifier(str(path), image_size=64, device="cpu")
    crops = [np.full((50, 40, 3), v, np.uint8) for v in (10, 200)]
    results = clf.classify([{}, {}], crops)
    assert len(results) == 2 and all(0.0 <= score <= 1.0 for _, score in results)
    assert clf.name == "ultralytics:random-cls.pt"


def test_unknown_classifier_spec_says_what_is_allowed():
    with pytest.raises(ValueError, match="use 'coco-taxonomy'"):
        load_classifier("speciesnet-please")
