"""Animal-ness pooled over all COCO animal classes (gpu_ops.animalness) and its use in the default detector's NMS."""

from __future__ import annotations

import torch

from gpu_ops.animalness import pool_animal_classes
from gpu_ops.detector import yolo_nms


def _prediction(class_probs, objectness=0.8):
    row = torch.zeros(1, 5 + len(class_probs))
    row[0, :4] = torch.tensor([50.0, 50.0, 20.0, 20.0])
    row[0, 4] = objectness
    row[0, 5:] = torch.tensor(class_probs)
    return row


def test_spread_belief_becomes_one_animal_above_the_threshold():
    # classes: 0 person, 1 dog, 2 cat, 3 sheep; animals 1..3 at 0.2 each: best class 0.8*0.2 = 0.16
    prediction = _prediction([0.05, 0.2, 0.25, 0.2])
    assert len(yolo_nms(prediction, 0.3, 0.45, [0, 1, 2, 3])[1]) == 0
    pooled = pool_animal_classes(prediction, [1, 2, 3])
    _, scores, class_ids = yolo_nms(pooled, 0.3, 0.45, [0, 1, 2, 3])
    assert class_ids.tolist() == [2]  # named after the best animal guess
    assert abs(scores.item() - 0.8 * 0.65) < 1e-6


def test_sum_is_clipped_and_person_untouched():
    pooled = pool_animal_classes(_prediction([0.9, 0.7, 0.6, 0.5]), [1, 2, 3])
    person, dog, cat, sheep = pooled[0, 5:].tolist()
    assert (round(person, 6), dog, cat, sheep) == (0.9, 1.0, 0.0, 0.0)


def test_nms_per_category_keeps_one_box_per_animal_and_the_person_beside_it():
    """Before: NMS per COCO class kept a "bird" and a "sheep" box on one animal, two animals counted."""
    # classes: 0 person, 1 dog, 2 bird, 3 sheep; groups: person 0, animals 1
    bird = _prediction([0.0, 0.0, 0.9, 0.1])
    sheep = _prediction([0.0, 0.1, 0.0, 0.8])
    sheep[0, :4] = torch.tensor([52.0, 51.0, 20.0, 18.0])  # the same animal, a little shifted (IoU ~0.8)
    person = _prediction([0.9, 0.0, 0.0, 0.0])
    person[0, :4] = torch.tensor([54.0, 50.0, 20.0, 20.0])  # overlaps it too, but is a person
    prediction = torch.cat([bird, sheep, person])
    assert sorted(yolo_nms(prediction, 0.3, 0.45, [0, 1, 2, 3])[2].tolist()) == [0, 2, 3]  # per class: 2 animals
    groups = torch.tensor([0, 1, 1, 1])
    assert sorted(yolo_nms(prediction, 0.3, 0.45, [0, 1, 2, 3], groups)[2].tolist()) == [0, 2]


def test_the_default_detector_suppresses_across_animal_classes():
    from gpu_ops.detector import Letterbox
    from gpu_ops.detector_darknet import DarknetDetector
    from gpu_ops.weights import fetch_default_weights

    detector = DarknetDetector(fetch_default_weights(), backend="torch", device="cpu", image_size=416, conf_threshold=0.3,
                               iou_threshold=0.45)
    ids = {name: i for i, name in detector.labels.items()}
    raw = torch.zeros(2, 5 + len(detector.labels))
    raw[:, :4] = torch.tensor([[200.0, 200.0, 100.0, 80.0], [205.0, 202.0, 100.0, 80.0]])
    raw[:, 4] = 0.9
    raw[0, 5 + ids["bird"]], raw[1, 5 + ids["sheep"]] = 0.9, 0.8
    found = detector._postprocess(raw, Letterbox(416, 416, 1.0, 0.0, 0.0))
    assert [d.label for d in found] == ["bird"] and "nms=category" in detector.signature
