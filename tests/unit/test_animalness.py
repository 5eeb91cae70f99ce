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
